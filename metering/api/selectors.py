"""Reads behind the API: usage buckets and tenants ranked by usage, each figure what an invoice of its period bills."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from django.db.models import Max, Sum
from django.db.models.functions import TruncDay, TruncHour, TruncMonth

from metering.models import DailyUsage, HourlyUsage, MonthlyUsage
from metering.selectors import ADDITIVE, bucket_start, hour_bounds, whole_period_figures
from metering.services.sync import HOUR
from tenants.models import Aggregation, Metric, Tenant

TRUNC = {"hour": TruncHour, "day": TruncDay, "month": TruncMonth}


def usage_buckets(*, tenant, metrics: list[Metric], start: datetime, end: datetime, granularity: str) -> list[dict]:
    """Rows {metric_id, bucket, raw} per metric and bucket with usage, ordered by bucket then metric.

    `raw` is the bucket's figure before the metric's divisor (``scaled`` applies it), over the hours
    that start in [start, end): the sum of the hourly values for count and sum metrics, the largest
    for max metrics. A unique_count metric's bucket is its distinct count over the whole bucket (a latest
    metric's, its last value): the
    hourly row, or the day's or month's rollup (the caller checks that the range cuts no bucket of
    such a metric: filters.UsageQuerySerializer).
    """
    rows: list[dict] = []
    hourly = HourlyUsage.objects.filter(tenant=tenant, hour__gte=start, hour__lt=end)
    # Figures that are not a sum or a maximum of hours: a distinct count, a last value (latest).
    unique = [m for m in metrics if m.aggregation in (Aggregation.UNIQUE_COUNT, Aggregation.LATEST)]
    by_hour = [m for m in metrics if m.aggregation == Aggregation.MAX or (m in unique and granularity == "hour")]
    for chosen, figure in (([m for m in metrics if m.aggregation in ADDITIVE], Sum("value")), (by_hour, Max("value"))):
        if chosen:
            rows.extend(hourly.filter(metric__in=chosen).annotate(bucket=TRUNC[granularity]("hour", tzinfo=UTC))
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
