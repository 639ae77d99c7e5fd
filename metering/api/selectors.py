"""Reads behind the API: usage buckets and tenants ranked by usage, each figure what an invoice of its period bills."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

from django.db.models import Sum

from metering.models import DailyUsage, HourlyUsage, MonthlyUsage
from metering.selectors import ADDITIVE, bucket_start, hour_bounds, whole_period_figures
from metering.services.sync import HOUR
from tenants import raw
from tenants.models import Aggregation, Metric, Tenant


def usage_buckets(*, tenant, metrics: list[Metric], start: datetime, end: datetime, granularity: str) -> list[dict]:
    """Rows {metric_id, bucket, raw} per metric and bucket with usage, ordered by bucket then metric.

    `raw` is the bucket's figure before the metric's divisor (``scaled`` applies it), over the hours
    that start in [start, end): the sum of the hourly values for count and sum metrics, the largest
    for max metrics. A unique_count metric's bucket is its distinct count over the whole bucket (a latest
    metric's, its last value): the
    hourly row, or the day's or month's rollup (the caller checks that the range cuts no bucket of
    such a metric: filters.UsageQuerySerializer).

    Every usage API request asks it: raw SQL (tenants.raw), the rows and values of
    ``HourlyUsage.objects.filter(...).annotate(bucket=Trunc...("hour", tzinfo=UTC)).values("metric_id", "bucket")
    .annotate(raw=Sum("value") or Max("value"))`` and of the rollup's ``values_list``.
    """
    rows: list[dict] = []
    # Figures that are not a sum or a maximum of hours: a distinct count, a last value (latest).
    unique = [m for m in metrics if m.aggregation in (Aggregation.UNIQUE_COUNT, Aggregation.LATEST)]
    by_hour = [m for m in metrics if m.aggregation == Aggregation.MAX or (m in unique and granularity == "hour")]
    for chosen, figure in (([m for m in metrics if m.aggregation in ADDITIVE], "SUM"), (by_hour, "MAX")):
        if chosen:
            rows.extend(_hourly_buckets(tenant.pk, [m.pk for m in chosen], start, end, granularity, figure))
    if unique and granularity != "hour":
        first, last = hour_bounds(start, end)
        if last > first:
            first, last = bucket_start(first, granularity).date(), bucket_start(last - HOUR, granularity).date()
            rollup, field = (DailyUsage, "day") if granularity == "day" else (MonthlyUsage, "month")
            for metric_id, day, value in _rollup_rows(rollup, field, tenant.pk, [m.pk for m in unique], first, last):
                rows.append({"metric_id": metric_id, "raw": value,
                             "bucket": datetime(day.year, day.month, day.day, tzinfo=UTC)})
    rows.sort(key=lambda row: (row["bucket"], row["metric_id"]))
    return rows


def _in(values: list) -> str:
    return ", ".join(["%s"] * len(values))


def _hourly_buckets(tenant_id: int, metric_ids: list[int], start: datetime, end: datetime, granularity: str,
                    figure: str) -> list[dict]:
    connection = raw.current()
    meta = HourlyUsage._meta
    hour, value = meta.get_field("hour"), meta.get_field("value")
    col = {name: f"h.{raw.quote(meta.get_field(name).column)}" for name in ("tenant", "metric", "hour", "value")}
    # The bucket as the ORM's Trunc<granularity>("hour", tzinfo=UTC) writes it for this database.
    trunc, trunc_params = connection.ops.datetime_trunc_sql(granularity, col["hour"], (), "UTC")
    sql = (f"SELECT {col['metric']}, {trunc}, {figure}({col['value']}) FROM {raw.quote(meta.db_table)} h "
           f"WHERE {col['tenant']} = %s AND {col['metric']} IN ({_in(metric_ids)}) "
           f"AND {col['hour']} >= %s AND {col['hour']} < %s GROUP BY 1, 2")
    params = [*trunc_params, tenant_id, *metric_ids, raw.adapt(start, hour, connection), raw.adapt(end, hour, connection)]
    with raw.cursor() as cursor:
        cursor.execute(sql, params)
        found = cursor.fetchall()
    as_bucket, as_figure = raw.converter(hour, connection=connection), raw.converter(value, figure, connection)
    rows = []
    for metric_id, bucket, figure_value in found:
        if as_bucket is not None:
            bucket = as_bucket(bucket)
        if bucket.tzinfo is None:  # as TruncBase.convert_value: the bucket is a UTC time
            bucket = bucket.replace(tzinfo=UTC)
        rows.append({"metric_id": metric_id, "bucket": bucket,
                     "raw": figure_value if as_figure is None else as_figure(figure_value)})
    return rows


def _rollup_rows(model, field: str, tenant_id: int, metric_ids: list[int], first: date, last: date) -> list[tuple]:
    connection = raw.current()
    meta = model._meta
    period, value = meta.get_field(field), meta.get_field("value")
    col = {name: raw.quote(meta.get_field(name).column) for name in ("tenant", "metric", field, "value")}
    sql = (f"SELECT {col['metric']}, {col[field]}, {col['value']} FROM {raw.quote(meta.db_table)} "
           f"WHERE {col['tenant']} = %s AND {col['metric']} IN ({_in(metric_ids)}) "
           f"AND {col[field]} >= %s AND {col[field]} <= %s")
    with raw.cursor() as cursor:
        cursor.execute(sql, [tenant_id, *metric_ids, raw.adapt(first, period, connection),
                             raw.adapt(last, period, connection)])
        found = cursor.fetchall()
    as_day, as_value = raw.converter(period, connection=connection), raw.converter(value, connection=connection)
    if as_day is None and as_value is None:
        return found
    return [(metric_id, day if as_day is None else as_day(day), figure if as_value is None else as_value(figure))
            for metric_id, day, figure in found]


def top_tenants(*, metric: Metric, start: datetime, end: datetime) -> list[dict]:
    """Rows {tenant_id, tenant__slug, tenant__name, raw} for tenants with usage of `metric`, largest first:
    the sum of the hours for count and sum metrics, else the figure over the whole range
    (metering.selectors.whole_period_figures: the largest hour, or the distinct count)."""
    if metric.aggregation in ADDITIVE:
        return list(
            HourlyUsage.objects.filter(metric=metric, hour__gte=start, hour__lt=end)
            .values("tenant_id", "tenant__slug", "tenant__name")
            .annotate(raw=Sum("value"))
            .order_by("-raw", "tenant__slug")
        )
    figures = whole_period_figures(metrics=[metric], start=start, end=end)
    names = {pk: (slug, name) for pk, slug, name in
             Tenant.objects.filter(pk__in=list(figures)).values_list("pk", "slug", "name")}
    rows = [{"tenant_id": pk, "tenant__slug": names[pk][0], "tenant__name": names[pk][1], "raw": values[metric.pk]}
            for pk, values in figures.items() if values.get(metric.pk)]
    return sorted(rows, key=lambda row: (-row["raw"], row["tenant__slug"]))


def scaled(raw, metric: Metric) -> Decimal:
    """A raw aggregate after the metric's divisor, without trailing zeros ("1.5", not "1.500000")."""
    value = Decimal(raw or 0)
    if metric.divisor != 1:
        value = value / metric.divisor
    return _plain(value)


def _plain(value: Decimal) -> Decimal:
    normalized = value.normalize()
    # normalize() can give an exponent form (1E+3); quantizing to 0 keeps integers plain.
    return normalized.quantize(Decimal(1)) if normalized == normalized.to_integral() else normalized
