"""Pending self-service signups: a request waits for its email to be verified, then is provisioned."""

from django.db import models
from django.db.models import Q


class SignupStatus(models.TextChoices):
    PENDING = "pending", "Pending verification"
    VERIFIED = "verified", "Verified, provisioning"
    PROVISIONED = "provisioned", "Provisioned"
    FAILED = "failed", "Provisioning failed"
    EXPIRED = "expired", "Expired"


OPEN_STATUSES = (SignupStatus.PENDING, SignupStatus.VERIFIED, SignupStatus.FAILED)


class SignupRequest(models.Model):
    """One signup. The password is kept Fernet-encrypted (key derived from SECRET_KEY) only until the
    identity user is created, because Cognito needs the password itself, not a hash; it is wiped on
    provisioning and when the request expires."""

    company = models.CharField(max_length=200)
    slug = models.CharField(max_length=63, help_text="The tenant's id (custom:tenant_id) to be.")
    email = models.EmailField(help_text="Stored lowercased.")
    plan_version = models.ForeignKey("tenants.PlanVersion", on_delete=models.PROTECT, related_name="+")
    password_encrypted = models.TextField(blank=True, editable=False)
    code_hash = models.CharField(max_length=200, blank=True, editable=False)
    code_expires_at = models.DateTimeField(null=True, blank=True)
    verify_attempts = models.PositiveIntegerField(default=0)
    status = models.CharField(max_length=12, choices=SignupStatus.choices, default=SignupStatus.PENDING)
    error = models.TextField(blank=True)
    provision_attempts = models.PositiveIntegerField(default=0)
    ip = models.GenericIPAddressField(null=True, blank=True)
    tenant = models.ForeignKey("tenants.Tenant", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    owner = models.ForeignKey("tenants.TenantUser", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    verified_at = models.DateTimeField(null=True, blank=True)
    provisioned_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # A double submit finds the open request instead of making a second one.
            models.UniqueConstraint(fields=["email"], condition=Q(status__in=OPEN_STATUSES), name="signup_one_open_per_email"),
            models.CheckConstraint(condition=Q(status__in=SignupStatus.values), name="signup_status_known"),
        ]

    def __str__(self):
        return f"{self.email} → {self.slug} ({self.status})"
