"""Benchmark of the usage sync: generated events in the local lake -> hourly rows in the portal database.

Run as ``python bench/bench_sync.py [--events N] [--tenants N] [--days N] [--naive-events N]``.
It sets up everything in a temporary folder: a fresh local lake, a migrated database (a SQLite file,
or, when DATABASE_URL names PostgreSQL, a throw-away ``test_...`` database beside it), 200 tenants
and the demo plans' three metrics (api_calls: a count of 2xx calls under /random; data_out_mb: a
sum of response_length; active_ips: a unique count of ip). It then times:

- the sync (``usage_sync``: the Iceberg scan plans the files, one DuckDB GROUP BY over them with the
  request_id dedupe, attribution in Python, one bulk upsert), over the whole generated period;
- the beat's common case: a window of the last 3 hours (USAGE_SYNC_LOOKBACK_HOURS) at the period's
  end, ``--repeat`` times, with the share of the lake query that recomputes the distinct counts of
  the day and the month the window touches (a scan of the month so far);
- the naive path on ``--naive-events`` events (default 1,000,000: the naive path over 10M events
  would take minutes and more than 2 GB; 0 skips it): pyiceberg scan to Arrow, Arrow to Python rows,
  dedupe and aggregation in Python dicts, and the ORM's bulk_create with update_conflicts;

and prints events per second for each and their ratio. Generation is timed but not counted.
Issue 4's target: 10M events (200 tenants, 30 days, three metrics) synced in under 20 seconds.

With ``--source events`` the same is done for posted events (issue 15's target: a sync of 10 million
events under 30 s): the events are generated straight into the local Iceberg ``events`` table (90 %
``llm.completion`` with a model and a token count, 10 % ``seats.changed`` gauges; 1 % are redelivered
copies, which must count once), six metrics read them (the large model's tokens: a sum with a
property filter; completions: a count; models used: a unique count; and the demo plans' AI tokens, a
sum, and seats, latest), and the
sync of the whole period is timed, then the sync of the same window again. The naive path and the
common case are access-log only.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--tenants", type=int, default=200)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--naive-events", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5, help="syncs of the common 3-hour window to time")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (lake, database)")
    parser.add_argument("--source", choices=("log", "events"), default="log",
                        help="what to sync: access-log records (default) or posted events")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-sync-"))
    os.environ["PORTAL_VAR_DIR"] = str(tmp)
    os.environ["LAKE_BACKEND"] = "local"
    os.environ["LAKE_WAREHOUSE_DIR"] = str(tmp / "lake")
    os.environ.setdefault("DATABASE_URL", f"sqlite:///{tmp / 'portal.sqlite3'}")
    if os.environ["DATABASE_URL"].startswith("sqlite"):
        os.environ["DATABASE_TEST_NAME"] = str(tmp / "bench.sqlite3")
    else:  # a name of one's own (DATABASE_TEST_NAME) keeps parallel runs apart, as bench_dashboard does
        os.environ.setdefault("DATABASE_TEST_NAME", "test_portal_bench")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.db import connection
    from django.test.utils import setup_databases, teardown_databases

    old_config = setup_databases(verbosity=0, interactive=False)
    try:
        (run_events if args.source == "events" else run)(args, tmp, settings, connection)
    finally:
        teardown_databases(old_config, verbosity=0)
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def run(args, tmp: Path, settings, connection) -> None:
    from metering.lake.local import LocalLake
    from metering.models import HourlyUsage
    from metering.services.sync import usage_sync
    from metering.services.traffic import generate_batches, traffic_tenants_ensure
    from tenants.models import Metric

    start = datetime(2026, 10, 1, tzinfo=UTC)
    end = start + timedelta(days=args.days)
    # The demo plans' three metrics (imported with the demo tenants): a filtered count, a sum and a
    # unique count (whose hourly rows are informative; the period figure comes from the lake).
    tenants = traffic_tenants_ensure(count=args.tenants, start=start)
    metrics = list(Metric.objects.order_by("pk"))
    print("metrics: " + ", ".join(f"{m.code} ({m.aggregation})" for m in metrics))

    def make_lake(folder: str) -> LocalLake:
        return LocalLake(warehouse=tmp / folder, database=settings.LAKE_DATABASE, table=settings.LAKE_TABLE,
                         duckdb_memory_limit=settings.LAKE_DUCKDB_MEMORY_LIMIT)

    lake = make_lake("lake")
    began = time.perf_counter()
    for batch in generate_batches(tenants=tenants, events=args.events, start=start, end=end, seed=args.seed):
        lake.append_arrow(batch)
    generated = time.perf_counter() - began
    files = lake.data_files()
    print(f"database: {connection.vendor}; generated {args.events:,} events for {len(tenants)} tenants over "
          f"{args.days} days in {generated:.1f} s ({len(files)} Parquet files)")

    parquet_bytes(files, args.events)
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    bare = bare_query(lake, files, metrics, start=start, end=end)
    print(f"bare query (plain DuckDB over the same {len(files)} Parquet files: one row per request_id, then "
          f"GROUP BY tenant, hour with the access-log metrics; no Iceberg, no attribution, no writing): {bare:.2f} s")
    began = time.perf_counter()
    sync = usage_sync(start=start, end=end, lake=lake, triggered_by="bench")
    fast = time.perf_counter() - began
    rows = HourlyUsage.objects.count()
    fast_rate = args.events / fast
    print(f"sync (DuckDB over planned files + bulk upsert): {fast:.2f} s for {args.events:,} events, "
          f"{sync.rows_read:,} groups read, {rows:,} hourly rows written -> {fast_rate:,.0f} events/s"
          f"  [{'under' if fast < 20 else 'OVER'} the 20 s target]")
    print("  " + phases(sync, fast))
    print(f"  ratio sync / bare query: {fast / bare:.2f}  [{'within' if fast <= 2.5 * bare else 'OVER'} 2.5x]")
    began = time.perf_counter()
    again_run = usage_sync(start=start, end=end, lake=lake, triggered_by="bench")
    again = time.perf_counter() - began
    print(f"re-sync of the same window (every row upserted, none changed): {again:.2f} s; "
          f"rows still {HourlyUsage.objects.count():,}")
    print("  " + phases(again_run, again))
    print(f"  ratio re-sync / bare query: {again / bare:.2f}")
    peak_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory: {peak_before:,.0f} MB after generation, {peak_after:,.0f} MB after the sync "
          f"(DuckDB memory_limit {settings.LAKE_DUCKDB_MEMORY_LIMIT})")
    common_case(args, lake, start=start, end=end)

    naive_events = min(args.naive_events, args.events)
    if naive_events <= 0:
        return
    naive_lake = make_lake("naive-lake")
    for batch in generate_batches(tenants=tenants, events=naive_events, start=start, end=end, seed=args.seed):
        naive_lake.append_arrow(batch)
    HourlyUsage.objects.all().delete()
    began = time.perf_counter()
    written = naive_sync(naive_lake, start=start, end=end)
    naive = time.perf_counter() - began
    naive_rate = naive_events / naive
    print(f"naive path (pyiceberg -> Arrow -> Python -> ORM bulk_create): {naive:.2f} s for {naive_events:,} events, "
          f"{written:,} hourly rows -> {naive_rate:,.0f} events/s")
    print(f"ratio: the sync is {fast_rate / naive_rate:.1f}x the naive path's events/s")


# Posted events, generated in DuckDB (a hash of the row number gives each value): row i is a copy of row
# i - 1 when i % 100 == 99 (a redelivery), so every field is computed from the source row j.
_EVENTS_SQL = """
WITH rows AS (SELECT i, CASE WHEN i % 100 = 99 THEN i - 1 ELSE i END AS j FROM range($first, $last) r(i)),
src AS (
    SELECT j, t.slug, CASE WHEN hash(j, 1) % 10 = 0 THEN 'seats.changed' ELSE 'llm.completion' END AS code,
           make_timestamp(CAST($start_us + (hash(j, $seed) % $span_us) AS BIGINT)) AS ts
    FROM rows JOIN bench_tenants t ON t.k = j % $tenants
)
SELECT 'tx-' || j AS transaction_id, slug AS tenant_id, code, ts AS "timestamp",
       CASE WHEN code = 'seats.changed' THEN '{"seats":' || (hash(j, 2) % 50) || '}'
            ELSE '{"model":"' || (['small', 'medium', 'large'])[CAST(1 + hash(j, 3) % 3 AS BIGINT)] || '","tokens":'
                 || (hash(j, 4) % 4000) || '}' END AS properties,
       ts AS received_at
FROM src
"""

EVENT_METRICS = [
    {"code": "ev_large_tokens", "name": "Large-model tokens", "event": "llm.completion", "aggregation": "sum",
     "field": "properties.tokens", "filters": {"properties.model": ["large"]}, "divisor": "1000"},
    {"code": "ev_completions", "name": "Completions", "event": "llm.completion", "aggregation": "count"},
    {"code": "ev_models_used", "name": "Models used", "event": "llm.completion", "aggregation": "unique_count",
     "field": "properties.model"},
]  # with the demo plans' two (ai_tokens: a sum of tokens; seats: latest), six metrics over events


def run_events(args, tmp: Path, settings, connection) -> None:
    import duckdb
    import pyarrow as pa

    from metering.lake.events import EVENTS_ARROW_SCHEMA
    from metering.lake.local import LocalLake
    from metering.models import HourlyUsage
    from metering.services.sync import usage_sync
    from metering.services.traffic import traffic_tenants_ensure
    from tenants.models import Metric
    from tenants.services.metrics import metric_create

    start = datetime(2026, 10, 1, tzinfo=UTC)
    end = start + timedelta(days=args.days)
    tenants = traffic_tenants_ensure(count=args.tenants, start=start)
    for doc in EVENT_METRICS:
        metric_create(**{key: Decimal(value) if key == "divisor" else value for key, value in doc.items()})
    events_metrics = Metric.objects.exclude(event="").order_by("code")
    print("metrics over events: " + ", ".join(f"{m.code} ({m.aggregation})" for m in events_metrics)
          + f"; the {Metric.objects.filter(event='').count()} access-log metrics read an empty access-log table")
    lake = LocalLake(warehouse=tmp / "lake", database=settings.LAKE_DATABASE, table=settings.LAKE_TABLE,
                     duckdb_memory_limit=settings.LAKE_DUCKDB_MEMORY_LIMIT, events_table=settings.LAKE_EVENTS_TABLE)
    lake.ensure_table()
    began = time.perf_counter()
    con = duckdb.connect()
    con.register("bench_tenants", pa.table({"k": list(range(len(tenants))), "slug": [t.slug for t in tenants]}))
    start_us = int(start.timestamp() * 1_000_000)
    span_us = int((end - start).total_seconds() * 1_000_000)
    for first in range(0, args.events, 2_000_000):
        last = min(args.events, first + 2_000_000)
        batch = con.sql(_EVENTS_SQL, params={"first": first, "last": last, "tenants": len(tenants), "seed": args.seed,
                                             "start_us": start_us, "span_us": span_us}).to_arrow_table()
        lake.events.append_arrow(batch.cast(EVENTS_ARROW_SCHEMA))
    con.close()
    generated = time.perf_counter() - began
    files = lake.events.data_files()
    print(f"database: {connection.vendor}; generated {args.events:,} events (1 % redelivered copies) for "
          f"{len(tenants)} tenants over {args.days} days in {generated:.1f} s ({len(files)} Parquet files)")
    from metering.services.sync import tenant_usernames

    metrics = list(Metric.objects.order_by("pk"))
    began = time.perf_counter()
    groups = lake.hourly_usage_table(metrics=metrics, start=start, end=end, user_tenants=tenant_usernames())
    print(f"the lake query alone (hourly figures of every metric, DuckDB): {time.perf_counter() - began:.2f} s, "
          f"{groups.num_rows:,} groups")
    timings = []
    for label in ("sync", "re-sync of the same window"):
        began = time.perf_counter()
        run = usage_sync(start=start, end=end, lake=lake, triggered_by="bench")
        elapsed = time.perf_counter() - began
        timings.append(elapsed)
        print(f"{label}: {elapsed:.2f} s for {args.events:,} events, {run.rows_read:,} groups read, "
              f"{HourlyUsage.objects.count():,} hourly rows -> {args.events / elapsed:,.0f} events/s"
              f"  [{'under' if elapsed < 30 else 'OVER'} the 30 s target]")


def bare_query(lake, files: list[str], metrics, *, start: datetime, end: datetime) -> float:
    """Seconds of the textbook query over the same files: dedupe by request_id, group by tenant and hour
    (the metrics' own per-request values, from metering.lake.queries), in DuckDB with the lake's settings.
    The sync's cost beyond it is planning the files, attribution, the day and month distinct counts and
    writing the rows."""
    from sqlglot import exp

    from metering.lake import queries

    specs = [queries.MetricQuery.of(m) for m in metrics if not m.event]  # the access-log metrics
    hour = exp.TimestampTrunc(this=exp.column("request_time"), unit=exp.var("HOUR"))
    deduped, kinds = queries._per_request(specs, exp.table_(queries_view()), queries._window(start, end),
                                          [("tenant_id", exp.column("tenant_id")), ("hour", hour)])
    query = exp.select(exp.column("tenant_id"), exp.column("hour"),
                       *[exp.alias_(queries._outer(kind, exp.column(f"v{i}")), f"m{i}")
                         for i, kind in enumerate(kinds)]).from_(deduped).group_by(*queries._pos(1, 2))
    con = lake.connect(files)
    try:
        began = time.perf_counter()
        con.sql(queries.render(query, "duckdb")).to_arrow_table()
        return time.perf_counter() - began
    finally:
        con.close()


def parquet_bytes(files: list[str], events: int) -> None:
    """Bytes per event of the lake's Parquet files, in all and per column (compressed, from the files'
    metadata): what Athena's price per byte scanned is computed from (docs/scaling.md)."""
    import pyarrow.parquet as pq

    columns: dict[str, int] = {}
    total = 0
    codec = ""
    for path in files:
        metadata = pq.ParquetFile(path).metadata
        total += os.path.getsize(path)
        for group in range(metadata.num_row_groups):
            for index in range(metadata.row_group(group).num_columns):
                column = metadata.row_group(group).column(index)
                columns[column.path_in_schema] = columns.get(column.path_in_schema, 0) + column.total_compressed_size
                codec = column.compression
    print(f"Parquet ({codec}): {total / events:.1f} bytes per event in all; per column: "
          + ", ".join(f"{name} {size / events:.2f}" for name, size in columns.items()))


def queries_view() -> str:
    from metering.lake.local import VIEW

    return VIEW


def phases(run, total: float) -> str:
    timings = getattr(run, "timings", {})
    named = ", ".join(f"{phase} {seconds:.2f} s" for phase, seconds in timings.items())
    rest = total - sum(timings.values())
    return f"of which {named}, the rest (planning, rollup backfill, alerts) {rest:.2f} s"


def common_case(args, lake, *, start: datetime, end: datetime) -> None:
    """The beat's sync every 5 minutes: the last 3 hours, here those of the period's last day."""
    import statistics

    from metering.services.sync import usage_sync
    from tenants.models import Metric

    window = (end - timedelta(hours=3), end)
    times = []
    for _ in range(args.repeat):
        began = time.perf_counter()
        usage_sync(start=window[0], end=window[1], lake=lake, triggered_by="bench")
        times.append(time.perf_counter() - began)
    print(f"common case, a 3-hour window at the end of {(end - start).days} days: median "
          f"{statistics.median(times):.2f} s, min {min(times):.2f} s over {len(times)} syncs")
    try:
        from metering.services.sync import exact_figures, month_of, next_month, tenant_usernames
    except ImportError:  # a version without exact distinct counts
        return
    metrics, users = list(Metric.objects.order_by("pk")), tenant_usernames()
    unique = [m for m in metrics if m.aggregation == "unique_count"]

    def median_of(call) -> float:
        times = []
        for _ in range(args.repeat):
            began = time.perf_counter()
            call()
            times.append(time.perf_counter() - began)
        return statistics.median(times)

    days = median_of(lambda: exact_figures(lake, metrics=metrics, start=window[0], end=window[1], user_tenants=users))
    month = month_of((window[1] - timedelta(hours=1)).date())
    bounds = [datetime.combine(m, datetime.min.time(), tzinfo=UTC) for m in (month, next_month(month))]
    scan = median_of(lambda: lake.whole_period(metrics=unique, parts=[("month", *bounds)], user_tenants=users))
    print(f"  of which the distinct counts of the window's day (one lake query, the month kept: no day gained "
          f"a value): median {days:.2f} s")
    print(f"  when a day gains a value, its month so far is asked of the lake too: median {scan:.2f} s more")


def naive_sync(lake, *, start: datetime, end: datetime) -> int:
    """The straightforward path: the whole window through Python objects."""
    from decimal import Decimal

    from pyiceberg.expressions import And, GreaterThanOrEqual, LessThan

    from metering.models import HourlyUsage
    from metering.services.sync import attribution_maps
    from tenants.models import Metric

    by_slug, by_username = attribution_maps()
    metrics = list(Metric.objects.order_by("pk"))
    table = lake.table().scan(row_filter=And(
        GreaterThanOrEqual("request_time", start.replace(tzinfo=None).isoformat()),
        LessThan("request_time", end.replace(tzinfo=None).isoformat()))).to_arrow()
    seen = set()
    totals: dict[tuple, Decimal] = {}
    distinct: dict[tuple, set] = {}
    for record in table.to_pylist():
        if record["request_id"] in seen:
            continue
        seen.add(record["request_id"])
        tenant = by_slug.get(record["tenant_id"]) if record["tenant_id"] else by_username.get(record["user"])
        if tenant is None:
            continue
        hour = record["request_time"].replace(minute=0, second=0, microsecond=0, tzinfo=UTC)
        for metric in metrics:
            key = (tenant, metric.pk, hour)
            if metric.aggregation == "unique_count":
                distinct.setdefault(key, set()).add(record[metric.field])
                continue
            if metric.aggregation == "sum":
                value = record[metric.field]
            else:
                value = 1 if 200 <= record["status"] < 300 and record["resource_path"].startswith("/random") else 0
            if value:
                totals[key] = totals.get(key, Decimal(0)) + value
    for key, values in distinct.items():
        totals[key] = Decimal(len(values))
    HourlyUsage.objects.bulk_create(
        [HourlyUsage(tenant_id=t, metric_id=m, hour=h, value=v) for (t, m, h), v in totals.items()],
        batch_size=2000, update_conflicts=True, unique_fields=["tenant", "metric", "hour"],
        update_fields=["value", "updated_at"])
    return len(totals)


if __name__ == "__main__":
    main()
