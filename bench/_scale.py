"""The large data set the read benches share (``--tenants 10000 --months 3``): PostgreSQL only, seeded in SQL.

Hourly usage of ``tenants`` × 3 metrics for every hour of the ``months`` calendar months before this one and this one up to today (10,000
tenants: 21.6 million rows a month), written by INSERT ... SELECT over generate_series in one statement per
day (as the sync writes them, hour after hour), then the daily and monthly rollups by the sync's own
daily_usage_refresh, month by month, four months of invoices and a successful sync run. The database
(``bench_scale_<tenants>x<months>`` on DATABASE_URL's server) is kept and reused by the next run of either
bench: seeding 10,000 tenants × 3 months takes many minutes.
"""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta

from _load import bench_database_url, ensure_database, setup_django


def scale_database(base_url: str, tenants: int, months: int) -> str:
    """The URL of the kept database of this size, created when missing."""
    name = f"bench_scale_{tenants}x{months}"
    ensure_database(base_url, name)
    return bench_database_url(base_url, name)


def first_month(today: date, months: int) -> date:
    first = today.replace(day=1)
    for _ in range(months - 1):
        first = (first - timedelta(days=1)).replace(day=1)
    return first


# One day of hourly rows for every tenant (of the prefix) and metric: values from the row's numbers, so a
# reseed gives the same rows. The unique_count metric (active_ips) stays small, as the hourly distinct
# IPs of a client base do; count and sum vary by tenant (1 to 17 times busier) and hour.
_DAY_SQL = """
INSERT INTO metering_hourlyusage (tenant_id, metric_id, hour, value, updated_at)
SELECT t.id, m.id, h.hour,
       CASE m.code WHEN 'active_ips' THEN (t.id + extract(hour FROM h.hour)::int) %% (6 + t.id %% 17)
                   WHEN 'data_out_mb' THEN ((t.id * 13 + extract(epoch FROM h.hour)::bigint / 3600 * 7) %% 50000)
                                           * (1 + t.id %% 17)
                   ELSE ((t.id * 7 + extract(epoch FROM h.hour)::bigint / 3600 * 31) %% 40) * (1 + t.id %% 17) END,
       now()
FROM generate_series(%(day)s::timestamptz, %(day)s::timestamptz + interval '23 hours', interval '1 hour') AS h(hour)
CROSS JOIN (SELECT id, code FROM metering_metric WHERE code IN ('api_calls', 'data_out_mb', 'active_ips')) AS m
CROSS JOIN (SELECT id FROM tenants_tenant WHERE slug LIKE 'tenant-%%') AS t
"""


def seed_scale(*, tenants: int, months: int, today: date) -> dict:
    """Seed (once) and describe the data set: {'hourly': rows, 'daily': rows, 'start': first day, ...}."""
    from django.db import connection, transaction
    from django.utils import timezone

    from metering.models import DailyUsage, HourlyUsage, MonthlyUsage
    from metering.services.sync import daily_usage_refresh
    from portal.dashboards import sample
    from tenants.models import Tenant
    from tenants.tests.factories import import_sample_plans

    start_day = first_month(today, months + 1)  # the months before this one, whole, and this one so far
    end_day = today + timedelta(days=1)
    days = (end_day - start_day).days
    expected = tenants * 3 * 24 * days
    if Tenant.objects.filter(slug__startswith="tenant-").count() == tenants and \
            HourlyUsage.objects.filter(hour__gte=_midnight(start_day), hour__lt=_midnight(end_day)).count() == expected:
        return describe(start_day, end_day, reused=True)
    began = time.perf_counter()
    from django.core.management import call_command

    call_command("flush", verbosity=0, interactive=False)
    plans = import_sample_plans()
    sample.sample_metrics()
    seeded = sample.seed_tenants(count=tenants, plan_versions=[plans["pro"], plans["starter"]],
                                 started_at=timezone.now() - timedelta(days=31 * (months + 1)))
    with connection.cursor() as cursor:
        # A bulk load: the table's two indexes are built once at the end (much faster than row by row),
        # under the same names, so the table is then as the migrations make it.
        cursor.execute("SET maintenance_work_mem = '1GB'")
        cursor.execute("SET synchronous_commit = off")
        cursor.execute("ALTER TABLE metering_hourlyusage DROP CONSTRAINT hourly_usage_one_per_hour")
        cursor.execute("DROP INDEX hourly_usage_hour")
        for i in range(0, days, 5):
            day = start_day + timedelta(days=i)
            with transaction.atomic():
                for k in range(i, min(days, i + 5)):
                    cursor.execute(_DAY_SQL, {"day": _midnight(start_day + timedelta(days=k))})
            print(f"  seeding: {day} ({time.perf_counter() - began:.0f} s)", flush=True)
        cursor.execute("ALTER TABLE metering_hourlyusage ADD CONSTRAINT hourly_usage_one_per_hour "
                       "UNIQUE (tenant_id, metric_id, hour) INCLUDE (value)")  # as migration 0019 makes it
        cursor.execute("CREATE INDEX hourly_usage_hour ON metering_hourlyusage (hour)")
        print(f"  indexes built ({time.perf_counter() - began:.0f} s)", flush=True)
    month = start_day
    while month < end_day:
        following = (month.replace(day=28) + timedelta(days=4)).replace(day=1)
        with transaction.atomic():
            daily_usage_refresh(start=_midnight(month), end=_midnight(min(following, end_day)))
        month = following
    invoice_months = [first_month(today, k) for k in (4, 3, 2, 1)]
    sample.seed_invoices(tenants=seeded, months=invoice_months)
    sample.seed_pipeline(now=timezone.now(), metric=sample.sample_metrics()[0])
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    print(f"  seeded {HourlyUsage.objects.count():,} hourly, {DailyUsage.objects.count():,} daily, "
          f"{MonthlyUsage.objects.count():,} monthly rows in {time.perf_counter() - began:.0f} s", flush=True)
    return describe(start_day, end_day, reused=False)


def describe(start_day: date, end_day: date, *, reused: bool) -> dict:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_total_relation_size('metering_hourlyusage'), pg_relation_size('metering_hourlyusage'), "
                       "(SELECT reltuples::bigint FROM pg_class WHERE relname = 'metering_hourlyusage')")
        total, heap, rows = cursor.fetchone()
    return {"start": start_day, "end": end_day, "reused": reused, "hourly_rows": rows, "hourly_bytes": total,
            "hourly_heap_bytes": heap}


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def setup_scale(base_url: str, var_dir, *, tenants: int, months: int) -> str:
    db_url = scale_database(base_url, tenants, months)
    setup_django(db_url, var_dir)
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    return db_url
