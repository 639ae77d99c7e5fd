"""Alerts: thresholds a tenant (or staff, for any tenant) sets on its usage or its projected bill, and what
told the provider's staff that the pipeline is in trouble.

``UsageAlert`` is one threshold: on a metric's quantity in the current billing period (after the metric's
divisor, as invoices show it) or on the projected bill's total (in the subscription's currency), told by
email, webhook or both. ``UsageAlertFiring`` is the alert fired for one period: a unique (alert, period)
constraint makes it fire once per period, whatever the number of syncs or workers that see the threshold
crossed (the first insert wins; the others find the row and tell nobody).

``StaffNotice`` is one message to staff about the pipeline (a failing sync, a late pipeline), unique per
(kind, key): a sync failing every five minutes tells staff once per failing streak, a stalled pipeline
once per stall.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q


class AlertKind(models.TextChoices):
    USAGE = "usage", "Usage of a metric"
    SPEND = "spend", "Projected bill"


class AlertChannel(models.TextChoices):
    EMAIL = "email", "Email"
    WEBHOOK = "webhook", "Webhook"
    BOTH = "both", "Email and webhook"


class UsageAlert(models.Model):
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="usage_alerts")
    kind = models.CharField(max_length=10, choices=AlertKind.choices)
    metric = models.ForeignKey("tenants.Metric", null=True, blank=True, on_delete=models.CASCADE,
                               related_name="usage_alerts", help_text="The metric (usage alerts only).")
    threshold = models.DecimalField(
        max_digits=24, decimal_places=6,
        help_text="Fires when the period's quantity (after the metric's divisor) or the projected bill's total "
                  "reaches it.")
    channel = models.CharField(max_length=10, choices=AlertChannel.choices, default=AlertChannel.EMAIL)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["tenant", "kind", "threshold"]
        constraints = [
            models.CheckConstraint(condition=Q(kind__in=AlertKind.values), name="usage_alert_kind_known"),
            models.CheckConstraint(condition=Q(channel__in=AlertChannel.values), name="usage_alert_channel_known"),
            models.CheckConstraint(condition=Q(threshold__gt=0), name="usage_alert_threshold_positive",
                                   violation_error_message="A threshold is above 0."),
            models.CheckConstraint(
                condition=(Q(kind=AlertKind.USAGE) & Q(metric__isnull=False))
                | (Q(kind=AlertKind.SPEND) & Q(metric__isnull=True)),
                name="usage_alert_metric_iff_usage",
                violation_error_message="A usage alert names its metric; a spend alert names none."),
            models.UniqueConstraint(fields=["tenant", "metric", "threshold"], condition=Q(kind=AlertKind.USAGE),
                                    name="usage_alert_once_per_metric_threshold",
                                    violation_error_message="This tenant already has that threshold on that metric."),
            models.UniqueConstraint(fields=["tenant", "threshold"], condition=Q(kind=AlertKind.SPEND),
                                    name="usage_alert_once_per_spend_threshold",
                                    violation_error_message="This tenant already has that spend threshold."),
        ]

    def __str__(self):
        what = self.metric.code if self.kind == AlertKind.USAGE and self.metric_id else "projected bill"
        return f"{self.tenant_id}: {what} ≥ {self.threshold.normalize():f}"

    @property
    def emails(self) -> bool:
        return self.channel in (AlertChannel.EMAIL, AlertChannel.BOTH)

    @property
    def webhooks(self) -> bool:
        return self.channel in (AlertChannel.WEBHOOK, AlertChannel.BOTH)


class UsageAlertFiring(models.Model):
    alert = models.ForeignKey(UsageAlert, on_delete=models.CASCADE, related_name="firings")
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    value = models.DecimalField(max_digits=30, decimal_places=6, help_text="What was seen: quantity or total.")
    currency = models.CharField(max_length=3, blank=True, help_text="The total's currency (spend alerts).")
    fired_at = models.DateTimeField()

    class Meta:
        ordering = ["-fired_at"]
        constraints = [
            models.UniqueConstraint(fields=["alert", "period_start"], name="usage_alert_fires_once_per_period"),
        ]

    def __str__(self):
        return f"{self.alert} fired {self.fired_at:%Y-%m-%d %H:%M} ({self.value.normalize():f})"


class StaffNoticeKind(models.TextChoices):
    SYNC_FAILED = "sync_failed", "Usage sync failed"
    PIPELINE_LATE = "pipeline_late", "Pipeline late"


class StaffNotice(models.Model):
    kind = models.CharField(max_length=20, choices=StaffNoticeKind.choices)
    key = models.CharField(max_length=100, help_text="What makes it one notice: the streak or the stall it is about.")
    message = models.TextField()
    sent_at = models.DateTimeField()

    class Meta:
        ordering = ["-sent_at"]
        constraints = [
            models.CheckConstraint(condition=Q(kind__in=StaffNoticeKind.values), name="staff_notice_kind_known"),
            models.UniqueConstraint(fields=["kind", "key"], name="staff_notice_once_per_key"),
        ]

    def __str__(self):
        return f"{self.get_kind_display()} ({self.sent_at:%Y-%m-%d %H:%M})"
