"""The usage API's hot path reads with raw SQL (tenants.raw) and reads a plain query without its serializer: the
same answers, values and errors as the ORM and the serializer, checked through the endpoint and against the ORM
queries they replace, on SQLite and PostgreSQL."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.db.models import Max, Sum
from django.db.models.functions import TruncDay, TruncHour, TruncMonth
from django.http import QueryDict
from django.test.utils import CaptureQueriesContext

from metering.api import filters
from metering.api.selectors import usage_buckets
from metering.models import DailyUsage, MonthlyUsage, RollupBackfill, SyncCursor
from metering.selectors import backfill_pending, usage_version, usage_version_and_backfill
from metering.selectors.usage import ADDITIVE, bucket_start, hour_bounds
from metering.services.sync import HOUR
from metering.tests.api_fixtures import *  # noqa: F403
from metering.tests.api_fixtures import OCT, add_hourly
from tenants.models import Aggregation, Metric, TenantUser
from tenants.selectors import metrics_by_code, tenant_user_with_login

pytestmark = pytest.mark.django_db


@pytest.fixture
def metrics(world):
    """Every kind of aggregation, with hours across October and November and the rollups of unique_count."""
    peak = Metric.objects.create(code="peak_rps", name="Peak", aggregation="max", field="rps", divisor=Decimal("0.5"))
    ips = Metric.objects.create(code="active_ips", name="IPs", aggregation="unique_count", field="ip")
    acme = world.tenants["acme"]
    add_hourly(acme, "peak_rps", OCT + timedelta(days=3), 24 * 40, "3.25")
    add_hourly(acme, "active_ips", OCT, 24 * 61, "2")
    add_hourly(acme, "data_out_mb", OCT + timedelta(days=35), 30, "0.000001")
    for day in range(61):
        DailyUsage.objects.create(tenant=acme, metric=ips, day=(OCT + timedelta(days=day)).date(), value=9 + day % 4,
                                  peak=2)
    for month in (OCT, datetime(2026, 11, 1, tzinfo=UTC)):
        MonthlyUsage.objects.create(tenant=acme, metric=ips, month=month.date(), value=31)
    return [*Metric.objects.order_by("code")], peak, ips


def orm_usage_buckets(*, tenant, metrics, start, end, granularity):
    """The ORM queries usage_buckets replaced, as they were."""
    trunc = {"hour": TruncHour, "day": TruncDay, "month": TruncMonth}[granularity]
    rows = []
    hourly = __import__("metering.models", fromlist=["HourlyUsage"]).HourlyUsage.objects.filter(
        tenant=tenant, hour__gte=start, hour__lt=end)
    unique = [m for m in metrics if m.aggregation in (Aggregation.UNIQUE_COUNT, Aggregation.LATEST)]
    by_hour = [m for m in metrics if m.aggregation == Aggregation.MAX or (m in unique and granularity == "hour")]
    for chosen, figure in (([m for m in metrics if m.aggregation in ADDITIVE], Sum("value")), (by_hour, Max("value"))):
        if chosen:
            rows.extend(hourly.filter(metric__in=chosen).annotate(bucket=trunc("hour", tzinfo=UTC))
                        .values("metric_id", "bucket").annotate(raw=figure).order_by())
    if unique and granularity != "hour":
        first, last = hour_bounds(start, end)
        if last > first:
            first, last = bucket_start(first, granularity).date(), bucket_start(last - HOUR, granularity).date()
            rollup, field = (DailyUsage, "day") if granularity == "day" else (MonthlyUsage, "month")
            for metric_id, day, value in (rollup.objects.filter(tenant=tenant, metric__in=unique,
                                                                **{f"{field}__gte": first, f"{field}__lte": last})
                                          .order_by().values_list("metric_id", field, "value")):
                rows.append({"metric_id": metric_id, "raw": value,
                             "bucket": datetime(day.year, day.month, day.day, tzinfo=UTC)})
    rows.sort(key=lambda row: (row["bucket"], row["metric_id"]))
    return rows


@pytest.mark.parametrize("granularity", ["hour", "day", "month"])
def test_the_buckets_are_the_orms(world, metrics, granularity):
    every, _, _ = metrics
    start, end = OCT, OCT + timedelta(days=61)
    for chosen in (every, every[:1], [m for m in every if m.code in ("api_calls", "peak_rps")]):
        mine = usage_buckets(tenant=world.tenants["acme"], metrics=chosen, start=start, end=end, granularity=granularity)
        reference = orm_usage_buckets(tenant=world.tenants["acme"], metrics=chosen, start=start, end=end,
                                      granularity=granularity)
        assert mine == reference and mine
        # The same types too (Decimal, aware datetimes in UTC): the values are printed from them.
        assert [(type(r["raw"]), r["bucket"].utcoffset()) for r in mine] == \
            [(type(r["raw"]), r["bucket"].utcoffset()) for r in reference]


def test_the_version_and_the_backfill_are_the_orms(world):
    for start, end in ((OCT, OCT + timedelta(days=31)), (OCT + timedelta(days=40), OCT + timedelta(days=70))):
        assert usage_version_and_backfill(start, end) == (usage_version(), backfill_pending(start, end)) == ("none", False)
    SyncCursor.objects.create(name="local", synced_until=OCT)
    RollupBackfill.objects.create(month=datetime(2026, 11, 1).date())
    for start, end in ((OCT, OCT + timedelta(days=31)), (OCT + timedelta(days=40), OCT + timedelta(days=70))):
        assert usage_version_and_backfill(start, end) == (usage_version(), backfill_pending(start, end))
    assert usage_version_and_backfill(OCT + timedelta(days=40), OCT + timedelta(days=70))[1] is True


def test_the_tenant_user_is_the_orms(world, django_user_model):
    for slug, tenant_user in world.users.items():
        with CaptureQueriesContext(connection) as queries:
            mine = tenant_user_with_login(username=tenant_user.username)
            assert mine.user.tenant_user is mine and mine.tenant.slug == slug  # all loaded: no further query
        assert len(queries) == 1
        reference = TenantUser.objects.select_related("tenant", "user").get(username=tenant_user.username)
        for a, b in ((mine, reference), (mine.tenant, reference.tenant), (mine.user, reference.user)):
            fields = [f.attname for f in type(a)._meta.concrete_fields]
            assert [getattr(a, f) for f in fields] == [getattr(b, f) for f in fields]
            assert not a._state.adding and a._state.db == "default"
    without_login = world.users["acme"]
    TenantUser.objects.filter(pk=without_login.pk).update(user=None)
    assert tenant_user_with_login(username=without_login.username).user is None
    assert tenant_user_with_login(username="nobody") is None
    assert tenant_user_with_login(username=12345) is None  # a claim that is not a string: compared as one


def test_the_metrics_are_the_orms(world, metrics):
    every, _, _ = metrics
    assert list(metrics_by_code().values()) == every
    for codes in (["peak_rps", "api_calls", "peak_rps"], ["nope"], []):
        mine = metrics_by_code(codes=codes)
        assert mine == {m.code: m for m in Metric.objects.order_by("code").filter(code__in=codes)}
    found = metrics_by_code(codes=["peak_rps"])["peak_rps"]
    assert found.divisor == Decimal("0.5") and found.filters == {} and found.created_at.tzinfo is not None


def serializer_params(query: str):
    serializer = filters.UsageQuerySerializer(data=QueryDict(query))
    return serializer.validated_data if serializer.is_valid() else None


PLAIN = [
    "", "granularity=hour", "granularity=month&start=2026-10-01&end=2026-12-01",
    "start=2026-10-01&end=2026-11-01", "start=2026-10-01T00:00:00Z&end=2026-10-03T05:00:00Z&granularity=hour",
    "metric=api_calls&metric=data_out_mb,peak_rps&metric=api_calls", "metric=active_ips&start=2026-10-01&end=2026-10-09",
    "metric=peak_rps&page=2&page_size=5&format=json&tenant=acme",
]


@pytest.mark.parametrize("query", [
    *PLAIN, "end=2026-10-05",
    # Not plain, or refused: the serializer's answer.
    "metric=active_ips&start=2026-10-01T05:00:00Z&end=2026-10-09", "start=2026-02-30", "end=2026-10-01T24:00:00Z",
    "metric=nope", "metric=", "metric=,", "metric=api_calls,%20data_out_mb", "granularity=", "granularity=week",
    "start=2026-10-02&end=2026-10-01", "start=2020-01-01&end=2026-01-01", "start=%D9%A2%D9%A0%D9%A2%D9%A6-10-01",
    "start=2026-10-01T00:00:00%2B02:00", "start=2026-10-01&start=2026-10-02", "metric[0]=api_calls", "other=1",
])
def test_a_plain_query_reads_as_the_serializer_reads_it(world, metrics, query):
    plain = filters._plain_usage_query(QueryDict(query))
    reference = serializer_params(query)
    assert (plain is not None) == (query in PLAIN)
    if plain is None:
        return  # the serializer answers it (usage_query)
    assert reference is not None, f"{query!r} is refused by the serializer"
    assert plain["metric"] == reference["metric"]
    if "end=" in query:
        assert plain == dict(reference)
    else:  # "now": a few microseconds apart
        assert abs(plain["end"] - reference["end"]) < timedelta(seconds=5)
        assert {k: v for k, v in plain.items() if k not in ("start", "end")} == \
            {k: v for k, v in reference.items() if k not in ("start", "end")}


@pytest.mark.parametrize("params", [
    {"start": "2026-10-01", "end": "2026-12-01", "granularity": "day"},
    {"start": "2026-10-01", "end": "2026-12-01", "granularity": "month"},
    {"start": "2026-10-03T00:00:00Z", "end": "2026-10-05T00:00:00Z", "granularity": "hour", "page_size": 100},
    {"metric": "peak_rps,data_out_mb", "start": "2026-10-01", "end": "2026-11-10"},
])
def test_the_endpoint_answers_alike_through_either_reading(world, metrics, params):
    """The same query, plain and (with a parameter the fast reading does not know, which the serializer ignores)
    through the serializer: the same figures, in the same order; the same 400 for a refused one."""
    client = world.client("acme")
    plain = client.get("/api/v1/usage/", params)
    detour = client.get("/api/v1/usage/", {**params, "unread": "1"})
    assert plain.status_code == detour.status_code == 200
    assert plain.json()["results"] == detour.json()["results"] and plain.json()["count"] == detour.json()["count"] > 0
    assert {r["metric"] for r in plain.json()["results"]} <= {"api_calls", "data_out_mb", "peak_rps", "active_ips"}
    refused = {**params, "start": "2026-10-01T05:00:00Z", "metric": "active_ips", "granularity": "day"}
    assert client.get("/api/v1/usage/", refused).json() == client.get("/api/v1/usage/", {**refused, "unread": "1"}).json()
    assert client.get("/api/v1/usage/", refused).status_code == 400


def test_the_figures_of_every_aggregation(world, metrics):
    body = world.client("acme").get("/api/v1/usage/", {"start": "2026-10-04", "end": "2026-10-06"}).json()
    figures = {(r["metric"], r["start"][:10]): r["value"] for r in body["results"]}
    assert figures == {("api_calls", "2026-10-04"): "240", ("api_calls", "2026-10-05"): "240",
                       ("peak_rps", "2026-10-04"): "6.5", ("peak_rps", "2026-10-05"): "6.5",  # 3.25 / 0.5
                       ("active_ips", "2026-10-04"): "12", ("active_ips", "2026-10-05"): "9"}
