"""The usage sync: hourly rows from the local lake, idempotency, late data, attribution, failures, the selector."""

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command

from metering.lake import LakeError
from metering.lake.local import LocalLake
from metering.models import HourlyUsage, SyncCursor, SyncOutcome, SyncRun, UnattributedUsage
from metering.selectors import period_quantities
from metering.services.sync import usage_sync
from metering.transform import transform_record
from tenants.models import Metric, TenantUser
from tenants.tests.factories import TenantFactory, import_sample_plans

SAMPLE = Path(__file__).parent / "data" / "apigw_access_log_sample.jsonl"
START, END = datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 2, tzinfo=UTC)
OLD_FORMAT_USER = "5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a809"  # line 45: no tenant_id, a t-globex user


def sample_records():
    return [row for ok, row, _ in (transform_record(line) for line in SAMPLE.read_text().splitlines()) if ok]


@pytest.fixture
def lake(settings, tmp_path):
    settings.LAKE_BACKEND = "local"
    settings.LAKE_WAREHOUSE_DIR = str(tmp_path / "lake")
    settings.USAGE_SYNC_RETRY_DELAY = 0
    return LocalLake(warehouse=settings.LAKE_WAREHOUSE_DIR, database=settings.LAKE_DATABASE, table=settings.LAKE_TABLE)


@pytest.fixture
def portal(db):
    import_sample_plans()
    Metric.objects.create(code="active_ips", name="Active IPs", aggregation="unique_count", field="ip")
    Metric.objects.create(code="largest", name="Largest response", aggregation="max", field="response_length")
    acme = TenantFactory(slug="t-acme")
    globex = TenantFactory(slug="t-globex")
    return {"acme": acme, "globex": globex}


def snapshot():
    return (
        sorted((r.tenant.slug, r.metric.code, r.hour, r.value) for r in HourlyUsage.objects.select_related(
            "tenant", "metric")),
        sorted((r.tenant_key, r.user_key, r.metric.code, r.hour, r.value) for r in UnattributedUsage.objects.all()),
    )


def expected(records, tenant, *, status_2xx=True):
    unique = {r["request_id"]: r for r in records if r["tenant_id"] == tenant}
    calls = sum(1 for r in unique.values() if 200 <= r["status"] <= 299 or not status_2xx)
    return calls, sum(r["response_length"] for r in unique.values())


def test_sync_writes_hourly_rows_per_tenant_and_metric(lake, portal):
    records = sample_records()
    lake.append(records)
    run = usage_sync(start=START, end=END)
    assert run.outcome == SyncOutcome.SUCCEEDED and run.rows_read > 0 and run.duration_seconds is not None
    acme = {r.metric.code: r.value for r in HourlyUsage.objects.filter(tenant=portal["acme"])}
    calls, out = expected(records, "t-acme")
    assert acme["api_calls"] == calls
    assert acme["data_out_mb"] == out  # raw bytes: the divisor is the selector's job
    # Line 45 has no tenant_id and its user is nobody's yet: kept as unattributed usage, not dropped.
    orphans = {(r.tenant_key, r.user_key) for r in UnattributedUsage.objects.all()}
    assert ("", OLD_FORMAT_USER) in orphans
    assert ("", "") in orphans  # the unauthenticated 401 (its response bytes)
    assert SyncCursor.objects.get(name="local").synced_until == END


def test_sync_attributes_old_records_through_the_tenant_user(lake, portal):
    lake.append(sample_records())
    TenantUser.objects.create(tenant=portal["globex"], username=OLD_FORMAT_USER, email="ops@globex.example")
    usage_sync(start=START, end=END)
    assert not UnattributedUsage.objects.filter(user_key=OLD_FORMAT_USER).exists()
    calls, _ = expected(sample_records(), "t-globex")
    total = sum(r.value for r in HourlyUsage.objects.filter(tenant=portal["globex"], metric__code="api_calls"))
    assert total == calls + 1  # line 45 is a POST 200


def test_sync_is_idempotent_and_overlapping_windows_agree(lake, portal):
    lake.append(sample_records())
    usage_sync(start=START, end=END)
    first = snapshot()
    usage_sync(start=START, end=END)
    assert snapshot() == first
    usage_sync(start=START - timedelta(hours=5), end=START + timedelta(hours=1))
    usage_sync(start=START + timedelta(minutes=30), end=END)  # widened to whole hours
    assert snapshot() == first
    assert HourlyUsage.objects.count() == len(first[0])


def test_late_records_are_counted_by_the_lookback(lake, portal, settings, monkeypatch):
    records = sample_records()
    lake.append(records)
    now = START + timedelta(hours=1, minutes=10)
    monkeypatch.setattr("django.utils.timezone.now", lambda: now)
    usage_sync(start=START, end=now)
    before = HourlyUsage.objects.get(tenant=portal["acme"], metric__code="api_calls", hour=START).value
    # A record of 00:59 arrives after the sync (Firehose buffering), and a duplicate of an old one.
    late = dict(records[2], request_id="late-0001", request_time="2026-11-01T00:59:00Z")
    lake.append([late, records[2]])
    run = usage_sync()  # from the cursor minus USAGE_SYNC_LOOKBACK_HOURS
    assert run.window_start <= START
    after = HourlyUsage.objects.get(tenant=portal["acme"], metric__code="api_calls", hour=START).value
    assert after == before + 1


class FailingLake:
    def __init__(self, fail_times, real=None):
        self.fail_times = fail_times
        self.calls = 0
        self.real = real

    def hourly_usage_table(self, **kwargs):
        self.calls += 1
        if self.calls <= self.fail_times:
            raise LakeError("Athena query FAILED: HIVE_BAD_DATA")
        return self.real.hourly_usage_table(**kwargs)

    def __getattr__(self, name):  # the run's other queries (distinct counts of days and months)
        return getattr(self.real, name)


def test_a_failed_query_is_retried_then_recorded_and_leaves_rows_intact(lake, portal):
    lake.append(sample_records())
    usage_sync(start=START, end=END)
    before = snapshot()
    cursor = SyncCursor.objects.get().synced_until
    failing = FailingLake(fail_times=99)
    with pytest.raises(LakeError):
        usage_sync(start=START, end=END + timedelta(days=1), lake=failing, attempts=3, retry_delay=0)
    assert failing.calls == 3
    assert snapshot() == before
    assert SyncCursor.objects.get().synced_until == cursor
    run = SyncRun.objects.order_by("-pk").first()
    assert run.outcome == SyncOutcome.FAILED and "HIVE_BAD_DATA" in run.error and run.attempts == 3


def test_a_transient_failure_is_retried(lake, portal):
    lake.append(sample_records())
    flaky = FailingLake(fail_times=1, real=lake)
    run = usage_sync(start=START, end=END, lake=flaky, attempts=3, retry_delay=0)
    assert run.outcome == SyncOutcome.SUCCEEDED and run.attempts == 2 and HourlyUsage.objects.exists()


def test_period_quantities(lake, portal):
    records = sample_records()
    lake.append(records)
    usage_sync(start=START, end=END)
    q = period_quantities(subscription_or_tenant=portal["acme"],
                          metrics=["api_calls", "data_out_mb", "active_ips", "largest"], start=START, end=END)
    acme = {r["request_id"]: r for r in records if r["tenant_id"] == "t-acme"}
    calls, out = expected(records, "t-acme")
    assert q["api_calls"] == calls
    assert q["data_out_mb"] == Decimal(out) / Decimal(1_000_000)
    assert q["active_ips"] == len({r["ip"] for r in acme.values()})
    assert q["largest"] == max(r["response_length"] for r in acme.values())
    # Distinct IPs over the period are not the sum of the hourly distinct counts.
    hourly = HourlyUsage.objects.filter(tenant=portal["acme"], metric__code="active_ips")
    assert hourly.exists()
    empty = period_quantities(subscription_or_tenant=portal["acme"], metrics=Metric.objects.all(),
                              start=END, end=END + timedelta(days=1))
    assert set(empty.values()) == {Decimal(0)}


def test_sync_usage_command(lake, portal):
    lake.append(sample_records())
    out = StringIO()
    call_command("sync_usage", "--start", "2026-11-01T00:00:00Z", "--end", "2026-11-02", stdout=out)
    assert "hourly rows" in out.getvalue()
    assert SyncRun.objects.get().triggered_by == "command"


def test_sync_task_runs_the_service_eagerly(lake, portal):
    from metering.tasks import sync_usage

    lake.append(sample_records())
    result = sync_usage.apply(kwargs={"start": START.isoformat(), "end": END.isoformat()}).get()
    assert result["outcome"] == "succeeded" and result["rows_written"] > 0


@pytest.fixture
def worker_lake_env(monkeypatch, tmp_path, settings):
    """The worker process reads the lake from the same folder as the test."""
    folder = tmp_path / "worker-lake"
    monkeypatch.setenv("LAKE_WAREHOUSE_DIR", str(folder))
    monkeypatch.setenv("LAKE_BACKEND", "local")
    settings.LAKE_WAREHOUSE_DIR = str(folder)
    settings.LAKE_BACKEND = "local"
    return LocalLake(warehouse=folder, database=settings.LAKE_DATABASE, table=settings.LAKE_TABLE)


@pytest.mark.redis
@pytest.mark.slow
def test_sync_task_in_a_real_worker(worker_lake_env, celery_worker_process):
    from metering.tasks import sync_usage

    import_sample_plans()
    TenantFactory(slug="t-acme")
    TenantFactory(slug="t-globex")
    worker_lake_env.append(sample_records())
    result = sync_usage.apply_async(kwargs={"start": START.isoformat(), "end": END.isoformat()},
                                    queue=celery_worker_process).get(timeout=90)
    assert result["outcome"] == "succeeded"
    calls, _ = expected(sample_records(), "t-acme")
    total = sum(r.value for r in HourlyUsage.objects.filter(tenant__slug="t-acme", metric__code="api_calls"))
    assert total == calls
    # Twice: same rows.
    again = sync_usage.apply_async(kwargs={"start": START.isoformat(), "end": END.isoformat()},
                                   queue=celery_worker_process).get(timeout=90)
    assert again["rows_written"] == result["rows_written"]
    assert json.dumps(result)


def test_a_resync_moves_usage_once_its_user_is_known(lake, portal):
    lake.append(sample_records())
    usage_sync(start=START, end=END)
    assert UnattributedUsage.objects.filter(user_key=OLD_FORMAT_USER).exists()
    before = sum(r.value for r in HourlyUsage.objects.filter(tenant=portal["globex"], metric__code="api_calls"))
    TenantUser.objects.create(tenant=portal["globex"], username=OLD_FORMAT_USER, email="ops@globex.example")
    usage_sync(start=START, end=END)
    assert not UnattributedUsage.objects.filter(user_key=OLD_FORMAT_USER).exists()
    after = sum(r.value for r in HourlyUsage.objects.filter(tenant=portal["globex"], metric__code="api_calls"))
    assert after == before + 1


def test_unattributed_keys_are_kept_verbatim(lake, portal):
    odd = 'evil",\n\tuser\\\\ \'x\' é'
    record = dict(sample_records()[0], request_id="odd-1", user=odd, tenant_id=None)
    lake.append([record])
    usage_sync(start=START, end=END)
    assert UnattributedUsage.objects.filter(user_key=odd, tenant_key="", metric__code="api_calls").get().value == 1
