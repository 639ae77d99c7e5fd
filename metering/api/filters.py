"""Query parameters of the usage and invoice endpoints, validated with a message that names what is wrong."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta

from django.conf import settings
from django.utils import timezone
from django.utils.dateparse import parse_date
from rest_framework import serializers

from metering.models import InvoiceStatus
from metering.selectors import bucket_end, bucket_start, covers_to_bucket_end, hour_bounds
from metering.services.sync import HOUR
from tenants.models import Aggregation, Metric
from tenants.selectors import metrics_by_code

GRANULARITIES = ("hour", "day", "month")


class UTCDateTimeField(serializers.DateTimeField):
    """An ISO 8601 time (or a date, meaning its midnight); without an offset it is UTC; always returned in UTC."""

    def __init__(self, **kwargs):
        super().__init__(default_timezone=UTC, **kwargs)

    def to_internal_value(self, value):
        if isinstance(value, str) and len(value) == 10 and (day := _parse_date(value)) is not None:
            return datetime.combine(day, time.min, tzinfo=UTC)
        try:
            parsed = super().to_internal_value(value)
            return parsed.astimezone(UTC)
        except (OverflowError, ValueError):
            # A time whose offset moves it out of the representable years (e.g. 0001-01-01T00:00+05:00).
            raise serializers.ValidationError(f"{value!r} is out of the supported range of times.") from None


def _parse_date(value: str) -> date | None:
    try:
        return parse_date(value)
    except ValueError:
        return None


def current_month_start() -> datetime:
    now = timezone.now().astimezone(UTC)
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


class RangeQuerySerializer(serializers.Serializer):
    """`start` (inclusive) and `end` (exclusive), at most API_MAX_RANGE_DAYS apart."""

    start = UTCDateTimeField(required=False, help_text="Inclusive, ISO 8601 (UTC unless an offset is given). Default: the start of the current calendar month.")
    end = UTCDateTimeField(required=False, help_text="Exclusive, ISO 8601 (UTC unless an offset is given). Default: now.")

    def validate(self, attrs):
        end = attrs.get("end") or timezone.now().astimezone(UTC)
        start = attrs.get("start") or min(current_month_start(), end)
        if end <= start:
            raise serializers.ValidationError({"end": f"end ({end:%Y-%m-%dT%H:%M:%SZ}) must be after start ({start:%Y-%m-%dT%H:%M:%SZ})."})
        limit = settings.API_MAX_RANGE_DAYS
        if end - start > timedelta(days=limit):
            raise serializers.ValidationError(
                {"end": f"The range from start to end is {(end - start).days} days; the limit is {limit} days (API_MAX_RANGE_DAYS)."}
            )
        attrs["start"], attrs["end"] = start, end
        return attrs


class MetricCodesField(serializers.ListField):
    child = serializers.CharField(max_length=64)

    def to_internal_value(self, data):
        codes = []
        for item in super().to_internal_value(data):
            # `metric=a,b` and `metric=a&metric=b` both work.
            codes.extend(code.strip() for code in item.split(",") if code.strip())
        return codes


class UsageQuerySerializer(RangeQuerySerializer):
    granularity = serializers.ChoiceField(
        choices=GRANULARITIES, default="day", help_text="Bucket size: hour, day or month (UTC)."
    )
    metric = MetricCodesField(
        required=False, help_text="Metric codes (repeat the parameter or separate with commas); default: every metric."
    )

    def validate_metric(self, codes):
        known = {m.code: m for m in Metric.objects.filter(code__in=codes)}
        unknown = [code for code in codes if code not in known]
        if unknown:
            raise serializers.ValidationError(f"Unknown metric(s): {', '.join(sorted(set(unknown)))}.")
        return [known[code] for code in dict.fromkeys(codes)]

    def validate(self, attrs):
        attrs = super().validate(attrs)
        if not attrs.get("metric"):
            attrs["metric"] = list(Metric.objects.all())
        distinct = [m.code for m in attrs["metric"]
                    if m.aggregation in (Aggregation.UNIQUE_COUNT, Aggregation.LATEST)]
        if distinct and attrs["granularity"] != "hour":
            _check_whole_buckets(attrs["start"], attrs["end"], attrs["granularity"], distinct)
        return attrs


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _check_calendar(start: datetime, end: datetime) -> None:
    """Whole-bucket arithmetic (the next hour, the next month) must stay within datetime's years."""
    try:
        bucket_end(bucket_start(hour_bounds(start, end)[1], "month"), "month")
    except (OverflowError, ValueError):
        raise serializers.ValidationError({"end": f"{_iso(end)} is out of the supported range of times."}) from None


def _check_whole_buckets(start: datetime, end: datetime, unit: str, codes: list[str]) -> None:
    """A unique_count metric's day or month bucket is its distinct count over the whole bucket, which
    the usage sync keeps; a range that cuts its first or last bucket would need a scan of the lake per
    request, so it is refused with what to ask instead (a range ending now covers its last bucket:
    nothing comes after now)."""
    _check_calendar(start, end)
    first, last = hour_bounds(start, end)
    if last <= first:
        return
    names = ", ".join(codes)
    head = bucket_start(first, unit)
    label = "%Y-%m-%d" if unit == "day" else "%Y-%m"
    advice = f"use granularity=hour, or leave {names} out of metric"
    if head != first:
        raise serializers.ValidationError({"start": (
            f"{names} count distinct values, so their {unit} buckets are whole UTC {unit}s: start "
            f"{_iso(start)} cuts the {unit} {head:{label}}. Start at {_iso(head)} or "
            f"{_iso(bucket_end(head, unit))}, or {advice}.")})
    tail = bucket_start(last - HOUR, unit)
    if not covers_to_bucket_end(last, bucket_end(tail, unit)):
        raise serializers.ValidationError({"end": (
            f"{names} count distinct values, so their {unit} buckets are whole UTC {unit}s: end "
            f"{_iso(end)} cuts the {unit} {tail:{label}}. End at {_iso(tail)} or "
            f"{_iso(bucket_end(tail, unit))} (or leave end out: now), or {advice}.")})


class CurrentUsageQuerySerializer(serializers.Serializer):
    metric = MetricCodesField(required=False, help_text="Metric codes; default: every metric.")

    validate_metric = UsageQuerySerializer.validate_metric

    def validate(self, attrs):
        if not attrs.get("metric"):
            attrs["metric"] = list(Metric.objects.all())
        return attrs


class TopTenantsQuerySerializer(RangeQuerySerializer):
    metric = serializers.SlugField(help_text="The metric to rank tenants by.")
    limit = serializers.IntegerField(default=10, min_value=1, max_value=1000, help_text="How many tenants.")

    def validate_metric(self, code):
        metric = Metric.objects.filter(code=code).first()
        if metric is None:
            raise serializers.ValidationError(f"Unknown metric {code!r}.")
        return metric

    def validate(self, attrs):
        attrs = super().validate(attrs)
        _check_calendar(attrs["start"], attrs["end"])
        return attrs


class InvoiceQuerySerializer(serializers.Serializer):
    status = serializers.ChoiceField(
        choices=InvoiceStatus.choices, required=False,
        help_text="Only invoices in this status (tenants never see drafts: they are not final).",
    )
    start = UTCDateTimeField(required=False, help_text="Only invoices whose period starts at or after this time.")
    end = UTCDateTimeField(required=False, help_text="Only invoices whose period starts before this time.")

    def validate(self, attrs):
        if attrs.get("start") and attrs.get("end") and attrs["end"] <= attrs["start"]:
            raise serializers.ValidationError({"end": "end must be after start."})
        return attrs


def validated(serializer_class, request, **kwargs) -> dict:
    """The request's query parameters validated by `serializer_class` (ValidationError -> 400)."""
    serializer = serializer_class(data=request.query_params, **kwargs)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


# The usage API's query, read without the serializer when it is plainly well formed (usage_query).
_PLAIN_PARAMETERS = frozenset({"start", "end", "granularity", "metric", "page", "page_size", "format", "tenant"})
_PLAIN_DAY = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
_PLAIN_MOMENT = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})Z")
_PLAIN_CODES = re.compile(r"[A-Za-z0-9_,-]{1,64}")


def usage_query(request) -> dict:
    """``validated(UsageQuerySerializer, request)``, the usage API's parameters, every request of which asks it.

    A query that is plainly well formed (only the parameters the endpoint reads, dates as 2026-10-01 or
    2026-10-01T00:00:00Z, known metric codes, a range the checks accept) is read here for a tenth of the
    serializer's CPU, to the same values; anything else goes through the serializer, whose values and 400s are the
    reference (a query that fails a check here is asked of it again, for its message)."""
    params = _plain_usage_query(request.query_params)
    return params if params is not None else validated(UsageQuerySerializer, request)


def _plain_moment(query, name: str):
    """``name``'s time as UTCDateTimeField reads it; None when absent; False when not plain."""
    values = query.getlist(name)
    if not values:
        return None
    if len(values) != 1:
        return False
    try:
        if match := _PLAIN_DAY.fullmatch(values[0]):
            return datetime(*map(int, match.groups()), tzinfo=UTC)
        if match := _PLAIN_MOMENT.fullmatch(values[0]):
            return datetime(*map(int, match.groups()), tzinfo=UTC)
    except ValueError:  # 2026-02-30, hour 24: the serializer says what is wrong
        return False
    return False


def _plain_usage_query(query) -> dict | None:
    if not _PLAIN_PARAMETERS.issuperset(query.keys()):
        return None
    start, end = _plain_moment(query, "start"), _plain_moment(query, "end")
    if start is False or end is False:
        return None
    granularity = query.getlist("granularity") or ["day"]
    if len(granularity) != 1 or granularity[0] not in GRANULARITIES:
        return None
    granularity = granularity[0]
    raw_codes = query.getlist("metric")
    if raw_codes:
        if not all(_PLAIN_CODES.fullmatch(item) for item in raw_codes):
            return None
        codes = [code for item in raw_codes for code in item.split(",") if code]
        if not codes:
            return None
        known = metrics_by_code(codes=codes)
        if len(known) != len(set(codes)):
            return None  # an unknown metric: the serializer names it
        metrics = [known[code] for code in dict.fromkeys(codes)]
    else:
        metrics = list(metrics_by_code().values())
    end = end or timezone.now().astimezone(UTC)
    start = start or min(current_month_start(), end)
    if end <= start or end - start > timedelta(days=settings.API_MAX_RANGE_DAYS):
        return None
    distinct = [m.code for m in metrics if m.aggregation in (Aggregation.UNIQUE_COUNT, Aggregation.LATEST)]
    if distinct and granularity != "hour":
        try:
            _check_whole_buckets(start, end, granularity, distinct)
        except serializers.ValidationError:
            return None
    return {"start": start, "end": end, "granularity": granularity, "metric": metrics}


class EventQuerySerializer(serializers.Serializer):
    code = serializers.CharField(required=False, max_length=100, help_text="Only events of this code.")
    transaction_id = serializers.CharField(required=False, max_length=255, help_text="Only this transaction id.")
    since = UTCDateTimeField(required=False, help_text="Events whose timestamp is at or after this time (ISO 8601).")
    until = UTCDateTimeField(required=False, help_text="Events whose timestamp is before this time (ISO 8601).")


class EventRejectionQuerySerializer(serializers.Serializer):
    transaction_id = serializers.CharField(required=False, max_length=255, help_text="Only this transaction id.")
