"""Pending self-service signups: a request waits for its email to be verified, then is provisioned."""

from django.db import models
from django.db.models import Q

from tenants.models.commercial import validate_time_zone


class SignupStatus(models.TextChoices):
    PENDING = "pending", "Pending verification"
    VERIFIED = "verified", "Verified, provisioning"
    PROVISIONED = "provisioned", "Provisioned"
    FAILED = "failed", "Provisioning failed"
    EXPIRED = "expired", "Expired"


OPEN_STATUSES = (SignupStatus.PENDING, SignupStatus.VERIFIED, SignupStatus.FAILED)


class SignupRequest(models.Model):
    """One signup, started in one browser. The password is kept Fernet-encrypted (key derived from SECRET_KEY)
    only until the identity user is created, because Cognito needs the password itself, not a hash; it is
    wiped on provisioning and when the request expires.

    Each browser's submission is its own request: only the browser whose session holds the token behind
    `browser_key` can verify it, so a second signup for the same email never touches this one. A request
    for an email that already has an account gets no code (empty `code_hash`): its mailbox owner is told
    instead, and nothing can verify it, while the page shown looks the same as for any other email.
    """

    company = models.CharField(max_length=200)
    slug = models.CharField(max_length=63, help_text="The tenant's id (custom:tenant_id) to be.")
    email = models.EmailField(help_text="Stored lowercased.")
    plan_version = models.ForeignKey("tenants.PlanVersion", on_delete=models.PROTECT, related_name="+")
    time_zone = models.CharField(max_length=64, default="UTC", validators=[validate_time_zone],
                                 help_text="The tenant's time zone to be (IANA name).")
    coupon = models.ForeignKey("tenants.Coupon", null=True, blank=True, on_delete=models.PROTECT, related_name="+",
                               help_text="The coupon whose code was entered: applied to the subscription when made.")
    password_encrypted = models.TextField(blank=True, editable=False)
    code_hash = models.CharField(max_length=200, blank=True, editable=False)
    code_expires_at = models.DateTimeField(null=True, blank=True)
    verify_attempts = models.PositiveIntegerField(default=0, help_text="Wrong codes entered, in any state.")
    browser_key = models.CharField(
        max_length=64, blank=True, editable=False,
        help_text="Hash of the token in the session of the browser that started the signup: only it can verify.",
    )
    status = models.CharField(max_length=12, choices=SignupStatus.choices, default=SignupStatus.PENDING)
    error = models.TextField(blank=True)
    provision_attempts = models.PositiveIntegerField(default=0)
    ip = models.GenericIPAddressField(null=True, blank=True)
    tenant = models.ForeignKey("tenants.Tenant", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    owner = models.ForeignKey("tenants.TenantUser", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    marketplace_customer = models.ForeignKey(
        "tenants.MarketplaceCustomer", null=True, blank=True, on_delete=models.SET_NULL, related_name="signups",
        help_text="Set when the signup started on the AWS Marketplace landing: its tenant is collected through AWS.")
    verified_at = models.DateTimeField(null=True, blank=True)
    provisioned_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # A double submit from one browser finds its open request instead of making a second one; another
            # browser's submission for the same email is a request of its own.
            models.UniqueConstraint(
                fields=["email", "browser_key"], condition=Q(status__in=OPEN_STATUSES),
                name="signup_one_open_per_email_and_browser",
            ),
            models.CheckConstraint(condition=Q(status__in=SignupStatus.values), name="signup_status_known"),
        ]

    def __str__(self):
        return f"{self.email} → {self.slug} ({self.status})"
