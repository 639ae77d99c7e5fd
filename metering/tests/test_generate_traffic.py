"""generate_traffic: demo tenants, deterministic realistic records, and the local lake end to end."""

from datetime import UTC, datetime
from decimal import Decimal
from io import StringIO

import duckdb
import pyarrow.compute as pc
import pytest
from django.core.management import CommandError, call_command

from metering.lake.local import LocalLake
from metering.models import HourlyUsage, UnattributedUsage
from metering.selectors import period_quantities
from metering.services.sync import usage_sync
from metering.services.traffic import TrafficTenant, demo_username, generate_batches
from tenants.models import Subscription, Tenant, TenantUser
from tenants.tests.factories import TenantFactory, import_sample_plans

START, END = datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture
def lake(settings, tmp_path):
    settings.LAKE_BACKEND = "local"
    settings.LAKE_WAREHOUSE_DIR = str(tmp_path / "lake")
    return LocalLake(warehouse=settings.LAKE_WAREHOUSE_DIR, database=settings.LAKE_DATABASE, table=settings.LAKE_TABLE)


def _tenants(n=5):
    return [TrafficTenant(f"t{i}", tuple(demo_username(f"t{i}", k) for k in range(3))) for i in range(n)]


def test_same_seed_same_records_other_seed_other_records():
    a = list(generate_batches(tenants=_tenants(), events=5000, start=START, end=END, seed=3, chunk_rows=2000))
    b = list(generate_batches(tenants=_tenants(), events=5000, start=START, end=END, seed=3, chunk_rows=5000))
    c = list(generate_batches(tenants=_tenants(), events=5000, start=START, end=END, seed=4))
    import pyarrow as pa
    ta, tb, tc = pa.concat_tables(a), pa.concat_tables(b), pa.concat_tables(c)
    assert ta.num_rows == 5000 and ta.equals(tb)
    assert not ta.equals(tc)


def test_records_are_realistic():
    table = next(generate_batches(tenants=_tenants(), events=50_000, start=START, end=END, seed=1))
    rows = table.num_rows
    distinct = pc.count_distinct(table["request_id"]).as_py()
    assert 0.99 * rows < distinct < rows  # some at-least-once duplicates
    assert set(pc.unique(table["http_method"]).to_pylist()) >= {"GET", "POST"}
    statuses = set(pc.unique(table["status"]).to_pylist())
    assert {200, 429, 500} <= statuses
    times = table["request_time"]
    assert pc.min(times).as_py() >= START.replace(tzinfo=None) and pc.max(times).as_py() < END.replace(tzinfo=None)
    users = table["user"].to_pylist()
    assert any(u and u.startswith("unknown-") for u in users)
    no_tenant = pc.sum(pc.is_null(table["tenant_id"])).as_py()
    assert 0 < no_tenant < rows * 0.05
    assert pc.min(table["response_length"]).as_py() >= 0


def test_command_creates_demo_tenants_and_syncs_to_the_lake_totals(db, lake):
    import_sample_plans()
    TenantFactory(slug="existing")
    out = StringIO()
    call_command("generate_traffic", "--tenants", "3", "--events", "20000", "--start", START.isoformat(),
                 "--end", END.isoformat(), "--seed", "11", stdout=out, stderr=StringIO())
    assert "wrote 20000 records" in out.getvalue()
    demo = Tenant.objects.filter(slug__startswith="demo-")
    assert demo.count() == 2
    for tenant in demo:
        assert TenantUser.objects.filter(tenant=tenant).count() == 3
        subscription = Subscription.objects.get(tenant=tenant)
        assert subscription.started_at == START and subscription.trial_ends_at is None
    # Run again: the same tenants are used, no new ones.
    call_command("generate_traffic", "--tenants", "3", "--events", "100", "--start", START.isoformat(),
                 "--end", END.isoformat(), "--seed", "12", stdout=StringIO(), stderr=StringIO())
    assert Tenant.objects.count() == 3

    run = usage_sync(start=START, end=END)
    assert run.outcome == "succeeded"
    files = lake.data_files(start=START, end=END)
    direct_requests = duckdb.sql("SELECT count(DISTINCT request_id) FROM read_parquet($f)",
                                 params={"f": files}).fetchall()[0][0]
    direct_ok = duckdb.sql("SELECT count(DISTINCT request_id) FROM read_parquet($f) WHERE status BETWEEN 200 AND 299",
                           params={"f": files}).fetchall()[0][0]
    direct_bytes = duckdb.sql(
        "SELECT sum(response_length) FROM (SELECT DISTINCT request_id, response_length FROM read_parquet($f))",
        params={"f": files}).fetchall()[0][0]
    synced_ok = sum(r.value for r in HourlyUsage.objects.filter(metric__code="api_calls"))
    orphan_ok = sum(r.value for r in UnattributedUsage.objects.filter(metric__code="api_calls"))
    assert synced_ok + orphan_ok == direct_ok
    synced_bytes = sum(r.value for r in HourlyUsage.objects.filter(metric__code="data_out_mb"))
    orphan_bytes = sum(r.value for r in UnattributedUsage.objects.filter(metric__code="data_out_mb"))
    assert synced_bytes + orphan_bytes == direct_bytes
    assert direct_requests <= 20100
    assert UnattributedUsage.objects.filter(user_key__startswith="unknown-").exists()
    # The selector's per-tenant quantities add up to the attributed total.
    quantities = [period_quantities(subscription_or_tenant=t, metrics=["api_calls"], start=START, end=END)
                  for t in Tenant.objects.all()]
    assert sum(q["api_calls"] for q in quantities) == synced_ok
    assert all(isinstance(q["api_calls"], Decimal) for q in quantities)


def test_command_refuses_bad_arguments(db, lake):
    with pytest.raises(CommandError):
        call_command("generate_traffic", "--start", "2026-11-01", "--end", "2026-10-01", stdout=StringIO())
    with pytest.raises(CommandError):
        call_command("generate_traffic", "--start", "yesterday", stdout=StringIO())


def test_command_imports_the_demo_plans_when_there_are_none(db, lake):
    call_command("generate_traffic", "--tenants", "2", "--events", "500", "--start", START.isoformat(),
                 "--end", END.isoformat(), stdout=StringIO(), stderr=StringIO())
    assert Subscription.objects.count() == 2
    assert {s.plan_version.plan.code for s in Subscription.objects.all()} <= {"starter", "pro", "enterprise"}
