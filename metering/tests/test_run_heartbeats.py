"""Runs that die are visible: billing runs and usage syncs keep a heartbeat, and one whose worker was killed
is marked failed by the next run of its kind (or the periodic check), which then does the work."""

import os
import signal
import time
from datetime import UTC, datetime, timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.utils import timezone

from metering.lake.local import LocalLake
from metering.models import (
    BillingRun,
    BillingRunStatus,
    HourlyUsage,
    Invoice,
    SyncCursor,
    SyncOutcome,
    SyncRun,
)
from metering.tests.processes import portal_env, start_paused
from metering.transform import transform_record
from tenants.services.subscriptions import subscription_create
from tenants.tests.factories import TenantFactory, import_sample_plans

OCT = datetime(2026, 10, 1, tzinfo=UTC)
NOV = datetime(2026, 11, 1, tzinfo=UTC)
STALE = 2  # seconds: RUN_STALE_AFTER_SECONDS in these tests
SAMPLE = Path(__file__).parent / "data" / "apigw_access_log_sample.jsonl"


def kill_and_wait_stale(proc, model, pk):
    """SIGKILL (nothing runs in the process after it), then wait until its heartbeat is older than STALE."""
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    run = model.objects.get(pk=pk)
    last = run.heartbeat_at or run.started_at
    time.sleep(max(0.0, (last + timedelta(seconds=STALE + 0.5) - timezone.now()).total_seconds()))


@pytest.mark.slow
def test_a_billing_run_killed_mid_run_is_failed_by_the_next_run_which_bills_the_rest(transactional_db, tmp_path,
                                                                                       settings):
    versions = import_sample_plans()
    subscriptions = [
        subscription_create(tenant=TenantFactory(slug=f"k{i}"), plan_version=versions["starter"], started_at=OCT,
                            with_trial=False)
        for i in range(7)
    ]
    as_of = (NOV + timedelta(hours=2)).isoformat()
    env = portal_env(RUN_STALE_AFTER_SECONDS=str(STALE))
    # Batches of 3: the first is committed, the second is open (its subscriptions locked) when the run stops.
    proc = start_paused("run_billing", "--as-of", as_of, "--no-sync",
                        pause_at="metering.services.billing.run.invoices_create_locked", call=2, flag=tmp_path / "paused", env=env, patch="metering.services.billing.run.BATCH_SIZE=3")
    try:
        dead = BillingRun.objects.get()
        assert dead.status == BillingRunStatus.RUNNING and dead.heartbeat_at is not None
        assert Invoice.objects.count() == 3
        kill_and_wait_stale(proc, BillingRun, dead.pk)
    finally:
        proc.kill()
    dead.refresh_from_db()
    assert dead.status == BillingRunStatus.RUNNING, "a killed run cannot record its own end"

    settings.RUN_STALE_AFTER_SECONDS = STALE
    out = StringIO()
    call_command("run_billing", "--as-of", as_of, "--no-sync", stdout=out)

    dead.refresh_from_db()
    rerun = BillingRun.objects.exclude(pk=dead.pk).get()
    assert dead.status == BillingRunStatus.FAILED
    assert dead.errors.startswith("The worker stopped responding: no heartbeat since ")
    assert dead.errors.endswith(f"marked failed by billing run {rerun.pk}.") and dead.finished_at is not None
    assert rerun.status == BillingRunStatus.DONE and rerun.invoices_created == 4
    assert "4 invoices created" in out.getvalue()
    # Exactly one invoice per subscription and period, each whole.
    for subscription in subscriptions:
        (invoice,) = Invoice.objects.filter(subscription=subscription)
        assert (invoice.period_start, invoice.period_end) == (OCT, NOV)
        assert invoice.lines.exists()


def sample_records():
    return [row for ok, row, _ in (transform_record(line) for line in SAMPLE.read_text().splitlines()) if ok]


@pytest.mark.slow
def test_a_sync_killed_mid_run_is_failed_by_the_next_sync(transactional_db, tmp_path, settings):
    import_sample_plans()
    TenantFactory(slug="t-acme")
    TenantFactory(slug="t-globex")
    warehouse = tmp_path / "lake"
    settings.LAKE_BACKEND, settings.LAKE_WAREHOUSE_DIR, settings.USAGE_SYNC_RETRY_DELAY = "local", str(warehouse), 0
    LocalLake(warehouse=warehouse, database=settings.LAKE_DATABASE, table=settings.LAKE_TABLE).append(sample_records())
    env = portal_env(RUN_STALE_AFTER_SECONDS=str(STALE), LAKE_BACKEND="local", LAKE_WAREHOUSE_DIR=str(warehouse))
    window = ("--start", "2026-11-01T00:00:00Z", "--end", "2026-11-02T00:00:00Z")
    # Killed after its lake read, before it writes a row.
    proc = start_paused("sync_usage", *window, pause_at="metering.services.sync.write_hourly_rows", call=1,
                        flag=tmp_path / "paused", env=env)
    try:
        dead = SyncRun.objects.get()
        assert dead.outcome == SyncOutcome.RUNNING
        kill_and_wait_stale(proc, SyncRun, dead.pk)
    finally:
        proc.kill()
    assert not HourlyUsage.objects.exists() and SyncCursor.objects.get().synced_until is None

    settings.RUN_STALE_AFTER_SECONDS = STALE
    call_command("sync_usage", *window, stdout=StringIO())

    dead.refresh_from_db()
    rerun = SyncRun.objects.exclude(pk=dead.pk).get()
    assert dead.outcome == SyncOutcome.FAILED and "worker stopped responding" in dead.error
    assert dead.error.endswith(f"marked failed by usage sync {rerun.pk}.")
    assert rerun.outcome == SyncOutcome.SUCCEEDED
    assert HourlyUsage.objects.exists()
    assert SyncCursor.objects.get().synced_until == datetime(2026, 11, 2, tzinfo=UTC)
