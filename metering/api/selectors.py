"""Reads behind the API: usage buckets aggregated in the database, and tenants ranked by usage."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from django.db.models import QuerySet, Sum
from django.db.models.functions import TruncDay, TruncHour, TruncMonth

from metering.models import HourlyUsage, Metric

TRUNC = {"hour": TruncHour, "day": TruncDay, "month": TruncMonth}


def usage_buckets(*, tenant, metrics: list[Metric], start: datetime, end: datetime, granularity: str) -> QuerySet:
    """Rows {metric_id, bucket, raw} per metric and bucket with usage, ordered by bucket then metric.

    `raw` is the sum of the hourly values before the metric's divisor (``scaled`` applies it). For
    unique_count and max metrics the day and month buckets are sums of hourly values (informative:
    a period's billable quantity of those comes from the lake over the whole period).
    """
    return (
        HourlyUsage.objects.filter(tenant=tenant, metric__in=metrics, hour__gte=start, hour__lt=end)
        .annotate(bucket=TRUNC[granularity]("hour", tzinfo=UTC))
        .values("metric_id", "bucket")
        .annotate(raw=Sum("value"))
        .order_by("bucket", "metric_id")
    )


def top_tenants(*, metric: Metric, start: datetime, end: datetime) -> QuerySet:
    """Rows {tenant_id, tenant__slug, tenant__name, raw} for tenants with usage of `metric`, largest first."""
    return (
        HourlyUsage.objects.filter(metric=metric, hour__gte=start, hour__lt=end)
        .values("tenant_id", "tenant__slug", "tenant__name")
        .annotate(raw=Sum("value"))
        .order_by("-raw", "tenant__slug")
    )


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
