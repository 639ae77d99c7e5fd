"""Billing a tenant in America/New_York across the November daylight-saving change, through `run_billing`,
against an independent recomputation written here (periods from the clock, quantities from the hours,
prices from the plan's numbers), not through the pricing engine (docs/plans.md, "Time zones")."""

from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

import pytest
from django.core.management import call_command

from metering.models import HourlyUsage, Invoice
from metering.tests.test_billing import empty_worker_lake  # noqa: F401  (the worker's lake: no record)
from tenants.models import Metric
from tenants.services.subscriptions import subscription_create
from tenants.tests.factories import TenantFactory, import_sample_plans

CENT = Decimal("0.01")


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


# (hour in UTC, api_calls, data_out bytes): every tenant below gets the same rows.
ROWS = [
    (utc(2026, 10, 31, 22), 1_000, 0),          # Oct 31 18:00 EDT
    (utc(2026, 11, 1, 3), 2_000, 0),            # Oct 31 23:00 EDT: October in New York, November in UTC
    (utc(2026, 11, 1, 4), 3_000, 1_000_000),    # Nov 1 00:00 EDT: New York's November starts
    (utc(2026, 11, 1, 5), 4_000, 0),            # Nov 1 01:00 EDT, the first 01:00
    (utc(2026, 11, 1, 6), 5_000, 0),            # Nov 1 01:00 EST, the repeated 01:00: counted too
    (utc(2026, 11, 16, 4), 6_000, 0),           # Nov 15 23:00 EST
    (utc(2026, 11, 16, 5), 7_000, 0),           # Nov 16 00:00 EST
    (utc(2026, 12, 1, 4), 20_000, 3_000_000),   # Nov 30 23:00 EST: November in New York, December in UTC
    (utc(2026, 12, 1, 5), 900_000, 0),          # Dec 1 00:00 EST: December everywhere
]


def price_pro(start: datetime, end: datetime, active_from: datetime) -> list[tuple]:
    """The Pro plan of tenants.tests.factories over [start, end), active from `active_from`, by hand:
    base fee 49.00 and commitment 100.00 prorated by seconds, api_calls graduated (10,000 free, then
    0.0005 to 1,000,000, then 0.0002 plus 25.00), data out 0.09 per MB, each line rounded half-up."""
    counted = [row for row in ROWS if max(start, active_from) <= row[0] < end]
    calls = sum(row[1] for row in counted)
    megabytes = Decimal(sum(row[2] for row in counted)) / 1_000_000
    share = Decimal((end - max(start, active_from)).total_seconds()) / Decimal((end - start).total_seconds())
    base = (Decimal("49.00") * share).quantize(CENT, ROUND_HALF_UP)
    graduated = Decimal(min(max(calls - 10_000, 0), 990_000)) * Decimal("0.0005")
    if calls > 1_000_000:
        graduated += Decimal(calls - 1_000_000) * Decimal("0.0002") + Decimal("25.00")
    lines = [("base_fee", "", None, base),
             ("usage", "api_calls", Decimal(calls), graduated.quantize(CENT, ROUND_HALF_UP)),
             ("usage", "data_out_mb", megabytes, (megabytes * Decimal("0.09")).quantize(CENT, ROUND_HALF_UP))]
    commitment = (Decimal("100.00") * share).quantize(CENT, ROUND_HALF_UP)
    subtotal = sum(line[3] for line in lines)
    if subtotal < commitment:
        lines.append(("minimum_commitment", "", None, commitment - subtotal))
    return lines


def lines_of(invoice):
    return [(line.type, line.metric_code, line.quantity, line.amount) for line in invoice.lines.order_by("position")]


@pytest.fixture
def tenants(db):
    versions = import_sample_plans()
    subscribed = {}
    for slug, zone, started in [
        ("nyc", "America/New_York", utc(2026, 10, 1, 4)),         # Oct 1 00:00 EDT
        ("nyc-late", "America/New_York", utc(2026, 11, 16, 5)),   # Nov 16 00:00 EST
        ("london", "UTC", utc(2026, 10, 1)),
    ]:
        tenant = TenantFactory(slug=slug, time_zone=zone)
        subscription_create(tenant=tenant, plan_version=versions["pro"], started_at=started, with_trial=False)
        for metric in Metric.objects.all():
            for hour, calls, size in ROWS:
                value = calls if metric.code == "api_calls" else size
                if value:
                    HourlyUsage.objects.create(tenant=tenant, metric=metric, hour=hour, value=value)
        subscribed[slug] = tenant
    return subscribed


def run_billing(as_of: str):
    call_command("run_billing", "--as-of", as_of, "--no-sync", "--finalize-now", verbosity=0)


def invoice(slug, start):
    return Invoice.objects.get(tenant__slug=slug, period_start=start)


def test_new_york_november_across_dst_equals_the_recomputation(tenants):
    ny_oct, ny_nov, ny_dec = utc(2026, 10, 1, 4), utc(2026, 11, 1, 4), utc(2026, 12, 1, 5)
    assert ny_dec - ny_nov == timedelta(hours=721)  # the extra hour of November 1

    run_billing("2026-12-01T04:30:00Z")  # UTC's November is over; New York's ends at 05:00Z
    assert set(Invoice.objects.values_list("tenant__slug", "period_start")) == {
        ("nyc", ny_oct), ("london", utc(2026, 10, 1)), ("london", utc(2026, 11, 1))}
    run_billing("2026-12-01T05:00:00Z")  # local midnight has passed: November closes in New York
    assert Invoice.objects.count() == 5
    run_billing("2026-12-01T06:00:00Z")  # safe to run again
    assert Invoice.objects.count() == 5

    october, november = invoice("nyc", ny_oct), invoice("nyc", ny_nov)
    assert (october.period_end, november.period_end) == (ny_nov, ny_dec)
    assert lines_of(october) == price_pro(ny_oct, ny_nov, ny_oct)
    assert lines_of(november) == price_pro(ny_nov, ny_dec, ny_oct)
    # November counts both 01:00s and New York's last evening, not the 23:00 EDT of October 31.
    assert lines_of(november)[1][2] == 3_000 + 4_000 + 5_000 + 6_000 + 7_000 + 20_000
    assert november.total == Decimal("100.00")  # 49.00 + 12.50 + 0.36, topped up to the commitment

    late = invoice("nyc-late", ny_nov)  # the period is the month; the base fee counts from the start
    assert late.period_end == ny_dec
    assert lines_of(late) == price_pro(ny_nov, ny_dec, utc(2026, 11, 16, 5))
    # 360 of November's 721 hours: 49.00 × 360 / 721 = 24.466… and 100.00 × 360 / 721 = 49.930…
    assert lines_of(late)[0][3] == Decimal("24.47") and late.total == Decimal("49.93")

    london = invoice("london", utc(2026, 11, 1))
    assert lines_of(london) == price_pro(utc(2026, 11, 1), utc(2026, 12, 1), utc(2026, 10, 1))
    # Every hour is billed once per tenant: the New York and UTC invoices share the same hours between them.
    billed_ny = sum(line.quantity for inv in Invoice.objects.filter(tenant__slug="nyc")
                    for line in inv.lines.filter(metric_code="api_calls"))
    assert billed_ny == sum(row[1] for row in ROWS if row[0] < ny_dec)


def test_run_billing_period_is_the_month_on_the_tenants_clock(db):
    """Tokyo's November starts on October 31 at 15:00 UTC: `--period 2026-11` bills it, `--period 2026-10` does not."""
    versions = import_sample_plans()
    tenant = TenantFactory(slug="tokyo", time_zone="Asia/Tokyo")
    subscription_create(tenant=tenant, plan_version=versions["starter"], started_at=utc(2026, 10, 31, 15),
                        with_trial=False)
    call_command("run_billing", "--period", "2026-10", "--as-of", "2026-12-01T00:00:00Z", "--no-sync",
                 "--finalize-now", verbosity=0)
    assert not Invoice.objects.exists()
    call_command("run_billing", "--period", "2026-11", "--as-of", "2026-12-01T00:00:00Z", "--no-sync",
                 "--finalize-now", verbosity=0)
    november = Invoice.objects.get()
    assert (november.period_start, november.period_end) == (utc(2026, 10, 31, 15), utc(2026, 11, 30, 15))
    assert november.number is not None  # finalized (as paid: nothing is due)


def test_new_york_november_from_the_lake_counts_every_record_once(db, settings, tmp_path):
    """Records in the local lake around both bounds and the repeated hour, synced and billed: every metric
    (a count, a sum, a max, and a distinct count over New York's November, which is no UTC month and so
    is asked of the lake) equals the figure of the records whose time falls in [04:00Z Nov 1, 05:00Z Dec 1)."""
    from metering.lake.local import LocalLake
    from metering.services.billing.run import billing_run
    from metering.services.sync import usage_sync
    from metering.tests.test_figures import PLANS, record
    from tenants.models import Plan
    from tenants.services.plans import plans_import

    settings.LAKE_BACKEND = "local"
    settings.LAKE_WAREHOUSE_DIR = str(tmp_path / "lake")
    settings.USAGE_SYNC_RETRY_DELAY = 0
    lake = LocalLake(warehouse=settings.LAKE_WAREHOUSE_DIR, database=settings.LAKE_DATABASE, table=settings.LAKE_TABLE)
    plans_import(document=PLANS)
    tenant = TenantFactory(slug="t-nyc", time_zone="America/New_York")
    subscription_create(tenant=tenant, plan_version=Plan.objects.get(code="metered").current_version,
                        started_at=utc(2026, 10, 1, 4), with_trial=False)
    records = []
    for i in range(80):  # every 50 minutes from Oct 31 12:00Z: across both 01:00s of November 1
        records.append(record(f"n{i}", utc(2026, 10, 31, 12) + timedelta(minutes=50 * i), tenant_id="t-nyc",
                              ip=f"10.0.0.{i % 13}", length=1000 + i))
    for i in range(40):  # and every 10 minutes around New York's last midnight of November
        records.append(record(f"d{i}", utc(2026, 12, 1, 2) + timedelta(minutes=10 * i), tenant_id="t-nyc",
                              ip=f"10.0.1.{i % 7}", length=5000 + i))
    records.append(records[5])  # a redelivered record counts once
    lake.append(records)
    usage_sync(start=utc(2026, 10, 31), end=utc(2026, 12, 2), lake=lake)
    billing_run(as_of=utc(2026, 12, 1, 6), finalize_now=True, sync=False)

    start, end = utc(2026, 11, 1, 4), utc(2026, 12, 1, 5)
    inside = {r["request_id"]: r for r in records
              if start <= datetime.fromisoformat(r["request_time"].replace("Z", "+00:00")) < end}
    november = Invoice.objects.get(tenant=tenant, period_start=start)
    assert november.period_end == end
    got = {line.metric_code: line.quantity for line in november.lines.filter(type="usage")}
    assert got == {
        "api_calls": len(inside),
        "data_out_mb": Decimal(sum(r["response_length"] for r in inside.values())) / 1_000_000,
        "largest_ok": max(r["response_length"] for r in inside.values()),
        "active_ips": len({r["ip"] for r in inside.values()}),
    }
    # October (to 04:00Z on November 1) and November share the records before New York's December: none twice.
    october = Invoice.objects.get(tenant=tenant, period_start=utc(2026, 10, 1, 4))
    before_december = {r["request_id"] for r in records
                       if datetime.fromisoformat(r["request_time"].replace("Z", "+00:00")) < end}
    assert october.lines.get(metric_code="api_calls").quantity + got["api_calls"] == len(before_december)


@pytest.mark.redis
def test_the_billing_task_on_a_real_worker_closes_new_yorks_november_at_its_midnight(
        empty_worker_lake, celery_worker_process):  # noqa: F811
    """The beat's task on a worker: at 04:30 UTC on December 1 London's November is billed and New York's
    is not (it is 23:30 there); at 05:00 UTC it is."""
    from metering.tasks import run_billing

    versions = import_sample_plans()
    for slug, zone in (("nyc", "America/New_York"), ("london", "UTC")):
        subscription_create(tenant=TenantFactory(slug=slug, time_zone=zone), plan_version=versions["starter"],
                            started_at=utc(2026, 11, 1, 4), with_trial=False)

    def run(as_of):
        return run_billing.apply_async(kwargs={"as_of": as_of}, queue=celery_worker_process).get(timeout=120)

    assert run("2026-12-01T04:30:00+00:00")["created"] == 1
    assert list(Invoice.objects.values_list("tenant__slug", flat=True)) == ["london"]
    assert run("2026-12-01T05:00:00+00:00")["created"] == 1
    assert run("2026-12-01T06:00:00+00:00")["created"] == 0
    assert Invoice.objects.get(tenant__slug="nyc").period_start == utc(2026, 11, 1, 4)
