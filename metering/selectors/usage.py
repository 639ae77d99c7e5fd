"""Reads on usage: a tenant's quantity of each metric over a period, as billing, the REST API and the
dashboards count it, and the hour, day and month bucket arithmetic they share.

One truth per figure (docs/plans.md): a period's quantity is what an invoice of that period bills. Count
and sum metrics add their hours up. A max metric's figure is the largest of its hours (the hourly
rows are exact maxima, so their maximum is). A unique_count metric's figure is the distinct count
over the whole period: read from the rollup the usage sync computed from the lake when the period
is one whole hour, UTC day or calendar month, else asked of the lake over the period's hours.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal, localcontext

from django.db.models import Exists, Max, OuterRef, Sum
from django.utils import timezone

from metering.models import DailyUsage, HourlyUsage, MonthlyUsage, RollupBackfill, SyncCursor
from metering.services.sync import HOUR, ceil_hour
from tenants import raw
from tenants.models import Aggregation, Metric

# Aggregations whose period value is the sum of the hourly values; the others (max, unique_count)
# are computed over the whole period.
ADDITIVE = frozenset({Aggregation.COUNT, Aggregation.SUM})


def usage_version() -> str:
    """A token that changes whenever the usage tables may have: the latest change of a sync cursor, which
    the usage sync (and the rollup backfill) sets in the transaction that writes hourly, daily and monthly
    rows (metering.services.sync.usage_changed). One read of a table of one row per lake backend."""
    latest = SyncCursor.objects.aggregate(latest=Max("updated_at"))["latest"]
    return latest.isoformat() if latest else "none"


def usage_version_and_backfill(start: datetime, end: datetime) -> tuple[str, bool]:
    """``(usage_version(), backfill_pending(start, end))`` in one raw query (tenants.raw): what every usage API
    request asks before it reads usage (or answers 304)."""
    q = raw.quote
    cursors, backfills = SyncCursor._meta, RollupBackfill._meta
    updated_at, month = cursors.get_field("updated_at"), backfills.get_field("month")
    sql = (f"SELECT (SELECT MAX({q(updated_at.column)}) FROM {q(cursors.db_table)}), "
           f"EXISTS(SELECT 1 FROM {q(backfills.db_table)} WHERE {q(month.column)} >= %s AND {q(month.column)} < %s)")
    with raw.cursor() as cursor:
        cursor.execute(sql, [raw.adapt(bucket_start(start, "month").date(), month),
                             raw.adapt(end.astimezone(UTC).date(), month)])
        latest, pending = cursor.fetchone()
    latest = raw.convert(latest, updated_at, "MAX")
    return (latest.isoformat() if latest else "none"), bool(pending)


def hour_bounds(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """The hours a range [start, end) counts, those that start in it, as [first hour, last hour + 1)."""
    return ceil_hour(start), ceil_hour(end)


def bucket_start(moment: datetime, unit: str) -> datetime:
    """The start of the UTC hour, day or month that contains ``moment``."""
    moment = moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    if unit == "hour":
        return moment
    moment = moment.replace(hour=0)
    return moment if unit == "day" else moment.replace(day=1)


def bucket_end(start: datetime, unit: str) -> datetime:
    if unit == "hour":
        return start + HOUR
    if unit == "day":
        return start + timedelta(days=1)
    return (start.replace(day=28) + timedelta(days=4)).replace(day=1)


def covers_to_bucket_end(end: datetime, bucket_end_: datetime, *, now: datetime | None = None) -> bool:
    """Whether hours up to ``end`` (whole hours) cover a bucket up to ``bucket_end_``: they reach it, or
    they reach the current hour, after which no usage exists yet."""
    return end >= bucket_end_ or end >= ceil_hour(now or timezone.now())


def whole_bucket(start: datetime, end: datetime, *, now: datetime | None = None) -> tuple[str, datetime] | None:
    """``(unit, bucket start)`` when the hours of [start, end) are all the hours of one UTC hour, day or
    month that can have usage (the whole bucket, or its start up to the current hour); else None."""
    start, end = hour_bounds(start, end)
    if end <= start:
        return None
    for unit in ("hour", "day", "month"):
        first = bucket_start(start, unit)
        last = bucket_end(first, unit)
        if first == start and end <= last and covers_to_bucket_end(end, last, now=now):
            return unit, first
    return None


def backfill_pending(start: datetime, end: datetime) -> bool:
    """Whether a month of [start, end) still waits for its distinct counts (RollupBackfill)."""
    return RollupBackfill.objects.filter(month__gte=bucket_start(start, "month").date(),
                                         month__lt=end.astimezone(UTC).date()).exists()


def _resolve_metrics(metrics) -> list[Metric]:
    codes, models = [], []
    for metric in metrics:
        if isinstance(metric, Metric):
            models.append(metric)
        else:
            codes.append(metric if isinstance(metric, str) else metric.code)
    if codes:
        found = {m.code: m for m in Metric.objects.filter(code__in=codes)}
        missing = sorted(set(codes) - set(found))
        if missing:
            raise Metric.DoesNotExist(f"unknown metric(s): {', '.join(missing)}")
        models.extend(found[c] for c in codes)
    return models


def _tenant_of(subscription_or_tenant):
    return getattr(subscription_or_tenant, "tenant", subscription_or_tenant)


def period_quantities(*, subscription_or_tenant, metrics: Iterable, start: datetime, end: datetime,
                      lake=None) -> dict[str, Decimal]:
    """The quantity of each metric for a tenant over [start, end), after the metric's divisor.

    Signature: ``period_quantities(*, subscription_or_tenant: Subscription | Tenant,
    metrics: Iterable[Metric | MetricSpec | str], start: datetime, end: datetime,
    lake: Lake | None = None) -> dict[str, Decimal]`` keyed by metric code; a metric with no usage
    has ``Decimal(0)``.

    - count and sum metrics: the sum of the synced hourly rows whose hour starts in [start, end)
      (bounds are meant to be whole hours; call metering.services.sync.usage_sync first for the
      period's last hours).
    - max and unique_count metrics: their figure over all those hours (whole_period_figures): the
      largest hour; the distinct count over the whole period (distinct values in a month are not the
      sum of distinct values per hour), from the sync's rollup of a whole day or month or from the
      lake, with the tenant's records attributed by tenant_id, or by user for records without one.
    - latest metrics (over posted events): the last value reported in those hours.

    Duplicated request_ids (events: transaction ids) count once in all. The quantity is the raw aggregate divided by the
    metric's divisor, exactly (Decimal with 28+ significant digits, not rounded here).
    """
    tenant = _tenant_of(subscription_or_tenant)
    return period_quantities_many(tenants=[tenant], metrics=metrics, start=start, end=end, lake=lake)[tenant.pk]


def period_quantities_many(*, tenants: Iterable, metrics: Iterable, start: datetime, end: datetime,
                           lake=None) -> dict[int, dict[str, Decimal]]:
    """period_quantities for several tenants over the same window, keyed by tenant id: the hourly
    sums of count and sum metrics come from one grouped query (a billing run prices many tenants),
    the figures of max and unique_count metrics from whole_period_figures."""
    tenants = list(tenants)
    resolved = _resolve_metrics(metrics)
    raw: dict[int, dict[str, Decimal]] = {tenant.pk: {} for tenant in tenants}
    additive = [m for m in resolved if m.aggregation in ADDITIVE]
    if additive and tenants:
        codes = {metric.pk: metric.code for metric in additive}
        for tenant_id, metric_id, total in (
            HourlyUsage.objects.filter(tenant__in=list(raw), metric__in=additive, hour__gte=start, hour__lt=end)
            .values("tenant_id", "metric_id").annotate(total=Sum("value")).values_list("tenant_id", "metric_id", "total")
        ):
            raw[tenant_id][codes[metric_id]] = total
    whole_period = [m for m in resolved if m.aggregation not in ADDITIVE]
    if whole_period and tenants:
        codes = {metric.pk: metric.code for metric in whole_period}
        found = whole_period_figures(metrics=whole_period, start=start, end=end, tenants=tenants, lake=lake)
        for tenant_id, values in found.items():
            raw[tenant_id].update({codes[metric_id]: value for metric_id, value in values.items()})
    quantities: dict[int, dict[str, Decimal]] = {}
    with localcontext() as ctx:
        ctx.prec = 40
        for tenant_id, values in raw.items():
            quantities[tenant_id] = {}
            for metric in resolved:
                value = Decimal(values.get(metric.code) or 0)
                quantities[tenant_id][metric.code] = value / metric.divisor if metric.divisor != 1 else value
    return quantities


def whole_period_figures(*, metrics: Iterable[Metric], start: datetime, end: datetime, tenants: Iterable | None = None,
                         lake=None) -> dict[int, dict[int, Decimal]]:
    """{tenant id: {metric id: raw figure}} of max, latest and unique_count metrics over the hours that
    start in [start, end), for ``tenants`` (every tenant with usage when None); tenants without usage
    are left out.

    - max: the largest of the hourly rows (each hour's row is that hour's exact maximum).
    - latest: the value of the last hourly row (each hour's row is that hour's last value).
    - unique_count: the distinct count over all those hours. When they are one whole hour, UTC day or
      calendar month (or one up to now), the rollup row the usage sync computed from the lake; for
      any other window (an anniversary period, a plan change's part, a range of days) one lake query
      over the window for all the tenants at once, attributed as the sync attributes. Raises LakeError
      when the lake cannot answer.
    """
    return start_whole_period_figures(metrics=metrics, start=start, end=end, tenants=tenants, lake=lake,
                                      background=False)()


def start_whole_period_figures(*, metrics: Iterable[Metric], start: datetime, end: datetime,
                               tenants: Iterable | None = None, lake=None,
                               background: bool = True) -> Callable[[], dict[int, dict[int, Decimal]]]:
    """whole_period_figures begun: its database reads done now (in the caller's thread: its connection
    and transaction), and the lake's query, when the window needs one, started in a thread of its own
    (with ``background``; else run by the function returned). The function returned waits for the
    query and gives whole_period_figures' answer, raising its LakeError. Meanwhile the caller can ask
    its own queries: the lake's seconds (Athena) or tens of milliseconds (DuckDB, which leaves the
    GIL to the caller) overlap them rather than add up."""
    metrics = list(metrics)
    start, end = hour_bounds(start, end)
    found: dict[int, dict[int, Decimal]] = defaultdict(dict)
    if end <= start:
        return lambda: found
    tenant_ids = None if tenants is None else [getattr(t, "pk", t) for t in tenants]

    def scoped(queryset):
        return queryset if tenant_ids is None else queryset.filter(tenant_id__in=tenant_ids)

    maxes = [m for m in metrics if m.aggregation == Aggregation.MAX]
    if maxes:
        for tenant_id, metric_id, top in (
            scoped(HourlyUsage.objects.filter(metric__in=maxes, hour__gte=start, hour__lt=end))
            .values("tenant_id", "metric_id").annotate(top=Max("value")).order_by()
            .values_list("tenant_id", "metric_id", "top")
        ):
            found[tenant_id][metric_id] = top
    latest = [m for m in metrics if m.aggregation == Aggregation.LATEST]
    if latest:
        # Each hour's row is that hour's last value (0 included): the period's is its last hour's.
        later = HourlyUsage.objects.filter(tenant_id=OuterRef("tenant_id"), metric_id=OuterRef("metric_id"),
                                           hour__gt=OuterRef("hour"), hour__lt=end)
        for tenant_id, metric_id, value in (
            scoped(HourlyUsage.objects.filter(metric__in=latest, hour__gte=start, hour__lt=end))
            .filter(~Exists(later)).order_by().values_list("tenant_id", "metric_id", "value")
        ):
            found[tenant_id][metric_id] = value
    unique = [m for m in metrics if m.aggregation == Aggregation.UNIQUE_COUNT]
    if not unique:
        return lambda: found
    bucket = whole_bucket(start, end)
    if bucket is not None and (bucket[0] == "hour" or not backfill_pending(start, end)):
        unit, first = bucket
        if unit == "hour":
            rows = HourlyUsage.objects.filter(hour=first)
        elif unit == "day":
            rows = DailyUsage.objects.filter(day=first.date())
        else:
            rows = MonthlyUsage.objects.filter(month=first.date())
        for tenant_id, metric_id, value in (scoped(rows.filter(metric__in=unique)).order_by()
                                            .values_list("tenant_id", "metric_id", "value")):
            found[tenant_id][metric_id] = value
        return lambda: found
    in_lake = _start_lake_figures(metrics=unique, start=start, end=end, tenant_ids=tenant_ids, lake=lake,
                                  background=background)

    def figures() -> dict[int, dict[int, Decimal]]:
        for tenant_id, values in in_lake().items():
            found[tenant_id].update(values)
        return found

    return figures


def _start_lake_figures(*, metrics: list[Metric], start: datetime, end: datetime, tenant_ids: list[int] | None,
                        lake=None, background: bool) -> Callable[[], dict[int, dict[int, Decimal]]]:
    """The tenants and users read now; the lake asked in a thread (``background``) or when called."""
    from metering.lake import get_lake
    from tenants.models import Tenant, TenantUser

    tenants = Tenant.objects.all() if tenant_ids is None else Tenant.objects.filter(pk__in=tenant_ids)
    by_slug = dict(tenants.values_list("slug", "pk"))
    if not by_slug:
        return dict
    users = TenantUser.objects.all() if tenant_ids is None else TenantUser.objects.filter(tenant_id__in=tenant_ids)
    lake = lake or get_lake()  # here: settings a deployment keeps in the database are read in this thread
    user_tenants = dict(users.values_list("username", "tenant__slug"))

    def ask():
        return lake.whole_period(metrics=metrics, parts=[(None, start, end)], user_tenants=user_tenants,
                                 tenants=None if tenant_ids is None else list(by_slug))

    asked = _InThread(ask) if background else None
    return lambda: _attributed(asked.result() if asked is not None else ask(), metrics=metrics, by_slug=by_slug)


def _attributed(rows, *, metrics: list[Metric], by_slug: dict[str, int]) -> dict[int, dict[int, Decimal]]:
    found: dict[int, dict[int, Decimal]] = defaultdict(dict)
    for row in rows:
        tenant_id = by_slug.get(row.tenant_id)
        if tenant_id is None:
            continue
        for metric, value in zip(metrics, row.values, strict=True):
            if value:
                found[tenant_id][metric.pk] = value
    return found


class _InThread:
    """A call run in a thread of its own; result() waits for it and returns its value or raises its error.
    The thread touches no database (Django's connections are per thread: a query there would open a
    connection outside the caller's transaction), and starts with empty context variables (no run's
    heartbeat is written from it)."""

    def __init__(self, call: Callable[[], object]):
        self._call = call
        self._value = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="lake-query", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._value = self._call()
        except BaseException as exc:  # handed to the caller by result()
            self._error = exc

    def result(self):
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value
