"""Events posted to ``POST /api/v1/events/``: the exactly-once receipts and the recent rejections.

``EventReceipt`` is the record that makes ingestion exactly once, permanently: one row per accepted
(tenant, transaction_id), enforced by a unique constraint, kept forever (a retry a month later is still
a duplicate). It keeps what the "see what arrived" listings show (code, timestamp, when it arrived),
not the properties: those are in the lake's ``events`` table.

``EventRejection`` is an event refused by validation, with the reason and the first bytes of what was
sent, for the tenant and the provider to see why. Kept EVENTS_REJECTIONS_KEEP_DAYS days: the periodic
task ``metering.tasks.prune_event_rejections`` (in the beat schedules) deletes older rows.
"""

from django.db import models

PAYLOAD_KEPT_CHARS = 1000


class EventReceipt(models.Model):
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.PROTECT, related_name="event_receipts",
                               db_index=False)  # the unique (tenant, transaction_id) index serves tenant lookups
    transaction_id = models.CharField(max_length=255)
    code = models.CharField(max_length=100)
    timestamp = models.DateTimeField(help_text="When the event happened (the client's timestamp, UTC).")
    received_at = models.DateTimeField(help_text="When the portal accepted it.")

    class Meta:
        ordering = ["-received_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "transaction_id"], name="event_receipt_once_per_tenant"),
        ]
        indexes = [models.Index(fields=["tenant", "-received_at"], name="event_receipt_recent")]

    def __str__(self):
        return f"{self.tenant_id} {self.transaction_id} {self.code}"


class EventRejection(models.Model):
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="event_rejections",
                               null=True, blank=True, help_text="None when the event named no tenant the caller may use.")
    index = models.PositiveIntegerField(help_text="The event's position in its request (or its file's line).")
    transaction_id = models.CharField(max_length=255, blank=True)
    error = models.TextField()
    payload = models.TextField(blank=True, help_text=f"The event as sent, its first {PAYLOAD_KEPT_CHARS} characters.")
    received_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-received_at", "-id"]
        indexes = [models.Index(fields=["tenant", "-received_at"], name="event_rejection_recent")]

    def __str__(self):
        return f"{self.tenant_id} #{self.index}: {self.error}"
