"""Outgoing email, one row per message: to whom, about what, and how its delivery went (sent, retrying, failed)."""

from django.conf import settings
from django.contrib.contenttypes.fields import GenericForeignKey
from django.contrib.contenttypes.models import ContentType
from django.db import models
from django.db.models import Q


class EmailKind(models.TextChoices):
    INVOICE = "invoice", "Invoice"
    SIGNUP_CODE = "signup_code", "Signup verification code"
    SIGNUP_NOTICE = "signup_notice", "Signup notice to an existing account"
    TEMPORARY_PASSWORD = "temporary_password", "Temporary password"
    ALERT = "alert", "Usage or spend alert"
    STAFF_NOTICE = "staff_notice", "Notice to staff (sync failing, pipeline late)"
    INVOICE_REMINDER = "invoice_reminder", "Payment reminder"
    WEBHOOK_DISABLED = "webhook_disabled", "Webhook endpoint disabled (to staff)"
    SUBSCRIPTION_CHANGE = "subscription_change", "Subscription change confirmation"


# Kinds whose body holds a secret: stored encrypted, wiped once sent, superseded by a newer one.
SECRET_KINDS = (EmailKind.SIGNUP_CODE, EmailKind.TEMPORARY_PASSWORD)


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"  # queued, or waiting for its next attempt
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"  # gave up: the server refused it, or every attempt failed
    CANCELLED = "cancelled", "Cancelled"  # no longer worth sending (superseded, expired, invoice voided)


class EmailDelivery(models.Model):
    """One email. It is written in the transaction of what causes it (a finalized invoice, a signup) and
    sent by a Celery worker after commit, so a mail server outage delays it instead of losing it."""

    kind = models.CharField(max_length=24, choices=EmailKind.choices)
    recipient = models.EmailField()
    subject = models.CharField(max_length=300)
    body = models.TextField(
        blank=True, help_text="Plain text; for secret kinds a Fernet token (key derived from SECRET_KEY), wiped once sent."
    )
    secret = models.BooleanField(default=False, help_text="The body holds a secret (a code, a password): never shown.")
    # What the email is about (an invoice, a signup request, a tenant user): a generic reference, since
    # email is sent by several apps and this one must not depend on them.
    about_type = models.ForeignKey(ContentType, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    about_id = models.PositiveBigIntegerField(null=True, blank=True)
    about = GenericForeignKey("about_type", "about_id")
    tenant = models.ForeignKey("tenants.Tenant", null=True, blank=True, on_delete=models.SET_NULL, related_name="emails")
    status = models.CharField(max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0, help_text="Attempts since it was queued (or last resent).")
    last_error = models.TextField(blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True, help_text="When a pending email is due.")
    expires_at = models.DateTimeField(null=True, blank=True, help_text="A secret past this is useless: not sent, wiped.")
    sent_at = models.DateTimeField(null=True, blank=True)
    resends = models.PositiveIntegerField(default=0)
    resent_at = models.DateTimeField(null=True, blank=True)
    resent_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                  related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name = "email delivery"
        verbose_name_plural = "email deliveries"
        constraints = [
            models.CheckConstraint(condition=Q(status__in=DeliveryStatus.values), name="email_status_known"),
            models.CheckConstraint(condition=Q(kind__in=EmailKind.values), name="email_kind_known"),
            models.CheckConstraint(condition=~Q(status="sent") | Q(sent_at__isnull=False), name="email_sent_has_time"),
            models.CheckConstraint(condition=Q(secret=False) | Q(kind__in=SECRET_KINDS), name="email_secret_kinds"),
            # An invoice is emailed once (a Resend reuses its row).
            models.UniqueConstraint(
                fields=["about_type", "about_id"], condition=Q(kind="invoice"), name="email_one_per_invoice"
            ),
        ]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="email_status_due"),
            models.Index(fields=["about_type", "about_id"], name="email_about"),
        ]

    def __str__(self):
        return f"{self.get_kind_display()} to {self.recipient} ({self.status})"
