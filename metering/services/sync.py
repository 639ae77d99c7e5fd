"""The usage sync: hourly aggregates per tenant and metric, pulled from the lake into the portal database.

Each run covers whole hours, from the cursor minus a lookback window (so late records count) to
the end of the current hour. For those hours the lake's answer replaces what the database had, in
one transaction written only after the query succeeded: running it twice, or over overlapping
windows, gives the same rows, and a failed query leaves the previous rows intact. A lake that is
not there (a missing warehouse, catalog or table) is a failed query too, never an empty answer, so
an unmounted volume or a wrong setting cannot wipe a window's usage. Records whose
tenant cannot be attributed are written as UnattributedUsage, never dropped. In the same transaction
the DailyUsage and MonthlyUsage rows of every UTC day and month the window touches are recomputed:
from the hourly rows for count, sum and max metrics, and for unique_count metrics from distinct
counts over the whole days and months that the run asks of the lake with the hours (a distinct
count does not add up from hours), and for latest metrics from the last hour's value (each hour holds
its last value, a 0 included).

Metrics over posted events are synced by the same run: the lake answers them from its events table
(metering.lake.base.Lake splits the metrics by table), in the same hourly rows.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as day_time
from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow as pa
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction
from django.db.models import Max, Q, Sum
from django.utils import timezone

from metering.db import UTCDay
from metering.lake import Lake, LakeError, get_lake
from metering.lake.base import one_line
from metering.models import (
    DailyTotal,
    DailyUsage,
    HourlyUsage,
    MonthlyUsage,
    RollupBackfill,
    SyncCursor,
    SyncOutcome,
    SyncRun,
    UnattributedUsage,
)
from metering.runs import USAGE_SYNCS, beat, heartbeat, runs_fail_stale
from tenants.models import Aggregation, Metric, Tenant, TenantUser

logger = logging.getLogger(__name__)
HOUR = timedelta(hours=1)


def floor_hour(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def ceil_hour(value: datetime) -> datetime:
    floored = floor_hour(value)
    return floored if floored == value.astimezone(UTC) else floored + HOUR


def _default_window(cursor: SyncCursor, now: datetime) -> tuple[datetime, datetime]:
    end = ceil_hour(now)
    if cursor.synced_until is None:
        # First run: from the start of last month, so that last month can be billed.
        first = now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        start = (first - timedelta(days=1)).replace(day=1)
    else:
        start = floor_hour(cursor.synced_until) - timedelta(hours=settings.USAGE_SYNC_LOOKBACK_HOURS)
    return start, end


def usage_sync(*, start: datetime | None = None, end: datetime | None = None, lake: Lake | None = None,
               attempts: int | None = None, retry_delay: float | None = None, triggered_by: str = "") -> SyncRun:
    """Sync hourly usage for [start, end) (default: from the cursor minus the lookback to now).

    The window is widened to whole hours. A failed lake query is retried ``attempts`` times with
    exponential backoff (from USAGE_SYNC_ATTEMPTS / USAGE_SYNC_RETRY_DELAY); when all fail the run
    is recorded as failed and the LakeError raised. The billing run calls this for a period's last
    hours before pricing it. Returns the SyncRun (saved).
    """
    if lake is None:
        lake = get_lake()
        if settings.LAKE_BACKEND == "local":
            from metering.sink import recover_orphaned_spools

            # Records buffered by a web process that died before its flush are not left behind.
            try:
                recover_orphaned_spools(lake)
            except Exception:  # they stay spooled for the next run; this one syncs what is there
                logger.exception("usage sync: recovering spooled records failed")
            from metering.event_sink import recover_event_spools

            try:  # the same for accepted events: every closed or orphaned spool segment into the events table
                recover_event_spools()
            except Exception:
                logger.exception("usage sync: appending spooled events failed")
    attempts = attempts or settings.USAGE_SYNC_ATTEMPTS
    retry_delay = settings.USAGE_SYNC_RETRY_DELAY if retry_delay is None else retry_delay
    backend = type(lake).__name__
    cursor, _ = SyncCursor.objects.get_or_create(name=settings.LAKE_BACKEND)
    default_start, default_end = _default_window(cursor, timezone.now())
    start = floor_hour(start) if start else default_start
    end = ceil_hour(end) if end else default_end
    if end <= start:
        end = start + HOUR
    now = timezone.now()
    run = SyncRun.objects.create(backend=backend, window_start=start, window_end=end, started_at=now,
                                 heartbeat_at=now, triggered_by=triggered_by)
    # A sync whose worker was killed stays "running" until someone notices: this run does.
    runs_fail_stale(kind=USAGE_SYNCS, by=f"usage sync {run.pk}")
    began = time.monotonic()
    # Seconds per phase of this run (not stored): the lake's queries, then writing the rows and rollups;
    # the log line of a successful run and bench/bench_sync.py show them.
    run.timings = {}
    metrics = list(Metric.objects.order_by("pk"))
    user_tenants = tenant_usernames()
    with heartbeat(run):
        try:
            rows = None
            for attempt in range(1, attempts + 1):
                run.attempts = attempt
                beat()
                try:
                    stamp = time.monotonic()
                    rows = lake.hourly_usage_table(metrics=metrics, start=start, end=end, user_tenants=user_tenants)
                    run.timings["hourly query"] = time.monotonic() - stamp
                    stamp = time.monotonic()
                    figures = exact_figures(lake, metrics=metrics, start=start, end=end, user_tenants=user_tenants)
                    run.timings["distinct counts query"] = time.monotonic() - stamp
                    break
                except LakeError as exc:
                    logger.warning("usage sync %s: attempt %s of %s failed: %s", run.pk, attempt, attempts, exc)
                    if attempt == attempts:
                        raise
                    beat()
                    time.sleep(retry_delay * 2 ** (attempt - 1))
            beat()
            written, unattributed = write_hourly_rows(rows, metrics=metrics, start=start, end=end,
                                                     figures=figures, timings=run.timings)
        except Exception as exc:
            run.outcome = SyncOutcome.FAILED
            run.error = one_line(f"{type(exc).__name__}: {exc}", limit=4000)
            _finish(run, began)
            if isinstance(exc, LakeError):
                exc.extra.setdefault("sync_run", run.pk)
            _after_sync(run)
            raise
    run.rows_read = rows.num_rows
    run.rows_written = written
    run.unattributed_rows = unattributed
    run.outcome = SyncOutcome.SUCCEEDED
    _finish(run, began)
    logger.info("usage sync %s: %s rows in %.2f s (%s)", run.pk, written, run.duration_seconds,
                ", ".join(f"{phase} {seconds:.2f} s" for phase, seconds in run.timings.items()))
    # The lake was read after the run started, so that instant bounds what it held: the window's end may be
    # later (the current hour ends in the future), "synced up to" never is. A backfill never moves it back.
    synced = min(end, run.started_at)
    SyncCursor.objects.filter(pk=cursor.pk).filter(
        Q(synced_until__isnull=True) | Q(synced_until__lt=synced)).update(synced_until=synced)
    rollup_backfill(lake=lake, user_tenants=user_tenants)
    _after_sync(run)
    return run


def _after_sync(run: SyncRun) -> None:
    """Alerts after a sync: the tenants' thresholds after a success, staff told of a failure. Never the
    sync's own outcome: a failure here is logged, and the next sync checks again."""
    from metering.services.alerts import alerts_check, notice_sync_failed

    try:
        if run.outcome == SyncOutcome.SUCCEEDED:
            alerts_check()
        else:
            notice_sync_failed(run)
    except Exception:
        logger.exception("usage sync %s: checking alerts failed", run.pk)


def _finish(run: SyncRun, began: float) -> None:
    run.finished_at = run.heartbeat_at = timezone.now()
    run.duration_seconds = round(time.monotonic() - began, 3)
    run.save()


def attribution_maps() -> tuple[dict[str, int], dict[str, int]]:
    """{tenant slug: tenant id} and {tenant user's username: tenant id}."""
    return (dict(Tenant.objects.values_list("slug", "pk")),
            dict(TenantUser.objects.values_list("username", "tenant_id")))


def tenant_usernames() -> dict[str, str]:
    """{tenant user's username: its tenant's slug}: how the lake queries attribute rows without tenant_id."""
    return dict(TenantUser.objects.values_list("username", "tenant__slug"))


def _rows_table(rows) -> pa.Table:
    """The lake's hourly groups as Arrow, whether given as a table or as HourlyRow objects."""
    if isinstance(rows, pa.Table):
        return rows
    rows = list(rows)
    width = len(rows[0].values) if rows else 0
    columns = {
        "tenant_id": pa.array([r.tenant_id for r in rows], pa.string()),
        "user": pa.array([r.user for r in rows], pa.string()),
        "hour": pa.array([r.hour.astimezone(UTC).replace(tzinfo=None) for r in rows], pa.timestamp("us")),
    }
    for i in range(width):
        columns[f"m{i}"] = pa.array([None if r.values[i] is None else Decimal(r.values[i]) for r in rows],
                                    pa.decimal128(38, 6))
    return pa.table(columns)


# Attribution and unpivot of the lake's groups, in DuckDB over Arrow: ~150k groups x 3 metrics for a
# month of 200 tenants, which per-row Python would spend seconds on. The output is what the database
# driver takes as is (hour and value as text, in the unique index's order).
_SHAPE_SQL = """
WITH attributed AS (
    SELECT g.*, CASE WHEN g.tenant_id IS NOT NULL THEN s.tenant ELSE n.tenant END AS tenant
    FROM groups g
    LEFT JOIN slugs s ON s.slug = g.tenant_id
    LEFT JOIN usernames n ON g.tenant_id IS NULL AND n.username = g."user"
), long AS (
    UNPIVOT attributed ON {columns} INTO NAME col VALUE value
), valued AS (
    SELECT l.tenant, l.tenant_id, l."user", m.metric, m.additive, l.hour, CAST(l.value AS DECIMAL(38, 6)) AS value
    FROM long l JOIN metric_columns m ON m.col = l.col
    WHERE l.value > 0 OR m.keep_zero
)
"""
# A tenant is one group per hour when the lake attributed the rows without tenant_id (user_tenants);
# should a user become known between the query and this step, its group joins the tenant's: added
# for count and sum, the larger for max and unique_count (a lower bound the next sync makes exact).
_ATTRIBUTED_SQL = """
SELECT tenant, metric, strftime(hour, '%Y-%m-%d %H:%M:%S') || $suffix,
       CAST(CASE WHEN bool_and(additive) THEN sum(value) ELSE max(value) END AS VARCHAR), $updated
FROM valued WHERE tenant IS NOT NULL GROUP BY tenant, metric, hour ORDER BY tenant, metric, hour
"""
_ORPHAN_SQL = """
SELECT coalesce(tenant_id, ''), coalesce("user", ''), metric, strftime(hour, '%Y-%m-%d %H:%M:%S') || $suffix,
       CAST(sum(value) AS VARCHAR), $updated
FROM valued WHERE tenant IS NULL GROUP BY 1, 2, metric, hour ORDER BY 1, 2, metric, hour
"""


@dataclass(frozen=True)
class CsvRows:
    """Rows written by DuckDB to a CSV file (every field quoted), for PostgreSQL's COPY ... CSV."""

    path: Path
    count: int

    def __len__(self) -> int:
        return self.count


def shape_rows(rows, *, metrics: Sequence[Metric], updated: str, tz_suffix: str = "",
               csv_dir: Path | None = None) -> tuple[list | CsvRows, list | CsvRows]:
    """(attributed rows, unattributed rows) ready for the database, from the lake's hourly groups:
    lists of tuples, or with ``csv_dir`` CSV files (no Python object per row).

    Attribution: ``tenant_id`` when it names a tenant; else (no tenant_id in the log) the tenant of
    the tenant user named by ``user``; else unattributed, keyed by what the log had. Zero values are
    not stored (a missing row reads as 0), except for latest metrics: a gauge that went down to 0 in an
    hour is that hour's last value, which the day, the month and the period take up."""
    table = _rows_table(rows)
    by_slug, by_username = attribution_maps()
    names = [f"m{i}" for i in range(len(metrics))]
    if table.num_rows == 0 or not names:
        return [], []
    con = duckdb.connect()
    try:
        con.register("groups", table.select(["tenant_id", "user", "hour", *names]))
        con.register("slugs", pa.table({"slug": pa.array(list(by_slug), pa.string()),
                                         "tenant": pa.array(list(by_slug.values()), pa.int64())}))
        con.register("usernames", pa.table({"username": pa.array(list(by_username), pa.string()),
                                            "tenant": pa.array(list(by_username.values()), pa.int64())}))
        con.register("metric_columns", pa.table({
            "col": names, "metric": pa.array([m.pk for m in metrics], pa.int64()),
            "additive": pa.array([m.aggregation in ADDITIVE for m in metrics], pa.bool_()),
            "keep_zero": pa.array([m.aggregation == Aggregation.LATEST for m in metrics], pa.bool_())}))
        shape = _SHAPE_SQL.format(columns=", ".join(f'"{n}"' for n in names))
        params = {"suffix": tz_suffix, "updated": updated}
        if csv_dir is None:
            return (con.execute(shape + _ATTRIBUTED_SQL, params).fetchall(),
                    con.execute(shape + _ORPHAN_SQL, params).fetchall())
        out = []
        for name, sql in (("attributed", _ATTRIBUTED_SQL), ("unattributed", _ORPHAN_SQL)):
            path = Path(csv_dir) / f"{name}.csv"
            if "'" in str(path):
                raise ValueError(f"unusable temporary path {path}")
            count = con.execute(f"COPY ({shape + sql}) TO '{path}' (FORMAT csv, HEADER false, FORCE_QUOTE *)",
                                params).fetchall()[0][0]
            out.append(CsvRows(path=path, count=int(count)))
        return out[0], out[1]
    finally:
        con.close()


def write_hourly_rows(rows, *, metrics: Sequence[Metric], start: datetime, end: datetime,
                      figures: ExactFigures | None = None, timings: dict | None = None) -> tuple[int, int]:
    """Replace the window's hourly rows (attributed and not) by the lake's ``rows``, in one transaction,
    with the rollups of the days and months the window touches (``figures``: their distinct counts).

    ``rows`` is the lake's hourly groups (an Arrow table or HourlyRow objects). Returns (attributed
    rows written, unattributed rows written). ``timings`` gets the seconds of each step.
    """
    timings = {} if timings is None else timings
    stamp = time.monotonic()
    metric_ids = [m.pk for m in metrics]
    now = timezone.now()
    if connection.vendor == "postgresql":
        updated, suffix = now.astimezone(UTC).isoformat(), "+00"
    else:
        # Django's own text form of the instant, so that the stale-row comparison below is exact.
        updated, suffix = connection.ops.adapt_datetimefield_value(now), ""
    with tempfile.TemporaryDirectory(prefix="usage-sync-") as scratch:
        # PostgreSQL takes the rows as CSV files that DuckDB writes (COPY ... CSV), SQLite as tuples.
        attributed, orphans = shape_rows(rows, metrics=metrics, updated=updated, tz_suffix=suffix,
                                         csv_dir=Path(scratch) if connection.vendor == "postgresql" else None)
        timings["shaping rows"] = time.monotonic() - stamp
        _replace_rows(attributed, orphans, metric_ids=metric_ids, start=start, end=end, now=now, figures=figures,
                      timings=timings)
    return len(attributed), len(orphans)


def _replace_rows(attributed, orphans, *, metric_ids: list[int], start: datetime, end: datetime,
                  now: datetime, figures: ExactFigures | None = None, timings: dict) -> None:
    stamp = time.monotonic()
    with transaction.atomic():
        # Serialises concurrent syncs (a beat tick and a billing run's final sync).
        list(SyncCursor.objects.select_for_update().filter(name=settings.LAKE_BACKEND))
        window = {"hour__gte": start, "hour__lt": end, "metric_id__in": metric_ids}
        # Rows of the window that this run did not write are stale (usage re-attributed to a tenant
        # since, or a metric's filter changed): upsert-then-prune rewrites only what changed, where
        # delete-then-insert rewrote every row of the window.
        _replace_window(HourlyUsage, ("tenant_id", "metric_id", "hour"), attributed, window=window, now=now)
        _replace_window(UnattributedUsage, ("tenant_key", "user_key", "metric_id", "hour"), orphans, window=window,
                        now=now)
        usage_changed(now)
        timings["writing hourly rows"] = time.monotonic() - stamp
        stamp = time.monotonic()
        daily_usage_refresh(start=start, end=end, figures=figures)
        timings["rollups"] = time.monotonic() - stamp
        stamp = time.monotonic()
    timings["commit"] = time.monotonic() - stamp


def usage_changed(now: datetime) -> None:
    """Mark the usage tables as changed, in the transaction that changed them: the sync cursors'
    ``updated_at`` is the usage's version (metering.selectors.usage_version), which the usage API's ETag
    is made of, so a client's copy is never answered "not modified" once that transaction committed."""
    SyncCursor.objects.filter(name=settings.LAKE_BACKEND).update(updated_at=now)


def utc_days(start: datetime, end: datetime) -> tuple[date, date]:
    """The whole UTC days that [start, end) touches, as [first day, last day + 1)."""
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    last = end.date() if end.time() == day_time.min else end.date() + timedelta(days=1)
    return start.date(), max(last, start.date() + timedelta(days=1))


ADDITIVE = frozenset({Aggregation.COUNT, Aggregation.SUM})


def month_of(day: date) -> date:
    return day.replace(day=1)


def next_month(month: date) -> date:
    return (month.replace(day=28) + timedelta(days=4)).replace(day=1)


def _midnight(day: date) -> datetime:
    return datetime.combine(day, day_time.min, tzinfo=UTC)


@dataclass(frozen=True)
class ExactFigures:
    """Distinct counts of unique_count metrics over whole UTC days and months, from the lake, keyed by
    (tenant id, metric id, day or month's first day); raw, before the divisor."""

    days: dict[tuple[int, int, date], Decimal]
    months: dict[tuple[int, int, date], Decimal]


def exact_figures(lake: Lake, *, metrics: Sequence[Metric], start: datetime, end: datetime,
                  user_tenants: dict[str, str] | None = None) -> ExactFigures | None:
    """The distinct counts of every UTC day and month that [start, end) touches, for its unique_count
    metrics, from the lake (None without such metrics).

    The days cost one query over them. A month costs a scan of the whole month so far, which a sync
    every 5 minutes would mostly repeat for nothing: records are only ever added to the lake, so a
    day's set of values can only grow, and a day whose distinct count did not change gained no value,
    nor did its month. So a month is asked of the lake (one more query) only when the count of one of
    its touched days changed or it has no figure yet; otherwise its stored figure stands. Measured in
    bench/bench_sync.py."""
    unique = [m for m in metrics if m.aggregation == Aggregation.UNIQUE_COUNT]
    if not unique:
        return None
    first, last = utc_days(start, end)
    tenants = dict(Tenant.objects.values_list("slug", "pk"))

    def keyed(rows) -> dict[tuple[int, int, date], Decimal]:
        found = {}
        for row in rows:
            tenant = tenants.get(row.tenant_id)
            if tenant is None:
                continue  # a tenant_id that names no tenant: unattributed usage, kept by the hours
            for metric, value in zip(unique, row.values, strict=True):
                if value:
                    found[(tenant, metric.pk, row.bucket.date())] = value
        return found

    days = keyed(lake.whole_period(metrics=unique, user_tenants=user_tenants,
                                   parts=[("day", _midnight(first), _midnight(last))]))
    stored_days = {(t, m, d): v for t, m, d, v in DailyUsage.objects.filter(
        metric__in=unique, day__gte=first, day__lt=last).values_list("tenant_id", "metric_id", "day", "value")}
    months = {month_of(first + timedelta(days=i)) for i in range((last - first).days)}
    stored_months = {(t, m, month): v for t, m, month, v in MonthlyUsage.objects.filter(
        metric__in=unique, month__in=months).values_list("tenant_id", "metric_id", "month", "value")}
    stale = {month_of(key[2]) for key in days.keys() | stored_days.keys() if days.get(key) != stored_days.get(key)}
    stale |= {month_of(d) for t, m, d in days if (t, m, month_of(d)) not in stored_months}
    stale |= set(RollupBackfill.objects.filter(month__in=months).values_list("month", flat=True))
    month_figures = {key: value for key, value in stored_months.items() if key[2] not in stale}
    if stale:
        month_figures.update(keyed(lake.whole_period(
            metrics=unique, user_tenants=user_tenants,
            parts=[("month", _midnight(month), _midnight(next_month(month))) for month in sorted(stale)])))
    return ExactFigures(days=days, months=month_figures)


def daily_usage_refresh(*, start: datetime, end: datetime, figures: ExactFigures | None = None) -> None:
    """Recompute the DailyUsage rows of every UTC day that [start, end) touches, then the MonthlyUsage
    rows of their months and the DailyTotal rows of the days (every tenant's day added up).

    Whole days and months, whatever the window's hours: a day's row is computed from all its hours,
    a month's from all its days. ``figures`` gives the distinct counts of unique_count metrics (the
    sync asks the lake for them); without them a unique_count day or month can only be given its
    busiest hour or day, a lower bound (for tests and sample data, never the sync). Exact and
    idempotent (the rows are replaced); call it in the transaction that changed the hourly rows, as
    the usage sync does, so that no reader sees hours, days and months disagree.
    """
    first, last = utc_days(start, end)
    months = []
    month = month_of(first)
    while month < last:
        months.append(month)
        month = next_month(month)
    with transaction.atomic():
        rollup_days(HourlyUsage, DailyUsage, first=first, last=last, distinct=figures.days if figures else None)
        rollup_months(DailyUsage, MonthlyUsage, months=months, distinct=figures.months if figures else None)
        rollup_day_totals(DailyUsage, DailyTotal, first=first, last=last)


def rollup_day_totals(daily_model, total_model, *, first: date, last: date, using: str = DEFAULT_DB_ALIAS) -> None:
    """Replace the DailyTotal rows of the days [first, last) by the sums of their daily rows of count and sum
    metrics (every tenant's day added up): one INSERT ... SELECT ... GROUP BY, as rollup_days writes the days.
    The models are arguments so that a data migration can run this very code with its historical models."""
    kinds = _kinds(daily_model._meta.get_field("metric").related_model, using)
    total_model.objects.using(using).filter(day__gte=first, day__lt=last).delete()
    if not kinds["additive"]:
        return
    select, params = (daily_model.objects.using(using).filter(day__gte=first, day__lt=last,
                                                              metric_id__in=kinds["additive"])
                      .values("metric_id", "day").annotate(day_total=Sum("value")).order_by()
                      .query.get_compiler(using).as_sql())
    qn = connections[using].ops.quote_name
    columns = ", ".join(qn(total_model._meta.get_field(name).column) for name in ("metric", "day", "value"))
    with connections[using].cursor() as cursor:
        cursor.execute(f"INSERT INTO {qn(total_model._meta.db_table)} ({columns}) {select}", params)

def _kinds(metric_model, using: str) -> dict[str, list[int]]:
    """Metric ids by how their hours combine: 'additive' (count, sum), 'max', 'unique' (unique_count),
    'latest' (the last hour's value)."""
    kinds: dict[str, list[int]] = {"additive": [], "max": [], "unique": [], "latest": []}
    for pk, aggregation in metric_model.objects.using(using).values_list("pk", "aggregation"):
        kind = ("additive" if aggregation in ADDITIVE else "max" if aggregation == Aggregation.MAX
                else "latest" if aggregation == Aggregation.LATEST else "unique")
        kinds[kind].append(pk)
    return kinds


def _last_values(rows, key_of) -> dict[tuple, Decimal]:
    """{key: value of the key's last row}, from (tenant id, metric id, time, value) rows in time order."""
    last: dict[tuple, Decimal] = {}
    for tenant_id, metric_id, moment, value in rows:
        last[key_of(tenant_id, metric_id, moment)] = value
    return last


def _as_day(value) -> date:
    # SQLite's UTCDay is text, PostgreSQL's a date.
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


def rollup_days(hourly_model, daily_model, *, first: date, last: date, using: str = DEFAULT_DB_ALIAS,
                distinct: dict | None = None) -> None:
    """Replace the daily rows of the days [first, last) by the figures of their hourly rows.

    The models are arguments so that the data migrations that fill the rollups run this very code
    with their historical models. Count and sum metrics (the sum of the hours) and max metrics (the
    largest hour) are each one INSERT ... SELECT ... GROUP BY, the SELECT built by the ORM (so each
    database gets its own day truncation): no row passes through Python, where a first sync's month
    of 200 tenants (18,000 daily rows) would cost a bulk_create of Python objects. A unique_count
    metric's day is its distinct count from ``distinct`` ({(tenant id, metric id, day): value}),
    never below its busiest hour; one row per tenant and day with usage, written from Python."""
    start, end = _midnight(first), _midnight(last)
    kinds = _kinds(hourly_model._meta.get_field("metric").related_model, using)
    daily_model.objects.using(using).filter(day__gte=first, day__lt=last).delete()

    def grouped(metric_ids):
        return (hourly_model.objects.using(using).filter(hour__gte=start, hour__lt=end, metric_id__in=metric_ids)
                .annotate(utc_day=UTCDay("hour")).values("tenant_id", "metric_id", "utc_day"))

    qn = connections[using].ops.quote_name
    columns = ", ".join(qn(daily_model._meta.get_field(name).column)
                        for name in ("tenant", "metric", "day", "value", "peak"))
    for metric_ids, value in ((kinds["additive"], Sum("value")), (kinds["max"], Max("value"))):
        if not metric_ids:
            continue
        # Selected in this order: the values() fields, then the annotations in the order they were added.
        select, params = (grouped(metric_ids).annotate(day_value=value, day_peak=Max("value")).order_by()
                          .query.get_compiler(using).as_sql())
        with connections[using].cursor() as cursor:
            cursor.execute(f"INSERT INTO {qn(daily_model._meta.db_table)} ({columns}) {select}", params)
    if kinds["unique"]:
        rows = []
        for tenant_id, metric_id, day, peak in (grouped(kinds["unique"]).annotate(day_peak=Max("value"))
                                                .order_by().values_list("tenant_id", "metric_id", "utc_day",
                                                                        "day_peak")):
            key = (tenant_id, metric_id, _as_day(day))
            value = _exact_or_bound(distinct, key, peak)
            rows.append(daily_model(tenant_id=tenant_id, metric_id=metric_id, day=key[2], value=value, peak=peak))
        daily_model.objects.using(using).bulk_create(rows, batch_size=2000)
    if kinds["latest"]:
        # A gauge's day is its last hour's value (each hour's row is that hour's last value, 0 included);
        # its peak is the same figure (the largest hour may exceed the day's last value).
        last = _last_values(
            hourly_model.objects.using(using).filter(hour__gte=start, hour__lt=end, metric_id__in=kinds["latest"])
            .order_by("hour").values_list("tenant_id", "metric_id", "hour", "value"),
            lambda tenant_id, metric_id, hour: (tenant_id, metric_id, hour.astimezone(UTC).date()))
        daily_model.objects.using(using).bulk_create(
            [daily_model(tenant_id=t, metric_id=m, day=d, value=v, peak=v) for (t, m, d), v in last.items()],
            batch_size=2000)


def _exact_or_bound(distinct: dict | None, key: tuple, bound: Decimal) -> Decimal:
    """The lake's distinct count of ``key``, never below ``bound`` (what its hours or days show: the
    lake answered after them, with at least their records); ``bound`` when the lake gave none."""
    if distinct is None:
        return bound
    value = distinct.get(key)
    if value is None:
        logger.warning("no distinct count from the lake for %s; its largest part (%s) stands in", key, bound)
        return bound
    return max(Decimal(value), bound)


def rollup_months(daily_model, monthly_model, *, months: Sequence[date], using: str = DEFAULT_DB_ALIAS,
                  distinct: dict | None = None) -> None:
    """Replace the monthly rows of ``months`` (first days) by the figures of their daily rows: the sum
    of the days for count and sum metrics, the largest day for max, and for unique_count the distinct
    count from ``distinct`` ({(tenant id, metric id, month): value}), never below its largest day.

    A few hundred rows a month (tenants x metrics), so grouped in the database and written from Python."""
    kinds = _kinds(daily_model._meta.get_field("metric").related_model, using)
    for month in months:
        monthly_model.objects.using(using).filter(month=month).delete()
        days = daily_model.objects.using(using).filter(day__gte=month, day__lt=next_month(month))
        rows = []
        for metric_ids, aggregate in ((kinds["additive"], Sum("value")), (kinds["max"] + kinds["unique"], Max("value"))):
            if not metric_ids:
                continue
            for tenant_id, metric_id, figure in (days.filter(metric_id__in=metric_ids).values("tenant_id", "metric_id")
                                                 .annotate(figure=aggregate).order_by()
                                                 .values_list("tenant_id", "metric_id", "figure")):
                if metric_id in kinds["unique"]:
                    figure = _exact_or_bound(distinct, (tenant_id, metric_id, month), figure)
                rows.append(monthly_model(tenant_id=tenant_id, metric_id=metric_id, month=month, value=figure))
        if kinds["latest"]:
            last = _last_values(days.filter(metric_id__in=kinds["latest"]).order_by("day")
                                .values_list("tenant_id", "metric_id", "day", "value"),
                                lambda tenant_id, metric_id, day: (tenant_id, metric_id))
            rows.extend(monthly_model(tenant_id=t, metric_id=m, month=month, value=v) for (t, m), v in last.items())
        monthly_model.objects.using(using).bulk_create(rows, batch_size=2000)


def rollup_backfill(*, lake: Lake, user_tenants: dict[str, str] | None = None) -> int:
    """Compute the distinct counts of the months listed in RollupBackfill (newest first), each in its
    own transaction; returns how many were done.

    The migration that made day and month figures exact lists the months synced before it: their
    unique_count days and months need the lake, which a migration must not depend on. Each month
    costs one lake query over the month; a failure is logged and the month stays listed for the next
    sync (readers ask the lake for it meanwhile). Hourly rows are not rewritten."""
    done = 0
    months = list(RollupBackfill.objects.order_by("-month").values_list("month", flat=True))
    if not months:
        return 0
    metrics = list(Metric.objects.order_by("pk"))
    for month in months:
        start, end = _midnight(month), _midnight(next_month(month))
        try:
            figures = exact_figures(lake, metrics=metrics, start=start, end=end, user_tenants=user_tenants)
        except LakeError as exc:
            logger.warning("rollup backfill of %s: the lake did not answer (%s); retried by the next sync", month, exc)
            return done
        with transaction.atomic():
            list(SyncCursor.objects.select_for_update().filter(name=settings.LAKE_BACKEND))
            daily_usage_refresh(start=start, end=end, figures=figures)
            RollupBackfill.objects.filter(month=month).delete()
            usage_changed(timezone.now())
        done += 1
        logger.info("rollup backfill: %s done", f"{month:%Y-%m}")
    return done


def _replace_window(model, key_columns: tuple[str, ...], rows: list[tuple] | CsvRows, *, window: dict,
                    now: datetime) -> None:
    """Make the rows of ``window`` (a filter of ``model``) exactly ``rows``: insert the new, update those
    whose value changed, delete those not in ``rows``.

    On PostgreSQL a row whose value did not change is not written at all (a sync every 5 minutes re-reads
    hours whose rows mostly stand: rewriting them all left a dead row version per row and sync, 35 million
    a day at 10,000 tenants), and the stale rows are those of the window missing from this run's rows.
    On SQLite every row is upserted and the stale rows are those it did not touch (older updated_at)."""
    existing = model.objects.filter(**window)
    if not len(rows):
        existing.delete()
        return
    if connection.vendor == "postgresql" and not existing.exists():
        # Every row written lies in the window, so an empty window (a first sync, a backfill) cannot
        # conflict and has nothing stale: COPY straight into the table.
        _bulk_upsert(model, key_columns, rows, no_conflict=True)
        return
    if connection.vendor == "postgresql":
        _bulk_upsert(model, key_columns, rows, prune=window)
        return
    _bulk_upsert(model, key_columns, rows)
    existing.filter(updated_at__lt=now).delete()


def _bulk_upsert(model, key_columns: tuple[str, ...], rows: list[tuple] | CsvRows, *,
                 no_conflict: bool = False, prune: dict | None = None) -> None:
    """Insert (key..., value, updated_at) rows (hour, value and updated_at as text), updating value
    on a key conflict.

    A fast path per database (one executemany on SQLite's driver, COPY into a temporary table then
    one INSERT ... ON CONFLICT on PostgreSQL): a month of 200 tenants is ~430k rows, too many for
    the ORM's bulk_create to write in seconds. Same semantics as
    bulk_create(update_conflicts=True, unique_fields=key, update_fields=["value", "updated_at"]),
    except that with ``prune`` (PostgreSQL: the window's filter) a row whose value is unchanged is left
    as it is, and the window's rows missing from ``rows`` are deleted.
    """
    if not len(rows):
        return
    qn = connection.ops.quote_name
    table = qn(model._meta.db_table)
    columns = [*key_columns, "value", "updated_at"]
    column_sql = ", ".join(qn(c) for c in columns)
    conflict = ", ".join(qn(c) for c in key_columns)
    update = f"{qn('value')} = EXCLUDED.{qn('value')}, {qn('updated_at')} = EXCLUDED.{qn('updated_at')}"
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            raw = cursor.cursor if hasattr(cursor, "cursor") else cursor

            def copy_into(target: str) -> None:
                if isinstance(rows, CsvRows):
                    with raw.copy(f"COPY {target} ({column_sql}) FROM STDIN (FORMAT csv)") as copy, \
                            rows.path.open("rb") as source:
                        while chunk := source.read(1 << 20):
                            copy.write(chunk)
                else:
                    with raw.copy(f"COPY {target} ({column_sql}) FROM STDIN") as copy:
                        for row in rows:
                            copy.write_row(row)

            if no_conflict:
                copy_into(table)
                return
            temp = qn(f"tmp_{model._meta.db_table}")
            cursor.execute(f"CREATE TEMPORARY TABLE {temp} ON COMMIT DROP AS "
                           f"SELECT {column_sql} FROM {table} WITH NO DATA")
            copy_into(temp)
            changed = f" WHERE {table}.{qn('value')} IS DISTINCT FROM EXCLUDED.{qn('value')}" if prune else ""
            cursor.execute(f"INSERT INTO {table} ({column_sql}) SELECT {column_sql} FROM {temp} "
                           f"ON CONFLICT ({conflict}) DO UPDATE SET {update}{changed}")
            if prune:
                cursor.execute(f"ANALYZE {temp}")  # its size, for the anti-join's plan
                same = " AND ".join(f"s.{qn(c)} = {table}.{qn(c)}" for c in key_columns)
                cursor.execute(f"DELETE FROM {table} WHERE {qn('hour')} >= %s AND {qn('hour')} < %s "
                               f"AND {qn('metric_id')} = ANY(%s) AND NOT EXISTS (SELECT 1 FROM {temp} AS s WHERE {same})",
                               [prune["hour__gte"], prune["hour__lt"], list(prune["metric_id__in"])])
            # Dropped now, not only at commit: an enclosing transaction may sync again.
            cursor.execute(f"DROP TABLE {temp}")
        return
    if connection.vendor != "sqlite":  # pragma: no cover - the portal runs on SQLite or PostgreSQL
        raise NotImplementedError(f"no bulk upsert for {connection.vendor}")
    placeholders = ", ".join(["?"] * len(columns))
    connection.ensure_connection()
    # Django's cursor wrapper costs ~2x on 400k rows; the driver's executemany is one C loop.
    connection.connection.executemany(f"INSERT INTO {table} ({column_sql}) VALUES ({placeholders}) "
                                      f"ON CONFLICT ({conflict}) DO UPDATE SET {update}", rows)
