"""The reads people meet issue a fixed number of queries whatever the data: the provider's dashboard, the
tenant's dashboard and the usage API, each measured on a small data set, then asserted on one with more
tenants and more months (the queries grow with neither; their cost is in bench/bench_dashboard.py and
bench/bench_api.py at 10,000 tenants and 3 months)."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from metering.lake import get_lake
from metering.models import HourlyUsage
from metering.services.sync import daily_usage_refresh
from metering.tests.api_fixtures import *  # noqa: F403
from metering.tests.api_fixtures import NOV, OCT, add_hourly
from portal.dashboards import sample
from portal.tests.test_tenant_dashboard import acme  # noqa: F401 (fixture)
from tenants.models import Metric
from tenants.tests.factories import TenantFactory, import_sample_plans

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def lake(settings, tmp_path):
    settings.LAKE_BACKEND = "local"
    settings.LAKE_WAREHOUSE_DIR = str(tmp_path / "lake")
    return get_lake()


def counted(call) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = call()
    assert response.status_code == 200, response.content[:500]
    return len(queries)


def grow(*, tenants: int, days: int, prefix: str, plans=None) -> list:
    """More tenants, each with ``days`` days of hourly usage of the three sample metrics up to today."""
    plans = plans or import_sample_plans()
    metrics = sample.sample_metrics()
    made = sample.seed_tenants(count=tenants, plan_versions=[plans["pro"], plans["starter"]],
                               started_at=timezone.now() - timedelta(days=days + 30), prefix=prefix)
    sample.seed_hourly_usage(tenants=made, metrics=metrics, end=timezone.now().date(), days=days, lake=get_lake())
    return made


def test_the_provider_dashboard(client, django_user_model, django_assert_num_queries):
    client.force_login(django_user_model.objects.create_superuser("boss", "boss@example.com", "Corr3ct-Horse-B4ttery!"))
    plans = import_sample_plans()
    grow(tenants=2, days=2, prefix="few", plans=plans)
    sample.seed_pipeline(now=timezone.now(), metric=Metric.objects.get(code="api_calls"))
    cache.clear()  # cold: as right after a sync
    small = counted(lambda: client.get("/admin/dashboard/"))

    grow(tenants=12, days=70, prefix="many", plans=plans)  # 6x the tenants, 35x the days (past the range too)
    cache.clear()
    with django_assert_num_queries(small):
        client.get("/admin/dashboard/")


def test_the_tenant_dashboard(client, acme, django_assert_num_queries):  # noqa: F811
    client.force_login(acme["user"])
    small = counted(lambda: client.get("/tenant/dashboard/"))

    hour = timezone.now().replace(minute=0, second=0, microsecond=0)
    first = hour - timedelta(days=95)  # three months and more of hours before the fixture's one
    HourlyUsage.objects.bulk_create([
        HourlyUsage(tenant=tenant, metric=metric, hour=first + timedelta(hours=h), value=Decimal(h % 50))
        for tenant in (acme["tenant"], acme["other"]) for metric in Metric.objects.all()
        for h in range(95 * 24)], batch_size=5000)
    daily_usage_refresh(start=first, end=hour)
    for i in range(5):
        TenantFactory(slug=f"neighbour-{i}")
    with django_assert_num_queries(small):
        client.get("/tenant/dashboard/")


@pytest.mark.parametrize("granularity", ["hour", "day", "month"])
def test_the_usage_api(world, granularity, django_assert_num_queries):
    query = {"start": OCT.date().isoformat(), "end": NOV.date().isoformat(), "granularity": granularity}
    client = world.client("acme")
    small = counted(lambda: client.get("/api/v1/usage/", query))

    # Two more months for the caller and other tenants: the same question reads no more queries.
    for tenant in [world.tenants["acme"], world.tenants["globex"], *(TenantFactory(slug=f"more-{i}") for i in range(4))]:
        add_hourly(tenant, "api_calls", NOV, 61 * 24, "3")
    with django_assert_num_queries(small):
        client.get("/api/v1/usage/", query)
    # Nor does a range three times as long (hourly buckets: the first page of them).
    longer = {**query, "end": (NOV + timedelta(days=61)).date().isoformat()}
    if granularity != "hour":
        with django_assert_num_queries(small):
            client.get("/api/v1/usage/", longer)
