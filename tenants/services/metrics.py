"""Metrics of the catalog: create and edit one field by field (as the admin does), validated as a metric document."""

from decimal import Decimal

from django.db import transaction

from metering.pricing.documents import DocumentError, parse_metric
from portal.kernel import ApplicationError
from tenants.models import Metric

FIELDS = ("code", "name", "event", "aggregation", "field", "filters", "divisor", "unit")


def _validated(metric: Metric) -> None:
    """Refuse a metric that is not a valid metric document (docs/plans.md), naming every error."""
    try:
        parse_metric(metric.raw_document())
    except DocumentError as exc:
        raise ApplicationError(str(exc), {"errors": exc.errors}) from exc


def _assign(metric: Metric, values: dict) -> None:
    unknown = set(values) - set(FIELDS)
    if unknown:
        raise ApplicationError(f"Not a field of a metric: {', '.join(sorted(unknown))}.")
    for key, value in values.items():
        setattr(metric, key, value)
    # Empty form fields arrive as None; the metric keeps them as "nothing".
    metric.field = metric.field or ""
    metric.event = metric.event or ""
    metric.unit = metric.unit or ""
    metric.filters = metric.filters or {}
    if metric.divisor is None:
        metric.divisor = Decimal(1)


def metric_create(*, code: str, name: str, aggregation: str, **values) -> Metric:
    """A new metric; `values` are its other fields (event, field, filters, divisor, unit)."""
    metric = Metric()
    _assign(metric, {"code": code, "name": name, "aggregation": aggregation, **values})
    _validated(metric)
    if Metric.objects.filter(code=metric.code).exists():
        raise ApplicationError(f"A metric with the code {metric.code!r} already exists.")
    metric.save()
    return metric


def metric_update(*, metric: Metric, **values) -> Metric:
    """Change a metric's fields. Its code is how plan documents name it: it cannot change while a plan charges it."""
    with transaction.atomic():
        locked = Metric.objects.select_for_update().get(pk=metric.pk)
        old_code = locked.code
        _assign(locked, values)
        _validated(locked)
        if locked.code != old_code:
            if locked.charges.exists():
                raise ApplicationError(
                    f"Metric {old_code} is charged by a plan, whose document names it by its code: the code cannot "
                    "change (make a new metric instead)."
                )
            if Metric.objects.filter(code=locked.code).exclude(pk=locked.pk).exists():
                raise ApplicationError(f"A metric with the code {locked.code!r} already exists.")
        locked.save()
    return locked
