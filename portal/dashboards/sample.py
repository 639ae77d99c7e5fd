"""Sample data for the dashboards' tests and benchmark: tenants with hourly and daily usage, invoices, sync runs."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from django.db import transaction

from metering.models import (
    HourlyUsage,
    Invoice,
    InvoiceStatus,
    SyncCursor,
    SyncOutcome,
    SyncRun,
    UnattributedUsage,
)
from metering.services.sync import daily_usage_refresh
from tenants.models import Metric, PlanVersion, Subscription, Tenant, TenantStatus

SAMPLE_METRICS = [
    {"code": "api_calls", "name": "API calls", "aggregation": "count", "filters": {"status": ["2xx"]}},
    {"code": "data_out_mb", "name": "Data out", "aggregation": "sum", "field": "response_length",
     "divisor": "1000000", "unit": "MB"},
    {"code": "active_ips", "name": "Active client IPs", "aggregation": "unique_count", "field": "ip"},
]


def sample_metrics() -> list[Metric]:
    """The three metrics of the benchmark (created when missing)."""
    metrics = []
    for doc in SAMPLE_METRICS:
        defaults = {k: v for k, v in doc.items() if k != "code"}
        defaults["divisor"] = Decimal(defaults.get("divisor", "1"))
        metric, _ = Metric.objects.get_or_create(code=doc["code"], defaults=defaults)
        metrics.append(metric)
    return metrics


def seed_tenants(*, count: int, plan_versions: list[PlanVersion], started_at: datetime,
                 prefix: str = "tenant") -> list[Tenant]:
    """`count` active tenants, each subscribed to one of `plan_versions` in turn (bulk inserts)."""
    Tenant.objects.bulk_create([
        Tenant(slug=f"{prefix}-{i:04d}", name=f"{prefix.title()} {i:04d}", contact_email=f"billing@{prefix}-{i:04d}.example",
               status=TenantStatus.ACTIVE)
        for i in range(count)
    ])
    tenants = list(Tenant.objects.filter(slug__startswith=f"{prefix}-").order_by("slug"))
    Subscription.objects.bulk_create([
        Subscription(tenant=t, plan_version=plan_versions[i % len(plan_versions)], started_at=started_at)
        for i, t in enumerate(tenants)
    ])
    return tenants


def seed_hourly_usage(*, tenants: list[Tenant], metrics: list[Metric], end: date, days: int, seed: int = 7,
                      batch_size: int = 5000, lake=None) -> int:
    """Hourly rows for every tenant, metric and hour of the `days` days up to `end` (included), and their daily
    and monthly rollups, computed as the usage sync computes them.

    A unique_count metric's values are the distinct counts of records whose values are a prefix of the
    tenant's pool (hour after hour the same first values), so a day's, a month's or any range's distinct
    count is its busiest hour: what the rollups hold when no lake gives them figures. With ``lake`` (a
    local lake) those records are written to it, so that a range the dashboards ask the lake about
    agrees with the rows."""
    rng = random.Random(seed)
    start = datetime.combine(end - timedelta(days=days - 1), time.min, tzinfo=UTC)
    hours = [start + timedelta(hours=h) for h in range(days * 24)]
    with transaction.atomic():  # one commit, not one per batch (SQLite syncs the file at each)
        written = _seed_hourly(rng, tenants, metrics, hours, batch_size)
        daily_usage_refresh(start=start, end=start + timedelta(days=days))
    if lake is not None:
        seed_distinct_records(lake=lake, tenants=tenants, metrics=metrics, start=start,
                              end=start + timedelta(days=days))
    return written


def seed_distinct_records(*, lake, tenants: list[Tenant], metrics: list[Metric], start: datetime,
                          end: datetime) -> int:
    """Access-log records behind the seeded hourly rows of unique_count metrics of ``ip`` (see
    seed_hourly_usage): hour h of a tenant whose row says v gets v records from the tenant's first v IPs."""
    import pyarrow as pa

    from metering.lake.local import ARROW_SCHEMA

    unique = [m for m in metrics if m.aggregation == "unique_count"]
    if not unique:
        return 0
    if any(m.field != "ip" or m.filters for m in unique):
        raise ValueError("the sample writes records for unfiltered unique counts of ip only")
    index = {t.pk: (i, t.slug) for i, t in enumerate(tenants)}
    columns: dict[str, list] = {name: [] for name in ("request_id", "ip", "request_time", "tenant_id")}
    peaks: dict[tuple[int, datetime], int] = {}
    for tenant_id, hour, value in (HourlyUsage.objects.filter(metric__in=unique, tenant_id__in=list(index),
                                                              hour__gte=start, hour__lt=end)
                                   .values_list("tenant_id", "hour", "value")):
        key = (tenant_id, hour)
        peaks[key] = max(peaks.get(key, 0), int(value))
    for (tenant_id, hour), count in peaks.items():
        i, slug = index[tenant_id]
        for k in range(count):
            columns["request_id"].append(f"sample-{slug}-{hour:%Y%m%d%H}-{k}")
            columns["ip"].append(f"10.{i // 256}.{i % 256}.{k + 1}")
            columns["request_time"].append(hour.astimezone(UTC).replace(tzinfo=None) + timedelta(seconds=k))
            columns["tenant_id"].append(slug)
    rows = len(columns["ip"])
    table = pa.Table.from_pydict({
        **columns, "user": [None] * rows, "http_method": ["GET"] * rows, "resource_path": ["/random/strings"] * rows,
        "status": [200] * rows, "protocol": ["HTTP/1.1"] * rows, "response_length": [100] * rows,
    }, schema=ARROW_SCHEMA)
    return lake.append_arrow(table) if rows else 0


def _seed_hourly(rng, tenants, metrics, hours, batch_size) -> int:
    written = 0
    batch: list[HourlyUsage] = []
    for index, tenant in enumerate(tenants):
        scale = 1 + (index % 17)  # some tenants much busier than others
        for metric in metrics:
            for hour in hours:
                if metric.code == "data_out_mb":
                    value = Decimal(rng.randint(0, 50_000) * scale)
                elif metric.aggregation == "unique_count":
                    value = Decimal(rng.randint(0, 5 + scale))
                else:
                    value = Decimal(rng.randint(0, 40) * scale)
                batch.append(HourlyUsage(tenant=tenant, metric=metric, hour=hour, value=value))
                if len(batch) >= batch_size:
                    HourlyUsage.objects.bulk_create(batch)
                    written += len(batch)
                    batch = []
    if batch:
        HourlyUsage.objects.bulk_create(batch)
        written += len(batch)
    return written


def seed_invoices(*, tenants: list[Tenant], months: list[date], total: Decimal = Decimal("100.00")) -> int:
    """One invoice per tenant and month (the last month a draft, the others finalized or paid, some void)."""
    subscriptions = {s.tenant_id: s for s in Subscription.objects.filter(tenant__in=tenants).select_related(
        "plan_version")}
    invoices = []
    for t_index, tenant in enumerate(tenants):
        subscription = subscriptions[tenant.pk]
        for m_index, month in enumerate(months):
            start = datetime.combine(month, time.min, tzinfo=UTC)
            nxt = (month.replace(day=28) + timedelta(days=4)).replace(day=1)
            end = datetime.combine(nxt, time.min, tzinfo=UTC)
            last = m_index == len(months) - 1
            status = InvoiceStatus.DRAFT if last else (InvoiceStatus.PAID if (t_index + m_index) % 2 else
                                                      InvoiceStatus.FINALIZED)
            invoices.append(Invoice(
                tenant=tenant, subscription=subscription, period_start=start, period_end=end,
                currency=subscription.plan_version.currency, status=status,
                number=None if status == InvoiceStatus.DRAFT else f"S-{month:%Y%m}-{tenant.slug}",
                subtotal=total + t_index, total=total + t_index, finalize_after=end + timedelta(days=1),
                finalized_at=None if status == InvoiceStatus.DRAFT else end + timedelta(days=1),
                payment_terms_days=None if status == InvoiceStatus.DRAFT else 30,
                due_date=None if status == InvoiceStatus.DRAFT else nxt + timedelta(days=31),
            ))
    Invoice.objects.bulk_create(invoices)
    return len(invoices)


def seed_pipeline(*, now: datetime, metric: Metric) -> None:
    """A successful sync up to the last hour, an older failure, and some unattributed usage."""
    hour = now.replace(minute=0, second=0, microsecond=0)
    SyncRun.objects.create(backend="local", window_start=hour - timedelta(hours=3), window_end=hour - timedelta(hours=2),
                           started_at=hour - timedelta(hours=2), finished_at=hour - timedelta(hours=2),
                           outcome=SyncOutcome.FAILED, error="LakeError: the lake did not answer")
    SyncRun.objects.create(backend="local", window_start=hour - timedelta(hours=3), window_end=hour,
                           started_at=now - timedelta(minutes=5), finished_at=now - timedelta(minutes=5),
                           duration_seconds=1.5, rows_read=42, rows_written=40, unattributed_rows=2,
                           outcome=SyncOutcome.SUCCEEDED)
    SyncCursor.objects.update_or_create(name="local", defaults={"synced_until": hour})
    UnattributedUsage.objects.update_or_create(tenant_key="", user_key="5e6f7a8b-orphan", metric=metric,
                                               hour=hour - timedelta(hours=1), defaults={"value": Decimal(7)})
