"""One truth per figure: a month of generated traffic in the local lake, synced, billed, then read back
everywhere a user meets it (REST API in JSON and CSV, usage/current, both dashboards), for each
aggregation; every figure equals what the invoice bills, and what the records themselves say."""

import csv
import io
import re
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db.models import Max, Sum
from django.db.models.functions import TruncDay

from metering.lake.local import LocalLake
from metering.models import DailyUsage, HourlyUsage, InvoiceLine, LineType, MonthlyUsage, UnattributedUsage
from metering.services.billing.run import billing_run
from metering.services.sync import usage_sync
from metering.services.traffic import generate_batches, traffic_tenants_ensure
from metering.tests.api_fixtures import *  # noqa: F403
from tenants.models import Metric, Tenant, TenantRole, TenantUser
from tenants.services import identity as identity_services
from tenants.services.plans import plans_import

OCT, NOV = datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC)
PASSWORD = "Correct-Horse-9-Battery"
MB = Decimal(1_000_000)

# One metric of each aggregation, filtered where a filter changes the answer, all priced per unit.
PLANS = {
    "metrics": [
        {"code": "api_calls", "name": "API calls", "aggregation": "count",
         "filters": {"status": ["2xx"], "resource_path_prefix": ["/random"]}},
        {"code": "data_out_mb", "name": "Data out", "aggregation": "sum", "field": "response_length",
         "divisor": "1000000", "unit": "MB"},
        {"code": "largest_ok", "name": "Largest answer", "aggregation": "max", "field": "response_length",
         "filters": {"status": ["2xx"]}, "unit": "B"},
        {"code": "active_ips", "name": "Active client IPs", "aggregation": "unique_count", "field": "ip"},
    ],
    "plans": [
        {"code": "metered", "name": "Metered", "currency": "USD", "interval": "month", "charges": [
            {"metric": "api_calls", "model": "per_unit", "unit_amount": "0.001"},
            {"metric": "data_out_mb", "model": "per_unit", "unit_amount": "0.12"},
            {"metric": "largest_ok", "model": "per_unit", "unit_amount": "0.0001"},
            {"metric": "active_ips", "model": "per_unit", "unit_amount": "0.50"},
        ]},
    ],
}
CODES = ("api_calls", "data_out_mb", "largest_ok", "active_ips")


@pytest.fixture
def lake(settings, tmp_path):
    settings.LAKE_BACKEND = "local"
    settings.LAKE_WAREHOUSE_DIR = str(tmp_path / "lake")
    settings.USAGE_SYNC_RETRY_DELAY = 0
    settings.BILLING_GRACE_PERIOD_MINUTES = 0
    settings.DASHBOARD_CACHE_SECONDS = 0
    return LocalLake(warehouse=settings.LAKE_WAREHOUSE_DIR, database=settings.LAKE_DATABASE, table=settings.LAKE_TABLE)


def truth(lake: LocalLake) -> tuple[dict, dict]:
    """Every figure computed in Python from the lake's records themselves: {(tenant id, unit, bucket start):
    {code: raw figure}} for unit hour, day and month, and each tenant's IPs by day. Duplicated request_ids count once; a record is its
    tenant's by tenant_id, else by the tenant user it names (docs/plans.md)."""
    slugs = dict(Tenant.objects.values_list("slug", "pk"))
    users = dict(TenantUser.objects.values_list("username", "tenant_id"))
    figures: dict = defaultdict(lambda: {"api_calls": 0, "data_out_mb": 0, "largest_ok": 0, "active_ips": set()})
    seen = set()
    for record in lake.table().scan().to_arrow().to_pylist():
        if record["request_id"] in seen:
            continue
        seen.add(record["request_id"])
        tenant = slugs.get(record["tenant_id"]) if record["tenant_id"] else users.get(record["user"])
        if tenant is None:
            continue
        at = record["request_time"].replace(tzinfo=UTC)
        ok = 200 <= record["status"] <= 299
        for unit, start in (("hour", at.replace(minute=0, second=0, microsecond=0)),
                            ("day", at.replace(hour=0, minute=0, second=0, microsecond=0)),
                            ("month", at.replace(day=1, hour=0, minute=0, second=0, microsecond=0))):
            figure = figures[(tenant, unit, start)]
            figure["api_calls"] += 1 if ok and record["resource_path"].startswith("/random") else 0
            figure["data_out_mb"] += record["response_length"]
            if ok:
                figure["largest_ok"] = max(figure["largest_ok"], record["response_length"])
            figure["active_ips"].add(record["ip"])
    return {key: {code: Decimal(len(v)) if isinstance(v, set) else Decimal(v) for code, v in value.items()}
            for key, value in figures.items()}, {
        (tenant, start): figure["active_ips"] for (tenant, unit, start), figure in figures.items() if unit == "day"}


def shown(raw: Decimal, code: str) -> Decimal:
    """A raw figure in the metric's unit (data out is in MB)."""
    return raw / MB if code == "data_out_mb" else raw


@pytest.fixture
def billed_month(db, lake, local_identity):
    """Three generated tenants, a month of their traffic in the lake (with Firehose duplicates, older-format
    records attributed by user and unknown users), synced window by window, then billed."""
    plans_import(document=PLANS)
    tenants = traffic_tenants_ensure(count=3, start=OCT)
    for batch in generate_batches(tenants=tenants, events=24_000, start=OCT, end=NOV, seed=13):
        lake.append_arrow(batch)
    # The sync as the beat runs it, in windows (each recomputes the days and the month it touches),
    # then the billing run's own final sync and the invoices.
    for day in range(0, 31, 7):
        usage_sync(start=OCT + timedelta(days=day), end=min(NOV, OCT + timedelta(days=day + 7)), lake=lake)
    result = billing_run(as_of=NOV + timedelta(hours=2), finalize_now=True, triggered_by="test")
    assert len(result.created) == 3 and len(result.finalized) == 3
    figures, ips_by_day = truth(lake)
    world = {"truth": figures, "ips by day": ips_by_day, "tenants": {}}
    for spec in tenants:
        tenant = Tenant.objects.get(slug=spec.slug)
        owner, _ = identity_services.tenant_user_create(tenant=tenant, email=f"owner@{spec.slug}.example",
                                                        role=TenantRole.OWNER, password=PASSWORD)
        invoice = tenant.invoices.get()
        lines = {line.metric_code: line.quantity for line in InvoiceLine.objects.filter(invoice=invoice,
                                                                                          type=LineType.USAGE)}
        assert set(lines) == set(CODES)
        world["tenants"][tenant.pk] = {"tenant": tenant, "owner": owner, "lines": lines,
                                       "token": identity_services.tenant_user_issue_token(tenant_user=owner)}
    return world


def api(token):
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def buckets(client, **params) -> dict[tuple[str, str], Decimal]:
    response = client.get("/api/v1/usage/", {"start": "2026-10-01", "end": "2026-11-01", "page_size": 1000, **params})
    assert response.status_code == 200, response.content
    body = response.json()
    rows = body["results"]
    while body.get("next"):
        body = client.get(body["next"]).json()
        rows += body["results"]
    return {(row["metric"], row["start"]): Decimal(row["value"]) for row in rows}


def test_every_figure_of_a_billed_month_equals_its_invoice(billed_month):
    truth = billed_month["truth"]
    for tenant_id, world in billed_month["tenants"].items():
        lines, client = world["lines"], api(world["token"])
        month = truth[(tenant_id, "month", OCT)]
        # The invoice bills what the records say: exact distinct IPs and the exact largest answer.
        assert {code: lines[code] for code in CODES} == {code: shown(month[code], code) for code in CODES}

        # The API's month bucket, in JSON and in CSV.
        monthly = buckets(client, granularity="month")
        assert {code: monthly[(code, "2026-10-01T00:00:00Z")] for code in CODES} == lines
        response = client.get("/api/v1/usage/", {"start": "2026-10-01", "end": "2026-11-01", "granularity": "month",
                                                 "format": "csv"})
        assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(response.content.decode())))
        assert {row["metric"]: Decimal(row["value"]) for row in rows} == lines

        # Day buckets: each is its day's exact figure; they add up (count, sum), their largest is the
        # month's (max), and a month's distinct IPs are not the sum of its days' (unique_count).
        daily = buckets(client, granularity="day")
        days = [OCT + timedelta(days=i) for i in range(31)]
        for code in CODES:
            values = [daily.get((code, f"{day:%Y-%m-%d}T00:00:00Z"), Decimal(0)) for day in days]
            assert values == [shown(truth.get((tenant_id, "day", day), {}).get(code, Decimal(0)), code)
                              for day in days], code
            if code in ("api_calls", "data_out_mb"):
                assert sum(values) == lines[code]
            elif code == "largest_ok":
                assert max(values) == lines[code]
            else:
                assert max(values) <= lines[code] < sum(values)
        # Hour buckets of a unique_count metric are distinct counts too, and add up to far more than the month.
        hourly = buckets(client, granularity="hour", metric="active_ips")
        assert sum(hourly.values()) > 10 * lines["active_ips"]
        for (_, start), value in list(hourly.items())[:48]:
            hour = datetime.fromisoformat(start.replace("Z", "+00:00"))
            assert value == truth[(tenant_id, "hour", hour)]["active_ips"]

    # The stored rollups agree with the records (and the API served them).
    for (tenant_id, unit, start), figures in truth.items():
        if unit == "month":
            stored = dict(MonthlyUsage.objects.filter(tenant_id=tenant_id, month=start.date())
                          .values_list("metric__code", "value"))
            assert {code: stored.get(code, Decimal(0)) for code in CODES} == figures


def tenant_login(client, world):
    client.force_login(world["owner"].user)
    return client


def numbers(html: str, pattern: str) -> list[Decimal]:
    return [Decimal(match.replace(",", "").replace("\u202f", "").replace("\xa0", ""))
            for match in re.findall(pattern, html)]


def test_usage_current_and_the_tenant_dashboard_show_the_invoices_quantities(billed_month, client, monkeypatch):
    # As seen in the period's last minutes (after its last sync): the figures the invoice then bills.
    monkeypatch.setattr("django.utils.timezone.now", lambda: NOV - timedelta(minutes=5))
    for world in billed_month["tenants"].values():
        lines = world["lines"]
        body = api(world["token"]).get("/api/v1/usage/current/").json()
        assert body["period_start"] == "2026-10-01T00:00:00Z"
        assert {t["metric"]: Decimal(t["quantity"]) for t in body["totals"]} == lines
        html = tenant_login(client, world).get("/tenant/dashboard/").content.decode()
        for code in CODES:
            (value,) = numbers(html, rf'<strong data-metric="{code}">([^<]+)</strong>')
            assert value == lines[code].quantize(Decimal("0.001")), code
        # The projected bill prices the same quantities as the invoice.
        bill = html[html.index('id="projected-bill"'):html.index('id="usage-over-time"')]
        for metric in Metric.objects.filter(code__in=CODES):
            (value,) = numbers(bill, rf'<td>{metric.name} \(per_unit\)</td><td class="num">([^<]+)</td>')
            assert value == lines[metric.code].quantize(Decimal("0.001")), metric.code
        # Its daily chart of distinct IPs says that its days do not add up.
        assert "days do not add up" in html and "distinct per day" in html


def test_the_provider_dashboard_shows_the_invoices_quantities(billed_month, admin_client, monkeypatch):
    monkeypatch.setattr("django.utils.timezone.now", lambda: NOV + timedelta(hours=3))
    for world in billed_month["tenants"].values():
        lines = world["lines"]
        html = admin_client.get("/admin/dashboard/", {"start": "2026-10-01", "end": "2026-10-31",
                                                      "tenant": world["tenant"].slug}).content.decode()
        # One tenant: the figure under each chart is its month, as billed.
        for code in CODES:
            section = html[html.index(f'id="usage-{code}"'):]
            (value,) = numbers(section[:section.index("</section>")], r"in range[^:]*: <strong>([^<]+)</strong>")
            assert value == lines[code].quantize(Decimal("0.001")) if code == "data_out_mb" else lines[code], code
    # All tenants: the top tenants table has each tenant's invoice quantities; distinct IPs over
    # days 5 to 20 (not a calendar month) are asked of the lake, and are exact too.
    html = admin_client.get("/admin/dashboard/", {"start": "2026-10-01", "end": "2026-10-31"}).content.decode()
    top = html[html.index('id="top-tenants"'):]
    top = top[:top.index("</table>")]
    header = re.findall(r'<th scope="col" class="num">([^<(]+)', top)
    names = dict(Metric.objects.values_list("name", "code"))
    for world in billed_month["tenants"].values():
        row = top[top.index(f"tenant={world['tenant'].slug}"):]
        values = numbers(row[:row.index("</tr>")], r'<td class="num">([^<]+)</td>')
        for name, value in zip(header, values, strict=True):
            code = names[name.strip()]
            expected = world["lines"][code]
            assert value == (expected.quantize(Decimal("0.001")) if code == "data_out_mb" else expected), code
    html = admin_client.get("/admin/dashboard/", {"start": "2026-10-05", "end": "2026-10-20"}).content.decode()
    top = html[html.index('id="top-tenants"'):]
    column = [name.strip() for name in re.findall(r'<th scope="col" class="num">([^<(]+)', top)].index(
        "Active client IPs")
    for tenant_id, world in billed_month["tenants"].items():
        ips = set().union(*(billed_month["ips by day"].get((tenant_id, datetime(2026, 10, d, tzinfo=UTC)), set())
                            for d in range(5, 21)))
        row = top[top.index(f"tenant={world['tenant'].slug}"):]
        assert numbers(row[:row.index("</tr>")], r'<td class="num">([^<]+)</td>')[column] == len(ips)


# --- the parts underneath, each through its entry point ---------------------------------------------


def record(request_id, at, *, tenant_id=None, user=None, ip="198.51.100.1", status=200, length=100):
    return {"request_id": request_id, "ip": ip, "user": user, "request_time": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "http_method": "GET", "resource_path": "/random/strings", "status": status, "protocol": "HTTP/1.1",
            "response_length": length, "tenant_id": tenant_id}


@pytest.fixture
def acme(db, lake):
    plans_import(document=PLANS)
    tenant = Tenant.objects.create(slug="t-acme", name="Acme", contact_email="billing@acme.example")
    TenantUser.objects.create(tenant=tenant, username="old-format-user", email="ops@acme.example")
    return tenant


def test_an_hour_with_records_with_and_without_tenant_id_is_one_exact_figure(lake, acme):
    hour = datetime(2026, 10, 7, 9, tzinfo=UTC)
    lake.append([
        record("r1", hour + timedelta(minutes=1), tenant_id="t-acme", ip="10.0.0.1", length=100),
        # Older-format records (no tenant_id) of the tenant's user: one IP seen above, one new.
        record("r2", hour + timedelta(minutes=2), user="old-format-user", ip="10.0.0.1", length=300),
        record("r3", hour + timedelta(minutes=3), user="old-format-user", ip="10.0.0.2", length=200),
        record("r3", hour + timedelta(minutes=3), user="old-format-user", ip="10.0.0.2", length=200),  # redelivered
        record("r4", hour + timedelta(minutes=4), user="nobody-knows", ip="10.9.9.9", length=900),
    ])
    usage_sync(start=hour, end=hour + timedelta(hours=1), lake=lake)
    figures = dict(HourlyUsage.objects.filter(tenant=acme).values_list("metric__code", "value"))
    # Adding up the groups (tenant_id; then each user) would give 1 + 2 = 3 IPs and 100 + 300 = 400.
    assert figures == {"api_calls": 3, "data_out_mb": 600, "largest_ok": 300, "active_ips": 2}
    assert dict(DailyUsage.objects.filter(tenant=acme).values_list("metric__code", "value")) == figures
    assert dict(MonthlyUsage.objects.filter(tenant=acme).values_list("metric__code", "value")) == figures
    assert UnattributedUsage.objects.filter(user_key="nobody-knows").exists()


def test_many_tenant_users_are_inlined_only_when_they_appear_without_tenant_id(lake, acme, monkeypatch):
    hour = datetime(2026, 10, 7, 9, tzinfo=UTC)
    lake.append([record("r1", hour, tenant_id="t-acme", ip="10.0.0.1"),
                 record("r2", hour + timedelta(minutes=5), user="old-format-user", ip="10.0.0.2")])
    TenantUser.objects.bulk_create([TenantUser(tenant=acme, username=f"quiet-{i}", email=f"q{i}@acme.example")
                                    for i in range(5)])
    monkeypatch.setattr("metering.lake.base.INLINE_USERS", 2)
    seen = []
    real = lake.execute
    monkeypatch.setattr(lake, "execute", lambda query: seen.append(query.sql()) or real(query))
    usage_sync(start=hour, end=hour + timedelta(hours=1), lake=lake)
    assert HourlyUsage.objects.get(tenant=acme, metric__code="active_ips").value == 2
    inlined = [sql for sql in seen if "VALUES" in sql]
    assert inlined and all("old-format-user" in sql and "quiet-" not in sql for sql in inlined)


def test_a_range_that_cuts_a_distinct_count_bucket_is_refused_with_what_to_ask(billed_month):
    world = next(iter(billed_month["tenants"].values()))
    client = api(world["token"])
    response = client.get("/api/v1/usage/", {"start": "2026-10-01T06:00:00Z", "end": "2026-10-03"})
    assert response.status_code == 400
    message = response.json()["start"][0]
    assert "active_ips count distinct values" in message and "2026-10-01T00:00:00Z" in message
    assert "granularity=hour" in message
    response = client.get("/api/v1/usage/", {"start": "2026-10-01", "end": "2026-10-15T12:00:00Z",
                                             "granularity": "month"})
    assert response.status_code == 400 and "cuts the month 2026-10" in response.json()["end"][0]
    # The same range is served for metrics that add up, or whose largest value is exact over any hours,
    # and by the hour for a distinct count.
    ok = client.get("/api/v1/usage/", {"start": "2026-10-01T06:00:00Z", "end": "2026-10-03",
                                       "metric": "api_calls,largest_ok"})
    assert ok.status_code == 200 and ok.json()["count"] == 4
    assert client.get("/api/v1/usage/", {"start": "2026-10-01T06:00:00Z", "end": "2026-10-03",
                                         "granularity": "hour", "metric": "active_ips"}).status_code == 200


def test_top_tenants_rank_by_each_metrics_exact_figure(billed_month, staff_client):
    for code in ("largest_ok", "active_ips"):
        body = staff_client.get("/api/v1/admin/usage/top/", {"metric": code, "start": "2026-10-01",
                                                             "end": "2026-11-01"}).json()
        got = {row["tenant"]: Decimal(row["value"]) for row in body["results"]}
        assert got == {w["tenant"].slug: w["lines"][code] for w in billed_month["tenants"].values()}
        assert [Decimal(r["value"]) for r in body["results"]] == sorted(got.values(), reverse=True)


def test_an_anniversary_period_is_billed_and_shown_exactly_from_the_lake(lake, acme, local_identity, monkeypatch):
    from metering.selectors import whole_bucket
    from tenants.models import Plan
    from tenants.services.subscriptions import subscription_create

    started = datetime(2026, 10, 15, 13, 27, tzinfo=UTC)
    subscription_create(tenant=acme, plan_version=Plan.objects.get(code="metered").current_version,
                        started_at=started, billing_cycle="anniversary", with_trial=False)
    records, ips = [], defaultdict(set)
    for i in range(24 * 40):  # one record an hour from Oct 10 to Nov 19, IPs repeating every 9 hours
        at = datetime(2026, 10, 10, tzinfo=UTC) + timedelta(hours=i, minutes=30)
        records.append(record(f"a{i}", at, tenant_id="t-acme", ip=f"10.0.0.{i % 9 if i % 50 else 100 + i}",
                              length=100 + (i * 37) % 1000))
        if datetime(2026, 10, 15, 13, tzinfo=UTC) <= at < datetime(2026, 11, 15, 13, tzinfo=UTC):
            ips["period"].add(records[-1]["ip"])
            ips["largest"].add(records[-1]["response_length"])
    lake.append(records)
    usage_sync(start=datetime(2026, 10, 10, tzinfo=UTC), end=datetime(2026, 11, 20, tzinfo=UTC), lake=lake)
    assert whole_bucket(started, started + timedelta(days=31)) is None  # not a day or a month: the lake answers
    monkeypatch.setattr("django.utils.timezone.now", lambda: datetime(2026, 11, 15, 13, 0, tzinfo=UTC))
    owner, _ = identity_services.tenant_user_create(tenant=acme, email="ann@acme.example", role=TenantRole.OWNER,
                                                    password=PASSWORD)
    body = api(identity_services.tenant_user_issue_token(tenant_user=owner)).get("/api/v1/usage/current/").json()
    current = {t["metric"]: Decimal(t["quantity"]) for t in body["totals"]}
    billing_run(as_of=datetime(2026, 11, 16, tzinfo=UTC), finalize_now=True, sync=False)
    invoice = acme.invoices.get()
    assert (invoice.period_start, invoice.period_end) == (started, datetime(2026, 11, 15, 13, 27, tzinfo=UTC))
    lines = {line.metric_code: line.quantity for line in invoice.lines.filter(type=LineType.USAGE)}
    assert lines["active_ips"] == len(ips["period"]) and lines["largest_ok"] == max(ips["largest"])
    assert current == lines


def test_the_migration_lists_distinct_counts_for_the_sync_which_computes_them(billed_month, client):
    import importlib

    from django.db import connection
    from django.db.migrations.loader import MigrationLoader

    from metering.models import RollupBackfill
    from metering.selectors import period_quantities

    world = next(iter(billed_month["tenants"].values()))
    tenant, lines = world["tenant"], world["lines"]
    # The rollups as the previous version left them: every day the sum of its hours, no months.
    DailyUsage.objects.all().delete()
    for row in (HourlyUsage.objects.annotate(day=TruncDay("hour", tzinfo=UTC)).values("tenant_id", "metric_id", "day")
                .annotate(total=Sum("value"), peak=Max("value")).order_by()):
        DailyUsage.objects.create(tenant_id=row["tenant_id"], metric_id=row["metric_id"], day=row["day"].date(),
                                  value=row["total"], peak=row["peak"])
    MonthlyUsage.objects.all().delete()
    migration = importlib.import_module("metering.migrations.0008_monthly_usage")
    # The models as that migration knew them (the metric was metering's then).
    state = MigrationLoader(connection).project_state(("metering", "0008_monthly_usage")).apps
    migration.make_figures_exact(state, type("SchemaEditor", (), {"connection": connection})())
    # What the database alone can make exact is: a max day is its largest hour, months add up or max.
    months = dict(MonthlyUsage.objects.filter(tenant=tenant).values_list("metric__code", "value"))
    assert months == {code: lines[code] * (MB if code == "data_out_mb" else 1) for code in CODES if code != "active_ips"}
    assert list(RollupBackfill.objects.values_list("month", flat=True)) == [OCT.date()]
    # Meanwhile the month's distinct count is asked of the lake (billing, usage/current), and the API
    # says its buckets are being computed.
    assert period_quantities(subscription_or_tenant=tenant, metrics=["active_ips"], start=OCT,
                             end=NOV)["active_ips"] == lines["active_ips"]
    response = api(world["token"]).get("/api/v1/usage/", {"start": "2026-10-01", "end": "2026-11-01",
                                                          "granularity": "month"})
    assert response.status_code == 503 and "being computed" in response.json()["detail"]
    # The next sync, whatever its window, computes them from the lake.
    usage_sync(start=datetime(2026, 11, 20, tzinfo=UTC), end=datetime(2026, 11, 20, 1, tzinfo=UTC))
    assert not RollupBackfill.objects.exists()
    assert buckets(api(world["token"]), granularity="month")[("active_ips", "2026-10-01T00:00:00Z")] == lines[
        "active_ips"]
    day = OCT + timedelta(days=3)
    assert DailyUsage.objects.get(tenant=tenant, metric__code="active_ips", day=day.date()).value == billed_month[
        "truth"][(tenant.pk, "day", day)]["active_ips"]


def test_whole_period_queries_render_for_athena_and_parse_back():
    import sqlglot

    from metering.lake import queries

    ips = queries.MetricQuery(code="ips", aggregation="unique_count", field="ip")
    top = queries.MetricQuery(code="top", aggregation="max", field="response_length", filters=(("status", ("2xx",)),))
    sql = queries.render(queries.whole_period_query(
        [ips, top], parts=[("month", OCT, NOV), ("day", OCT, OCT + timedelta(days=1)), (None, OCT, NOV)],
        table="restapi_access_log_iceberg", database="restapi_access_log_iceberg_db",
        user_tenants={"u'1": "acme"}, tenants=["acme"]), "athena")
    assert "UNION ALL" in sql and "DATE_TRUNC('MONTH'" in sql and "VALUES ('u''1', 'acme')" in sql
    assert "COUNT(DISTINCT" in sql and "MAX(CASE WHEN" in sql
    sqlglot.parse_one(sql, read="athena")
    calls = queries.MetricQuery(code="calls", aggregation="count")
    with pytest.raises(queries.QueryError):
        queries.whole_period_query([calls], parts=[(None, OCT, NOV)], table="t")


def test_the_admin_lists_monthly_usage_read_only(admin_client, acme):
    MonthlyUsage.objects.create(tenant=acme, metric=Metric.objects.get(code="active_ips"), month=OCT.date(), value=42)
    response = admin_client.get("/admin/metering/monthlyusage/")
    assert response.status_code == 200 and "t-acme" in response.content.decode()
    assert admin_client.get("/admin/metering/monthlyusage/add/").status_code == 403


def test_a_month_is_asked_of_the_lake_again_only_when_a_day_gained_a_value(lake, acme, monkeypatch):
    day = datetime(2026, 10, 7, tzinfo=UTC)
    lake.append([record(f"r{i}", day + timedelta(hours=i), tenant_id="t-acme", ip=f"10.0.0.{i % 3}")
                 for i in range(6)])
    lake.append([record("early", datetime(2026, 10, 2, 5, tzinfo=UTC), tenant_id="t-acme", ip="10.0.0.9")])
    usage_sync(start=datetime(2026, 10, 1, tzinfo=UTC), end=datetime(2026, 10, 8, tzinfo=UTC), lake=lake)
    asked = []
    real = lake.whole_period
    monkeypatch.setattr(lake, "whole_period", lambda **kw: asked.append([p[0] for p in kw["parts"]]) or real(**kw))

    def month_ips():
        return MonthlyUsage.objects.get(tenant=acme, metric__code="active_ips", month=OCT.date()).value

    window = (day + timedelta(hours=3), day + timedelta(hours=6))
    assert month_ips() == 4
    usage_sync(start=window[0], end=window[1], lake=lake)  # nothing new: the day's count is unchanged
    lake.append([record("again", day + timedelta(hours=4, minutes=9), tenant_id="t-acme", ip="10.0.0.1")])
    usage_sync(start=window[0], end=window[1], lake=lake)  # a value the day had: still unchanged
    assert asked == [["day"], ["day"]] and month_ips() == 4
    lake.append([record("new", day + timedelta(hours=4, minutes=10), tenant_id="t-acme", ip="10.0.0.7")])
    usage_sync(start=window[0], end=window[1], lake=lake)
    assert asked[-2:] == [["day"], ["month"]] and month_ips() == 5
    # A value new to the day but seen earlier in the month: the month is asked, and does not change.
    lake.append([record("seen", day + timedelta(hours=4, minutes=11), tenant_id="t-acme", ip="10.0.0.9")])
    usage_sync(start=window[0], end=window[1], lake=lake)
    assert asked[-2:] == [["day"], ["month"]] and month_ips() == 5
    assert DailyUsage.objects.get(tenant=acme, metric__code="active_ips", day=day.date()).value == 5


def test_ranges_at_the_end_of_time_are_a_400_not_an_error(acme, local_identity, staff_client):
    owner, _ = identity_services.tenant_user_create(tenant=acme, email="ann@acme.example", role=TenantRole.OWNER,
                                                    password=PASSWORD)
    client = api(identity_services.tenant_user_issue_token(tenant_user=owner))
    response = client.get("/api/v1/usage/", {"start": "9999-12-01", "end": "9999-12-31T23:30:00Z"})
    assert response.status_code == 400 and "out of the supported range" in response.json()["end"][0]
    response = staff_client.get("/api/v1/admin/usage/top/", {"metric": "active_ips", "start": "9999-12-01",
                                                              "end": "9999-12-31T23:30:00Z"})
    assert response.status_code == 400 and "out of the supported range" in response.json()["end"][0]
