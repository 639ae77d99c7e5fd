"""Webhooks: endpoints that receive events, the outbox of events, one delivery per (event, endpoint), its attempts.

How delivery works is written in tenants/webhooks/delivery.py; the event types in tenants/webhooks/registry.py.
"""

from django.conf import settings
from django.db import models
from django.db.models import F, Q


class WebhookEndpoint(models.Model):
    """A URL that receives signed events: a tenant's (its own tenant's events) or the provider's (tenant null:
    every tenant's events, and the provider-only types)."""

    tenant = models.ForeignKey("tenants.Tenant", null=True, blank=True, on_delete=models.CASCADE,
                               related_name="webhook_endpoints",
                               help_text="Empty: a provider endpoint, which receives the events of every tenant.")
    url = models.URLField(max_length=2000, help_text="http(s) URL; private and loopback addresses are refused "
                                                     "unless WEBHOOKS_ALLOW_PRIVATE is on.")
    description = models.CharField(max_length=200, blank=True)
    event_types = models.JSONField(help_text="The event types sent here (a non-empty list; see docs/webhooks.md).")
    # The signing secret (whsec_…), Fernet-encrypted with a key derived from SECRET_KEY: shown once, when made.
    secret_encrypted = models.TextField(editable=False)
    # After a rotation the previous secret still signs (a second signature) until this time, so a receiver
    # can switch over without losing events.
    previous_secret_encrypted = models.TextField(blank=True, editable=False)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    enabled = models.BooleanField(default=True)
    disabled_at = models.DateTimeField(null=True, blank=True)
    disabled_reason = models.CharField(max_length=300, blank=True)
    failing_since = models.DateTimeField(null=True, blank=True,
                                         help_text="First failed delivery since the last success (none: healthy).")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["pk"]
        constraints = [
            models.CheckConstraint(condition=Q(enabled=True) | Q(disabled_at__isnull=False),
                                   name="webhook_endpoint_disabled_has_time"),
            models.CheckConstraint(condition=Q(url__startswith="http://") | Q(url__startswith="https://"),
                                   name="webhook_endpoint_url_http"),
        ]

    def __str__(self):
        return f"{self.tenant.slug if self.tenant_id else 'provider'} → {self.url}"


class WebhookEvent(models.Model):
    """The outbox: one row per event, written in the transaction of the change it reports."""

    public_id = models.CharField(max_length=40, unique=True, editable=False, help_text="evt_…")
    type = models.CharField(max_length=64)
    tenant = models.ForeignKey("tenants.Tenant", null=True, blank=True, on_delete=models.CASCADE,
                               related_name="webhook_events")
    # The exact body sent on every attempt (JSON text, so its bytes never change between retries).
    payload = models.TextField(help_text='What is sent: {"type", "timestamp", "data"} as JSON.')
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["tenant", "type"], name="webhook_event_tenant_type")]

    def __str__(self):
        return f"{self.type} {self.public_id}"


class WebhookDeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"  # waiting for its (next) attempt, or being attempted under a lease
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"  # every attempt failed, or its endpoint was disabled


class WebhookDelivery(models.Model):
    """One event to one endpoint. Its webhook-id (msg_…) is fixed at creation and sent on every attempt."""

    event = models.ForeignKey(WebhookEvent, on_delete=models.CASCADE, related_name="deliveries")
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    webhook_id = models.CharField(max_length=40, unique=True, editable=False, help_text="msg_…: the webhook-id header.")
    status = models.CharField(max_length=10, choices=WebhookDeliveryStatus.choices,
                              default=WebhookDeliveryStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0, help_text="Attempts since it was made (or last resent).")
    attempts_ever = models.PositiveIntegerField(default=0, editable=False,
                                                help_text="Attempts in all, resends included (numbers the attempt log).")
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # A worker claims an attempt by setting a lease (a conditional UPDATE): no other worker can claim it until
    # the lease ends, and a killed worker's lease simply ends, so the delivery is attempted again.
    lease_token = models.CharField(max_length=32, blank=True, editable=False)
    lease_until = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    resends = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name_plural = "webhook deliveries"
        constraints = [
            models.UniqueConstraint(fields=["event", "endpoint"], name="webhook_delivery_one_per_endpoint"),
            models.CheckConstraint(condition=Q(status__in=WebhookDeliveryStatus.values),
                                   name="webhook_delivery_status_known"),
            models.CheckConstraint(condition=~Q(status="succeeded") | Q(delivered_at__isnull=False),
                                   name="webhook_delivery_succeeded_has_time"),
            models.CheckConstraint(condition=Q(status="pending") | Q(next_attempt_at__isnull=True),
                                   name="webhook_delivery_done_not_due"),
        ]
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="webhook_delivery_due")]

    def __str__(self):
        return f"{self.webhook_id} ({self.status})"


class WebhookAttempt(models.Model):
    """One HTTP attempt of a delivery: written when claimed, completed when the answer (or the error) came;
    an attempt left without an end is one whose worker died."""

    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="attempt_log")
    number = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    succeeded = models.BooleanField(default=False)
    status_code = models.PositiveIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    response_excerpt = models.TextField(blank=True, help_text="The first bytes of the answer.")
    error = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["delivery", "number"]
        constraints = [
            models.UniqueConstraint(fields=["delivery", "number"], name="webhook_attempt_number_unique"),
            models.CheckConstraint(condition=Q(finished_at__isnull=True) | Q(finished_at__gte=F("started_at")),
                                   name="webhook_attempt_ends_after_start"),
        ]

    def __str__(self):
        return f"{self.delivery.webhook_id} #{self.number}"
