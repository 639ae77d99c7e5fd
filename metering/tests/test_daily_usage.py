"""The daily rollup: after every sync, re-sync, late record or re-attribution, each day holds its exact figure."""

import importlib
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace

import pytest
from django.apps import apps
from django.db import IntegrityError, connection, transaction

from metering.models import DailyTotal, DailyUsage, HourlyUsage
from metering.services.sync import daily_usage_refresh, usage_sync, utc_days
from metering.tests import test_sync
from metering.tests.test_sync import OLD_FORMAT_USER, sample_records
from tenants.models import Metric, Tenant, TenantUser

lake, portal = test_sync.lake, test_sync.portal  # the sync tests' fixtures: a local lake, tenants and metrics

# The sample's records, spread over four hours on each side of a UTC midnight and the next midnight.
SPREAD = [datetime(2026, 10, 31, 22, tzinfo=UTC), datetime(2026, 10, 31, 23, tzinfo=UTC),
          datetime(2026, 11, 1, 0, tzinfo=UTC), datetime(2026, 11, 1, 13, tzinfo=UTC),
          datetime(2026, 11, 2, 0, tzinfo=UTC)]
START, END = datetime(2026, 10, 31, 20, tzinfo=UTC), datetime(2026, 11, 2, 3, tzinfo=UTC)


def spread_records():
    records = []
    for i, record in enumerate(sample_records()):
        hour = SPREAD[i % len(SPREAD)]
        at = hour + timedelta(minutes=i % 60)
        records.append(dict(record, request_id=f"{record['request_id']}-{i}", request_time=at.strftime(
            "%Y-%m-%dT%H:%M:%SZ")))
    return records


def rollup():
    return {(r.tenant_id, r.metric_id, r.day): (r.value, r.peak) for r in DailyUsage.objects.all()}


def distinct_by_day(lake):
    """Each tenant's distinct values per UTC day of every unique_count metric, from the lake's records
    themselves (attributed by tenant_id, else through the tenant user), in Python."""
    slugs = dict(Tenant.objects.values_list("slug", "pk"))
    users = dict(TenantUser.objects.values_list("username", "tenant_id"))
    seen = defaultdict(set)
    unique = list(Metric.objects.filter(aggregation="unique_count"))
    for record in lake.table().scan().to_arrow().to_pylist():
        tenant = slugs.get(record["tenant_id"]) if record["tenant_id"] else users.get(record["user"])
        for metric in unique:
            assert not metric.filters, "this reference counts unfiltered metrics only"
            if tenant is not None and record[metric.field] is not None:
                seen[(tenant, metric.pk, record["request_time"].date())].add(record[metric.field])
    return {key: len(values) for key, values in seen.items()}


def from_hours(lake=None):
    """What the rollup must hold: a day's sum of hours for count and sum metrics, its largest hour for
    max metrics and, for unique_count metrics, the distinct count of the day's records; with its
    busiest hour as the peak."""
    kinds = dict(Metric.objects.values_list("pk", "aggregation"))
    days = defaultdict(list)
    for row in HourlyUsage.objects.all():
        days[(row.tenant_id, row.metric_id, row.hour.astimezone(UTC).date())].append(row.value)
    distinct = distinct_by_day(lake) if lake is not None else {}
    expected = {}
    for key, values in days.items():
        kind = kinds[key[1]]
        if kind == "unique_count":
            assert lake is not None, "a unique_count day is checked against the lake's records"
            value = Decimal(distinct[key])
        else:
            value = max(values) if kind == "max" else sum(values, Decimal(0))
        expected[key] = (value, max(values))
    return expected


def assert_exact(lake=None):
    expected = from_hours(lake)
    assert expected, "no hourly rows: the test proves nothing"
    assert rollup() == expected
    # And every tenant's day of a count or sum metric added up (the provider dashboard's chart), kept with them.
    sums = defaultdict(Decimal)
    for metric_id, day, value in DailyUsage.objects.filter(metric__aggregation__in=("count", "sum")).values_list(
            "metric_id", "day", "value"):
        sums[(metric_id, day)] += value
    totals = {(metric_id, day): value for metric_id, day, value in DailyTotal.objects.values_list(
        "metric_id", "day", "value")}
    assert sums and totals == dict(sums)


def test_utc_days_cover_the_window_with_whole_days():
    assert utc_days(datetime(2026, 11, 1, 5, tzinfo=UTC), datetime(2026, 11, 1, 6, tzinfo=UTC)) == (
        date(2026, 11, 1), date(2026, 11, 2))
    assert utc_days(datetime(2026, 10, 31, 23, tzinfo=UTC), datetime(2026, 11, 2, tzinfo=UTC)) == (
        date(2026, 10, 31), date(2026, 11, 2))
    # An aware datetime in another zone is read in UTC: 01:00+02:00 is 23:00 the day before.
    plus_two = datetime(2026, 11, 1, 1, tzinfo=UTC).astimezone(
        __import__("zoneinfo").ZoneInfo("Europe/Helsinki"))
    assert utc_days(plus_two, plus_two + timedelta(hours=1))[0] == date(2026, 11, 1)


def test_a_sync_rolls_its_days_up(lake, portal):
    lake.append(spread_records())
    usage_sync(start=START, end=END)
    assert_exact(lake)
    assert {day for _, _, day in rollup()} == {date(2026, 10, 31), date(2026, 11, 1), date(2026, 11, 2)}
    # A metric that does not add up: its day is the distinct count over the day (from the lake),
    # its peak the busiest hour.
    ips = Metric.objects.get(code="active_ips")
    day = DailyUsage.objects.get(tenant=portal["acme"], metric=ips, day=date(2026, 11, 1))
    hours = HourlyUsage.objects.filter(tenant=portal["acme"], metric=ips, hour__date=date(2026, 11, 1))
    assert day.peak == max(h.value for h in hours)
    assert day.value == distinct_by_day(lake)[(portal["acme"].pk, ips.pk, date(2026, 11, 1))]
    assert hours.count() > 1 and day.peak < day.value


def test_a_resync_of_an_overlapping_partial_window_keeps_whole_days(lake, portal):
    lake.append(spread_records())
    usage_sync(start=START, end=END)
    first = rollup()
    usage_sync(start=START, end=END)
    assert rollup() == first
    # Two hours astride midnight: both days are recomputed from all their hours, not only the window's.
    usage_sync(start=datetime(2026, 10, 31, 23, tzinfo=UTC), end=datetime(2026, 11, 1, 1, tzinfo=UTC))
    assert rollup() == first
    usage_sync(start=datetime(2026, 11, 1, 12, 30, tzinfo=UTC), end=END)  # widened to whole hours
    assert rollup() == first
    assert_exact(lake)


def test_late_data_updates_its_day(lake, portal, monkeypatch, settings):
    settings.USAGE_SYNC_LOOKBACK_HOURS = 3
    records = spread_records()
    lake.append(records)
    usage_sync(start=START, end=datetime(2026, 11, 1, 15, tzinfo=UTC))
    calls = Metric.objects.get(code="api_calls")
    before = DailyUsage.objects.get(tenant=portal["acme"], metric=calls, day=date(2026, 11, 1)).value
    # A record of 13:59 arrives after its hour was synced; the next sync's lookback picks it up.
    acme = next(r for r in records if r["tenant_id"] == "t-acme" and r["status"] == 200)
    lake.append([dict(acme, request_id="late-0001", request_time="2026-11-01T13:59:00Z")])
    monkeypatch.setattr("django.utils.timezone.now", lambda: datetime(2026, 11, 1, 15, 10, tzinfo=UTC))
    run = usage_sync()  # from the cursor minus USAGE_SYNC_LOOKBACK_HOURS
    assert run.window_start <= datetime(2026, 11, 1, 13, tzinfo=UTC)
    assert DailyUsage.objects.get(tenant=portal["acme"], metric=calls, day=date(2026, 11, 1)).value == before + 1
    assert_exact(lake)


def test_re_attributed_usage_moves_between_tenants_days(lake, portal):
    lake.append(sample_records())
    usage_sync(start=datetime(2026, 11, 1, tzinfo=UTC), end=datetime(2026, 11, 2, tzinfo=UTC))
    calls = Metric.objects.get(code="api_calls")
    before = DailyUsage.objects.get(tenant=portal["globex"], metric=calls).value
    TenantUser.objects.create(tenant=portal["globex"], username=OLD_FORMAT_USER, email="ops@globex.example")
    usage_sync(start=datetime(2026, 11, 1, tzinfo=UTC), end=datetime(2026, 11, 1, 1, tzinfo=UTC))
    assert DailyUsage.objects.get(tenant=portal["globex"], metric=calls).value == before + 1
    assert_exact(lake)


def test_hours_pruned_by_a_sync_leave_their_day(lake, portal):
    lake.append(spread_records())
    usage_sync(start=START, end=END)
    calls = Metric.objects.get(code="api_calls")
    days_before = set(DailyUsage.objects.filter(metric=calls).values_list("tenant_id", "day"))
    # The metric now counts server errors only: the re-sync prunes the hours (and days) without any.
    Metric.objects.filter(pk=calls.pk).update(filters={"status": ["5xx"]})
    usage_sync(start=START, end=END)
    days_after = set(DailyUsage.objects.filter(metric=calls).values_list("tenant_id", "day"))
    assert days_after < days_before
    assert_exact(lake)


def test_the_migration_fills_the_rollup_of_existing_hours(portal):
    calls = Metric.objects.get(code="api_calls")
    first = datetime(2026, 9, 1, tzinfo=UTC)
    HourlyUsage.objects.bulk_create([
        HourlyUsage(tenant=portal["acme" if h % 3 else "globex"], metric=calls, hour=first + timedelta(hours=h),
                    value=Decimal(h % 7 + 1))
        for h in range(24 * 70)  # more than two of the migration's chunks
    ])
    DailyUsage.objects.all().delete()
    migration = importlib.import_module("metering.migrations.0005_daily_usage")
    migration.fill_daily_usage(apps, SimpleNamespace(connection=connection))
    # And 0020 adds the days up for the dashboard's chart.
    importlib.import_module("metering.migrations.0020_daily_totals").fill(apps, SimpleNamespace(connection=connection))
    assert_exact()
    assert len(rollup()) == 2 * 70


def test_refresh_is_idempotent_and_one_row_per_day(portal):
    calls = Metric.objects.get(code="api_calls")
    hour = datetime(2026, 11, 1, 5, tzinfo=UTC)
    HourlyUsage.objects.create(tenant=portal["acme"], metric=calls, hour=hour, value=Decimal("2.5"))
    daily_usage_refresh(start=hour, end=hour + timedelta(hours=1))
    daily_usage_refresh(start=hour, end=hour + timedelta(hours=1))
    assert rollup() == {(portal["acme"].pk, calls.pk, date(2026, 11, 1)): (Decimal("2.5"), Decimal("2.5"))}
    with pytest.raises(IntegrityError), transaction.atomic():
        DailyUsage.objects.create(tenant=portal["acme"], metric=calls, day=date(2026, 11, 1), value=1, peak=1)


def test_the_admin_lists_the_rollup_read_only(admin_client, portal):
    calls = Metric.objects.get(code="api_calls")
    DailyUsage.objects.create(tenant=portal["acme"], metric=calls, day=date(2026, 11, 1), value=12, peak=5)
    response = admin_client.get("/admin/metering/dailyusage/")
    assert response.status_code == 200 and "t-acme" in response.content.decode()
    assert admin_client.get("/admin/metering/dailyusage/add/").status_code == 403
