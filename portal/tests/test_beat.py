"""The scheduled path end to end: a real `celery beat` and `celery worker` (Redis, the test database) turn
generated traffic in the local lake into hourly usage rows, and a closed period into an invoice, with no
command typed. BEAT_EVERY_SECONDS shortens the schedules so that it takes seconds, not an hour."""

import time
from datetime import timedelta

import pytest
from django.db.models import Sum
from django.utils import timezone

from metering.lake.local import LocalLake

pytestmark = [pytest.mark.redis, pytest.mark.slow]


@pytest.fixture
def beat_env(monkeypatch, tmp_path, settings):
    """What the worker and beat processes see: the test's lake, schedules every 2 s, no grace period."""
    folder = tmp_path / "beat-lake"
    for name, value in {"LAKE_BACKEND": "local", "LAKE_WAREHOUSE_DIR": str(folder), "BEAT_EVERY_SECONDS": "2",
                        "BILLING_GRACE_PERIOD_MINUTES": "0", "USAGE_SYNC_RETRY_DELAY": "0"}.items():
        monkeypatch.setenv(name, value)
    settings.LAKE_BACKEND = "local"
    settings.LAKE_WAREHOUSE_DIR = str(folder)
    return LocalLake(warehouse=folder, database=settings.LAKE_DATABASE, table=settings.LAKE_TABLE)


def lake_totals(lake, start, end) -> dict[str, int]:
    """Per metric, the sum of the lake's hourly groups, records without tenant_id attributed through their
    user as the sync does: what the hourly rows (attributed or not) must hold."""
    from metering.services.sync import tenant_usernames
    from tenants.models import Metric

    metrics = list(Metric.objects.order_by("pk"))
    table = lake.hourly_usage_table(metrics=metrics, start=start, end=end, user_tenants=tenant_usernames())
    return {m.code: sum(int(v or 0) for v in table.column(f"m{i}").to_pylist()) for i, m in enumerate(metrics)}


def portal_totals() -> dict[str, int]:
    from metering.models import HourlyUsage, UnattributedUsage
    from tenants.models import Metric

    totals = {}
    for metric in Metric.objects.order_by("pk"):
        totals[metric.code] = sum(int(model.objects.filter(metric=metric).aggregate(s=Sum("value"))["s"] or 0)
                                  for model in (HourlyUsage, UnattributedUsage))
    return totals


def wait_for(what: str, check, tmp_path, timeout: float = 120):
    """Poll ``check`` until it returns something true; on timeout fail with the worker's and beat's logs."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {name} (last 6000 characters)\n{(tmp_path / name).read_text()[-6000:]}"
                             for name in ("beat.log", "worker.log") if (tmp_path / name).exists())
            pytest.fail(f"after {timeout:.0f} s, still waiting for {what}\n{logs}")
        time.sleep(0.5)


def test_beat_syncs_traffic_into_hourly_rows_and_bills_the_closed_period(transactional_db, beat_env, tmp_path,
                                                                          request):
    from metering.models import HourlyUsage, Invoice, InvoiceStatus, SyncOutcome, SyncRun
    from metering.services.demo import last_month
    from metering.services.sync import ceil_hour
    from metering.services.traffic import traffic_generate
    from tenants.models import Subscription

    start, end = last_month()
    now = timezone.now()
    # Two tenants subscribed since the start of last month, with last month's and this month's traffic.
    traffic_generate(tenants=2, events=3_000, start=start, end=now - timedelta(minutes=5), seed=13, lake=beat_env)
    subscriptions = list(Subscription.objects.order_by("pk"))
    assert len(subscriptions) == 2 and not HourlyUsage.objects.exists() and not Invoice.objects.exists()

    request.getfixturevalue("celery_beat_process")  # from here on, nobody calls anything

    window = (start, ceil_hour(timezone.now()))
    expected = lake_totals(beat_env, *window)
    assert expected["api_calls"] > 0
    wait_for(f"hourly rows equal to the lake's {expected}", lambda: portal_totals() == expected, tmp_path)
    assert SyncRun.objects.filter(triggered_by="celery", outcome=SyncOutcome.SUCCEEDED).exists()

    def invoices():
        found = list(Invoice.objects.filter(period_start=start, period_end=end, status=InvoiceStatus.FINALIZED))
        return found if len(found) == len(subscriptions) else None

    billed = wait_for("a finalized invoice for last month per subscription", invoices, tmp_path)
    assert {i.subscription_id for i in billed} == {s.pk for s in subscriptions}
    assert all(i.number and i.total > 0 for i in billed)
    assert all(i.lines.filter(type="usage", quantity__gt=0).exists() for i in billed), "last month's usage is billed"

    # New traffic becomes rows at a later tick, still with nobody calling anything.
    traffic_generate(tenants=2, events=200, start=timezone.now() - timedelta(minutes=1), end=timezone.now(),
                     seed=14, lake=beat_env)
    expected_now = lake_totals(beat_env, window[0], ceil_hour(timezone.now()))
    assert expected_now["api_calls"] > expected["api_calls"]
    wait_for(f"the new records in the hourly rows {expected_now}", lambda: portal_totals() == expected_now, tmp_path)
    # Billing ran again meanwhile (every 2 s) and billed nothing twice.
    assert Invoice.objects.count() == len(subscriptions)
    assert "celery.backend_cleanup" not in (tmp_path / "beat.log").read_text(), "only the portal's schedules"
