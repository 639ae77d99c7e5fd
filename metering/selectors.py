"""Reads on usage: the period quantities that billing, the price preview and dashboards price."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal, localcontext

from django.db.models import Sum

from metering.models import Aggregation, HourlyUsage, Metric

# Aggregations whose period value is the sum of the hourly values; the others (max, unique_count)
# must be computed over the whole period in the lake.
ADDITIVE = frozenset({Aggregation.COUNT, Aggregation.SUM})


def _resolve_metrics(metrics) -> list[Metric]:
    codes, models = [], []
    for metric in metrics:
        if isinstance(metric, Metric):
            models.append(metric)
        else:
            codes.append(metric if isinstance(metric, str) else metric.code)
    if codes:
        found = {m.code: m for m in Metric.objects.filter(code__in=codes)}
        missing = sorted(set(codes) - set(found))
        if missing:
            raise Metric.DoesNotExist(f"unknown metric(s): {', '.join(missing)}")
        models.extend(found[c] for c in codes)
    return models


def _tenant_of(subscription_or_tenant):
    return getattr(subscription_or_tenant, "tenant", subscription_or_tenant)


def period_quantities(*, subscription_or_tenant, metrics: Iterable, start: datetime, end: datetime,
                      lake=None) -> dict[str, Decimal]:
    """The quantity of each metric for a tenant over [start, end), after the metric's divisor.

    Signature: ``period_quantities(*, subscription_or_tenant: Subscription | Tenant,
    metrics: Iterable[Metric | MetricSpec | str], start: datetime, end: datetime,
    lake: Lake | None = None) -> dict[str, Decimal]`` keyed by metric code; a metric with no usage
    has ``Decimal(0)``.

    - count and sum metrics: the sum of the synced hourly rows whose hour starts in [start, end)
      (bounds are meant to be whole hours; call metering.services.sync.usage_sync first for the
      period's last hours).
    - unique_count and max metrics: one query to the lake over the whole period (distinct values
      in a month are not the sum of distinct values per hour), with the tenant's records
      attributed by tenant_id, or by user for records without one.

    Duplicated request_ids count once in both. The quantity is the raw aggregate divided by the
    metric's divisor, exactly (Decimal with 28+ significant digits, not rounded here).
    """
    tenant = _tenant_of(subscription_or_tenant)
    return period_quantities_many(tenants=[tenant], metrics=metrics, start=start, end=end, lake=lake)[tenant.pk]


def period_quantities_many(*, tenants: Iterable, metrics: Iterable, start: datetime, end: datetime,
                           lake=None) -> dict[int, dict[str, Decimal]]:
    """period_quantities for several tenants over the same window, keyed by tenant id: the hourly
    sums of count and sum metrics come from one grouped query (a billing run prices many tenants)."""
    tenants = list(tenants)
    resolved = _resolve_metrics(metrics)
    raw: dict[int, dict[str, Decimal]] = {tenant.pk: {} for tenant in tenants}
    additive = [m for m in resolved if m.aggregation in ADDITIVE]
    if additive and tenants:
        codes = {metric.pk: metric.code for metric in additive}
        for tenant_id, metric_id, total in (
            HourlyUsage.objects.filter(tenant__in=list(raw), metric__in=additive, hour__gte=start, hour__lt=end)
            .values("tenant_id", "metric_id").annotate(total=Sum("value")).values_list("tenant_id", "metric_id", "total")
        ):
            raw[tenant_id][codes[metric_id]] = total
    whole_period = [m for m in resolved if m.aggregation not in ADDITIVE]
    if whole_period and tenants:
        from metering.lake import get_lake

        lake = lake or get_lake()
        for tenant in tenants:
            usernames = list(tenant.users.values_list("username", flat=True))
            raw[tenant.pk].update(lake.period_usage(metrics=whole_period, start=start, end=end,
                                                    tenant_id=tenant.slug, usernames=usernames))
    quantities: dict[int, dict[str, Decimal]] = {}
    with localcontext() as ctx:
        ctx.prec = 40
        for tenant_id, values in raw.items():
            quantities[tenant_id] = {}
            for metric in resolved:
                value = Decimal(values.get(metric.code) or 0)
                quantities[tenant_id][metric.code] = value / metric.divisor if metric.divisor != 1 else value
    return quantities
