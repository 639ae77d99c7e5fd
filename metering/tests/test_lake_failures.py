"""A lake that is missing, damaged or failing never reads as "no usage": the read is a LakeError, the sync
fails its run (error stored, cursor kept, retried with backoff), no usage row changes, the command exits
non-zero with one line; reading the local lake writes nothing; only writers create the lake."""

import re
from datetime import UTC, datetime, timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db.models import Sum

from metering.lake import LakeError, get_lake
from metering.lake.local import LocalLake
from metering.models import (
    DailyUsage,
    HourlyUsage,
    Invoice,
    SyncCursor,
    SyncOutcome,
    SyncRun,
    UnattributedUsage,
)
from metering.services.sync import usage_sync
from metering.tests import test_athena
from metering.tests.api_fixtures import api_identity_dir, local_identity  # noqa: F401 (fixtures)
from metering.tests.processes import manage, portal_env
from metering.transform import transform_record
from tenants.tests.factories import TenantFactory, import_sample_plans

SAMPLE = Path(__file__).parent / "data" / "apigw_access_log_sample.jsonl"
START, END = datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 2, tzinfo=UTC)
WINDOW = ("--start", "2026-11-01T00:00:00Z", "--end", "2026-11-02T00:00:00Z")


def sample_records():
    return [row for ok, row, _ in (transform_record(line) for line in SAMPLE.read_text().splitlines()) if ok]


def metric(code, aggregation, field=None):
    from metering.lake import queries

    return queries.MetricQuery.of(type("M", (), {"code": code, "aggregation": aggregation, "field": field,
                                                 "filters": {}})())


def usage_rows():
    """Every usage row the portal holds, as values: what a failed sync must leave exactly as it was."""
    return (
        sorted(HourlyUsage.objects.values_list("tenant_id", "metric_id", "hour", "value", "updated_at")),
        sorted(DailyUsage.objects.values_list("tenant_id", "metric_id", "day", "value", "peak")),
        sorted(UnattributedUsage.objects.values_list("tenant_key", "user_key", "metric_id", "hour", "value")),
    )


def files_of(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folder`` with its size and modification time."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def lake(settings, tmp_path):
    settings.LAKE_BACKEND = "local"
    settings.LAKE_WAREHOUSE_DIR = str(tmp_path / "lake")
    settings.USAGE_SYNC_RETRY_DELAY = 0
    return LocalLake(warehouse=settings.LAKE_WAREHOUSE_DIR, database=settings.LAKE_DATABASE, table=settings.LAKE_TABLE)


@pytest.fixture
def synced(lake, db):
    """A lake with the sample's records, synced: the portal holds usage for the window."""
    import_sample_plans()
    TenantFactory(slug="t-acme")
    TenantFactory(slug="t-globex")
    lake.append(sample_records())
    usage_sync(start=START, end=END)
    assert HourlyUsage.objects.exists() and DailyUsage.objects.exists() and UnattributedUsage.objects.exists()
    return lake


def assert_failed_sync_changed_nothing(before, cursor, *, error: str, attempts: int = 3):
    run = SyncRun.objects.order_by("-pk").first()
    assert run.outcome == SyncOutcome.FAILED and run.attempts == attempts and run.finished_at is not None
    assert error in run.error and "\n" not in run.error
    assert usage_rows() == before
    assert SyncCursor.objects.get().synced_until == cursor
    return run


# --- a missing lake ------------------------------------------------------------------------------------


def test_reading_a_missing_lake_is_an_error_and_creates_nothing(tmp_path):
    folder = tmp_path / "unmounted"
    lake = LocalLake(warehouse=folder, database="restapi_access_log_iceberg_db", table="restapi_access_log_iceberg")
    reads = [
        lambda: lake.hourly_usage(metrics=[metric("calls", "count")], start=START, end=END),
        lambda: lake.hourly_usage_table(metrics=[metric("calls", "count")], start=START, end=END),
        lambda: lake.period_usage(metrics=[metric("ips", "unique_count", "ip")], start=START, end=END,
                                  tenant_id="t-acme"),
        lambda: lake.count_requests(start=START, end=END),
        lambda: lake.data_files(),
        lambda: lake.table(),
    ]
    for read in reads:
        with pytest.raises(LakeError, match=re.escape(f"the local lake is missing: no warehouse folder at {folder}")):
            read()
    assert lake.exists() is False
    assert not folder.exists()
    # A folder without a catalog (a mount point of an empty volume) is no lake either.
    folder.mkdir()
    with pytest.raises(LakeError, match="no Iceberg catalog catalog.sqlite3"):
        lake.count_requests(start=START, end=END)
    assert list(folder.iterdir()) == []


def test_a_catalog_without_the_table_is_an_error(tmp_path):
    other = LocalLake(warehouse=tmp_path / "lake", database="restapi_access_log_iceberg_db", table="another_table")
    other.append(sample_records())
    before = files_of(tmp_path / "lake")
    lake = LocalLake(warehouse=tmp_path / "lake", database="restapi_access_log_iceberg_db",
                     table="restapi_access_log_iceberg")
    with pytest.raises(LakeError, match="the local lake has no table restapi_access_log_iceberg_db.restapi_access_log"):
        lake.count_requests(start=START, end=END)
    wrong_database = LocalLake(warehouse=tmp_path / "lake", database="nope", table="another_table")
    with pytest.raises(LakeError, match="has no table nope.another_table"):
        wrong_database.data_files()
    assert files_of(tmp_path / "lake") == before


def test_only_writers_create_the_lake(tmp_path, db, settings):
    settings.LAKE_BACKEND = "local"
    settings.LAKE_WAREHOUSE_DIR = str(tmp_path / "new")
    lake = get_lake()
    assert not lake.exists()
    # generate_traffic is a writer: it creates the lake, even with no event to write.
    call_command("generate_traffic", "--tenants", "1", "--events", "0", stdout=StringIO(), stderr=StringIO())
    assert lake.exists() and lake.count_requests(start=START, end=END) == 0
    # And the sink, by its first append.
    settings.LAKE_WAREHOUSE_DIR = str(tmp_path / "sink")
    from metering.sink import BufferedSink

    sink = BufferedSink(lake=get_lake(), max_records=1, max_seconds=0)
    assert sink.put(SAMPLE.read_text().splitlines()[0])
    assert get_lake().count_requests(start=START, end=END) == 1


@pytest.mark.slow
def test_sync_usage_with_the_lake_missing_fails_and_deletes_nothing(transactional_db, lake, tmp_path):
    """The fault as an operator met it: an unmounted volume, `manage.py sync_usage --start --end`, exit 0
    and every row of the window deleted. Now: exit 1, one line, every row kept, the run failed."""
    import_sample_plans()
    TenantFactory(slug="t-acme")
    TenantFactory(slug="t-globex")
    lake.append(sample_records())
    usage_sync(start=START, end=END)
    before, cursor = usage_rows(), SyncCursor.objects.get().synced_until
    assert before[0] and before[1] and before[2]
    missing = tmp_path / "unmounted" / "lake"

    result = manage("sync_usage", *WINDOW, env=portal_env(
        LAKE_BACKEND="local", LAKE_WAREHOUSE_DIR=str(missing), USAGE_SYNC_ATTEMPTS="3", USAGE_SYNC_RETRY_DELAY="0.2"))

    assert result.returncode == 1, result
    run = SyncRun.objects.order_by("-pk").first()
    assert result.stderr.splitlines() == [
        f"CommandError: usage sync failed (sync run {run.pk}): the local lake is missing: no warehouse folder at "
        f"{missing} (LAKE_WAREHOUSE_DIR); is the volume mounted? (a new lake is created by its first write)"]
    assert result.stdout == ""
    assert_failed_sync_changed_nothing(before, cursor, error="LakeError: the local lake is missing")
    assert run.duration_seconds >= 0.6, "retried with backoff: 0.2 s, then 0.4 s"
    assert not missing.exists() and not missing.parent.exists()
    # The same sync with the lake back: succeeds, same rows.
    usage_sync(start=START, end=END)
    assert usage_rows()[0][0][:4] == before[0][0][:4] and len(usage_rows()[0]) == len(before[0])


def test_the_sync_of_a_missing_table_fails_whatever_triggers_it(synced, settings, tmp_path):
    from metering.tasks import sync_usage

    before, cursor = usage_rows(), SyncCursor.objects.get().synced_until
    settings.LAKE_TABLE = "renamed"
    with pytest.raises(CommandError, match=r"^usage sync failed \(sync run \d+\): the local lake has no table "):
        call_command("sync_usage", *WINDOW, stdout=StringIO())
    assert_failed_sync_changed_nothing(before, cursor, error="the local lake has no table")
    result = sync_usage.apply(kwargs={"start": START.isoformat(), "end": END.isoformat()})
    assert result.failed() and isinstance(result.result, LakeError)
    assert_failed_sync_changed_nothing(before, cursor, error="the local lake has no table")
    # The scheduled sync (no window: from the cursor) neither.
    with pytest.raises(LakeError):
        usage_sync()
    assert_failed_sync_changed_nothing(before, cursor, error="the local lake has no table")


def test_an_empty_lake_is_a_legitimate_read(synced, settings, tmp_path):
    """A lake that exists with no record in the window says there was no usage: the window is emptied."""
    settings.LAKE_WAREHOUSE_DIR = str(tmp_path / "empty")
    get_lake().ensure_table()
    run = usage_sync(start=START, end=END)
    assert run.outcome == SyncOutcome.SUCCEEDED and run.rows_read == 0
    assert not HourlyUsage.objects.exists() and not UnattributedUsage.objects.exists()
    assert not DailyUsage.objects.exclude(value=0).exists()


# --- a damaged lake ------------------------------------------------------------------------------------


def _data_files(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.parquet"))


def _damage(kind: str, folder: Path) -> str:
    """Damage the lake in one way; returns what the error must say."""
    if kind == "missing data file":
        victim = _data_files(folder)[0]
        victim.unlink()
        return f"the local lake is damaged: data file {victim} (listed by the table's Iceberg metadata) is missing"
    if kind == "unreadable data file":
        _data_files(folder)[0].write_bytes(b"not a parquet file, whatever the metadata says")
        return "local lake query failed: "
    if kind == "missing manifest list":
        next(folder.rglob("snap-*.avro")).unlink()
        return "the local lake could not be read: "
    if kind == "corrupt table metadata":
        for metadata in folder.rglob("*.metadata.json"):
            metadata.write_text("{ not json")
        return "the local lake could not be read: "
    if kind == "corrupt catalog":
        (folder / "catalog.sqlite3").write_bytes(b"this is not an SQLite database" * 100)
        return "the local lake could not be read: "
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["missing data file", "unreadable data file", "missing manifest list",
                                  "corrupt table metadata", "corrupt catalog"])
def test_a_damaged_lake_fails_the_sync_in_one_line_and_changes_no_row(synced, kind):
    before, cursor = usage_rows(), SyncCursor.objects.get().synced_until
    message = _damage(kind, synced.warehouse)
    err = StringIO()
    with pytest.raises(CommandError) as failure:
        call_command("sync_usage", *WINDOW, stdout=StringIO(), stderr=err)
    text = str(failure.value)
    assert "\n" not in text and message in text, text
    assert_failed_sync_changed_nothing(before, cursor, error=message)
    assert err.getvalue() == ""


# --- reading writes nothing ----------------------------------------------------------------------------


def test_reading_the_local_lake_writes_nothing(synced, settings):
    before = files_of(synced.warehouse)
    lake = get_lake()
    lake.table()
    lake.data_files(start=START, end=END)
    assert lake.exists()
    assert lake.count_requests(start=START, end=END) == 42
    lake.hourly_usage(metrics=[metric("calls", "count")], start=START, end=END)
    lake.period_usage(metrics=[metric("ips", "unique_count", "ip")], start=START, end=END, tenant_id="t-acme")
    usage_sync(start=START, end=END)
    call_command("sync_usage", *WINDOW, stdout=StringIO())
    assert files_of(synced.warehouse) == before


# --- the Athena lake -----------------------------------------------------------------------------------

athena = test_athena.athena  # the fixture: moto's Athena with the workgroup and the Glue table deployed


@pytest.fixture
def athena_lake(athena, db):
    import_sample_plans()
    TenantFactory(slug="t-acme")
    test_athena.queue_rows(athena, [("t-acme", None, "2026-11-01 00:00:00.000", 7, 7000)], test_athena.HOURLY_COLUMNS)
    usage_sync(start=START, end=END, lake=test_athena.fast_lake())
    assert HourlyUsage.objects.exists()
    return athena


def test_a_missing_glue_table_fails_the_sync(athena_lake, settings):
    before, cursor = usage_rows(), SyncCursor.objects.get().synced_until
    settings.LAKE_TABLE = "not_deployed"
    with pytest.raises(CommandError) as failure:
        call_command("sync_usage", *WINDOW, stdout=StringIO())
    assert str(failure.value).startswith("usage sync failed (sync run ")
    assert ("the Glue table restapi_access_log_iceberg_db.not_deployed does not exist in us-east-1 "
            "(LAKE_DATABASE, LAKE_TABLE): is the pipeline deployed there?") in str(failure.value)
    assert_failed_sync_changed_nothing(before, cursor, error="does not exist in us-east-1")
    assert len(athena_lake.executions) == 1, "no query ran against the missing table (the one is the first sync)"


def test_a_missing_workgroup_fails_the_sync(athena_lake, settings):
    before, cursor = usage_rows(), SyncCursor.objects.get().synced_until
    settings.ATHENA_WORKGROUP = "deleted"
    with pytest.raises(CommandError, match="WorkGroup does not exist") as failure:
        call_command("sync_usage", *WINDOW, stdout=StringIO())
    assert "\n" not in str(failure.value) and "Athena query failed" in str(failure.value)
    assert_failed_sync_changed_nothing(before, cursor, error="WorkGroup does not exist")


def test_athena_without_a_table_is_no_lake(athena, settings):
    from metering.lake.athena import AthenaLake

    assert AthenaLake.from_settings().exists()
    settings.LAKE_DATABASE = "elsewhere"
    lake = AthenaLake.from_settings()
    assert not lake.exists()
    with pytest.raises(LakeError, match="the Glue table elsewhere.restapi_access_log_iceberg does not exist"):
        lake.count_requests(start=START, end=END)


# --- other readers -------------------------------------------------------------------------------------


def test_billing_with_the_lake_missing_fails_and_bills_nothing(synced, settings, tmp_path):
    from metering.models import BillingRun, BillingRunStatus
    from tenants.models import Tenant
    from tenants.services.subscriptions import subscription_create

    versions = import_sample_plans()
    subscription_create(tenant=Tenant.objects.get(slug="t-acme"), plan_version=versions["pro"],
                        started_at=datetime(2026, 10, 1, tzinfo=UTC), with_trial=False)
    before = usage_rows()
    settings.LAKE_WAREHOUSE_DIR = str(tmp_path / "unmounted")
    with pytest.raises(CommandError, match=r"^the local lake is missing: no warehouse folder at ") as failure:
        call_command("run_billing", "--as-of", "2026-11-01T02:00:00Z", stdout=StringIO())
    assert "\n" not in str(failure.value)
    run = BillingRun.objects.get()
    assert run.status == BillingRunStatus.FAILED and run.errors.startswith("LakeError: the local lake is missing")
    assert not Invoice.objects.exists()
    assert usage_rows() == before


UNIQUE_PLAN = {
    "metrics": [{"code": "active_ips", "name": "Active IPs", "aggregation": "unique_count", "field": "ip"}],
    "plans": [{"code": "ips", "name": "Per IP", "currency": "USD", "interval": "month",
               "charges": [{"metric": "active_ips", "model": "per_unit", "unit_amount": "0.10"}]}],
}


@pytest.fixture
def ip_tenant(db, settings, tmp_path):
    """A tenant billed per distinct IP on an anniversary cycle (its period is no calendar month, so its
    distinct count is asked of the lake over the whole period), with the lake missing."""
    from django.utils import timezone

    from tenants.models import BillingCycle, Plan
    from tenants.services.plans import plans_import
    from tenants.services.subscriptions import subscription_create

    settings.LAKE_BACKEND = "local"
    settings.LAKE_WAREHOUSE_DIR = str(tmp_path / "unmounted")
    plans_import(document=UNIQUE_PLAN)
    tenant = TenantFactory(slug="t-ips")
    subscription_create(tenant=tenant, plan_version=Plan.objects.get(code="ips").current_version,
                        started_at=timezone.now() - timedelta(days=40, hours=5), with_trial=False,
                        billing_cycle=BillingCycle.ANNIVERSARY)
    return tenant


def test_the_tenant_dashboard_says_so_when_the_lake_is_missing(client, ip_tenant):
    from django.contrib.auth import get_user_model

    from tenants.models import TenantRole, TenantUser

    user = get_user_model().objects.create_user("ips-owner", "owner@ips.example", "Corr3ct-Horse-Battery!")
    TenantUser.objects.create(tenant=ip_tenant, username="ips-sub", email="owner@ips.example", role=TenantRole.OWNER,
                              user=user)
    client.force_login(user)
    response = client.get("/tenant/dashboard/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "Some figures are unavailable right now" in html
    assert "The projected bill is unavailable right now" in html


def test_the_api_answers_503_when_the_lake_is_missing(client, ip_tenant, local_identity):  # noqa: F811
    from tenants.models import TenantRole
    from tenants.services import identity as identity_services

    tenant_user, _ = identity_services.tenant_user_create(tenant=ip_tenant, email="ann@ips.example",
                                                          role=TenantRole.OWNER, password="Correct-Horse-9-Battery")
    token = identity_services.tenant_user_issue_token(tenant_user=tenant_user)
    response = client.get("/api/v1/usage/current/", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 503
    assert response.json() == {"detail": "The usage figures are unavailable right now; try again in a few minutes."}
    assert "unmounted" not in response.content.decode(), "no server path reaches the client"


def test_the_unique_count_bill_is_not_made_without_the_lake(ip_tenant):
    from metering.models import BillingRun, BillingRunStatus

    with pytest.raises(CommandError, match="the local lake is missing"):
        call_command("run_billing", "--no-sync", stdout=StringIO())
    assert not Invoice.objects.exists()
    assert BillingRun.objects.get().status == BillingRunStatus.FAILED
    assert HourlyUsage.objects.aggregate(total=Sum("value"))["total"] is None


@pytest.fixture
def worker_without_lake(monkeypatch, tmp_path):
    """The worker process (started after this fixture) is configured with a lake folder that is not there."""
    monkeypatch.setenv("LAKE_BACKEND", "local")
    monkeypatch.setenv("LAKE_WAREHOUSE_DIR", str(tmp_path / "unmounted"))
    monkeypatch.setenv("USAGE_SYNC_ATTEMPTS", "3")
    monkeypatch.setenv("USAGE_SYNC_RETRY_DELAY", "0.1")


@pytest.mark.redis
@pytest.mark.slow
def test_the_celery_task_on_a_real_worker_fails_the_sync_and_keeps_the_rows(worker_without_lake, settings, tmp_path,
                                                                             celery_worker_process):
    from metering.tasks import sync_usage

    warehouse = tmp_path / "worker-lake"
    settings.LAKE_BACKEND, settings.LAKE_WAREHOUSE_DIR = "local", str(warehouse)
    import_sample_plans()
    TenantFactory(slug="t-acme")
    TenantFactory(slug="t-globex")
    LocalLake(warehouse=warehouse, database=settings.LAKE_DATABASE, table=settings.LAKE_TABLE).append(sample_records())
    usage_sync(start=START, end=END, retry_delay=0)
    before, cursor = usage_rows(), SyncCursor.objects.get().synced_until
    with pytest.raises(LakeError, match="the local lake is missing"):
        sync_usage.apply_async(kwargs={"start": START.isoformat(), "end": END.isoformat()},
                               queue=celery_worker_process).get(timeout=120)
    assert_failed_sync_changed_nothing(before, cursor, error="the local lake is missing")
    log = (tmp_path / "worker.log").read_text()
    assert "Traceback" not in log, log
