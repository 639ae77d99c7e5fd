"""Metrics: what is counted in the access-log table or in the posted events, as a metric document
(docs/plans.md) defines it.

Part of the catalog (metrics, plans and their charges): who pays for what. The table keeps the name it had
when the model lived in the metering app (``metering_metric``): moving the model moved no data.
"""

from decimal import Decimal

from django.db import models
from django.db.models import Q


class Aggregation(models.TextChoices):
    COUNT = "count", "count"
    SUM = "sum", "sum"
    MAX = "max", "max"
    UNIQUE_COUNT = "unique_count", "unique count"
    LATEST = "latest", "latest"  # the last value reported in the period (events only: a gauge such as seats)


class Metric(models.Model):
    code = models.SlugField(max_length=64, unique=True, help_text="Stable identifier used by plan charges.")
    name = models.CharField(max_length=200)
    event = models.CharField(max_length=100, blank=True, default="",
                             help_text="The code of the posted events it counts; empty for the access-log table.")
    aggregation = models.CharField(max_length=20, choices=Aggregation.choices)
    field = models.CharField(max_length=75, blank=True,
                             help_text="Column of the access-log table, or properties.NAME for an event's "
                                       "property NAME; empty for count.")
    filters = models.JSONField(default=dict, blank=True)
    divisor = models.DecimalField(max_digits=24, decimal_places=6, default=Decimal("1"))
    unit = models.CharField(max_length=40, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "metering_metric"
        ordering = ["code"]
        constraints = [
            models.CheckConstraint(
                condition=Q(aggregation__in=Aggregation.values), name="metric_aggregation_known"
            ),
            models.CheckConstraint(condition=Q(divisor__gt=0), name="metric_divisor_positive"),
            models.CheckConstraint(
                condition=(Q(aggregation=Aggregation.COUNT) & Q(field="")) | (~Q(aggregation=Aggregation.COUNT) & ~Q(field="")),
                name="metric_field_iff_not_count",
            ),
            models.CheckConstraint(condition=~Q(aggregation=Aggregation.LATEST) | ~Q(event=""),
                                   name="metric_latest_needs_event",
                                   violation_error_message="Aggregation 'latest' is for metrics over posted "
                                                           "events: name the event's code."),
            models.CheckConstraint(condition=Q(event="") | Q(field="") | Q(field__startswith="properties."),
                                   name="metric_event_field_is_property",
                                   violation_error_message="The field of a metric over posted events must name "
                                                           "a property of the event: 'properties.<name>'."),
        ]

    def __str__(self):
        return self.code

    def to_document(self) -> dict:
        """The metric in its document form (docs/plans.md) (canonical, so export re-imports unchanged)."""
        from metering.pricing.documents import metric_to_document, parse_metric

        return metric_to_document(parse_metric(self.raw_document()))

    def raw_document(self) -> dict:
        doc = {"code": self.code, "name": self.name, "aggregation": self.aggregation}
        if self.event:
            doc["event"] = self.event
        if self.field:
            doc["field"] = self.field
        if self.filters:
            doc["filters"] = self.filters
        if self.divisor != 1:
            doc["divisor"] = format(self.divisor.normalize(), "f")
        if self.unit:
            doc["unit"] = self.unit
        return doc
