"""Usage reported to AWS Marketplace (BatchMeterUsage): one record per customer, dimension and hour.

The unique (customer, dimension, hour) is AWS's own key of a usage record: a record is written once, with its
quantity, and every retry sends that same record, so AWS never counts an hour twice (docs/marketplace.md)."""

from django.db import models
from django.db.models import Q


class MarketplaceRecordStatus(models.TextChoices):
    PENDING = "pending", "Pending (to send, or to retry)"
    ACCEPTED = "accepted", "Accepted by AWS"
    DUPLICATE = "duplicate", "Refused: AWS holds another quantity for this hour"
    NOT_SUBSCRIBED = "not_subscribed", "Refused: customer not subscribed"
    FAILED = "failed", "Failed (no more attempts)"


class MarketplaceUsageRecord(models.Model):
    customer = models.ForeignKey("tenants.MarketplaceCustomer", on_delete=models.PROTECT, related_name="usage_records")
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.PROTECT, related_name="marketplace_usage_records")
    product_code = models.CharField(max_length=255)
    dimension = models.CharField(max_length=100)
    metric_code = models.CharField(max_length=64, help_text="The metric whose hourly quantity this reports.")
    hour = models.DateTimeField(help_text="Start of the hour (UTC): the record's Timestamp.")
    quantity = models.PositiveBigIntegerField(help_text="The hour's quantity in the metric's unit, rounded up "
                                                       "to a whole number (AWS takes whole quantities).")
    status = models.CharField(max_length=16, choices=MarketplaceRecordStatus.choices,
                              default=MarketplaceRecordStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    metering_record_id = models.CharField(max_length=100, blank=True, help_text="AWS's MeteringRecordId.")
    last_error = models.TextField(blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-hour", "customer", "dimension"]
        constraints = [
            # AWS's key of a usage record: written once, so a retry sends the same record and never a second one.
            models.UniqueConstraint(fields=["customer", "dimension", "hour"], name="marketplace_record_once_per_hour"),
            models.CheckConstraint(condition=Q(status__in=MarketplaceRecordStatus.values),
                                   name="marketplace_record_status_known"),
        ]
        indexes = [models.Index(fields=["status", "hour"], name="marketplace_record_to_send")]

    def __str__(self):
        return f"{self.customer.customer_identifier} {self.dimension} {self.hour:%Y-%m-%d %H:00} = {self.quantity}"
