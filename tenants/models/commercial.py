"""The commercial side: tenants, versioned plans with their charges, and subscriptions."""

from functools import cache
from zoneinfo import ZoneInfo, available_timezones

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, RegexValidator
from django.db import models
from django.db.models import F, Q


class TenantStatus(models.TextChoices):
    TRIALING = "trialing", "Trialing"
    ACTIVE = "active", "Active"
    SUSPENDED = "suspended", "Suspended"
    CANCELLED = "cancelled", "Cancelled"


# The statuses in which a tenant's users sign in, get tokens and call the API (and in which a tenant starts):
# the one definition every check uses.
USABLE_TENANT_STATUSES = frozenset({TenantStatus.TRIALING, TenantStatus.ACTIVE})


slug_validator = RegexValidator(
    r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$",
    "Use 1 to 63 lowercase letters, digits and inner hyphens (the slug names the tenant's Cognito group).",
)


@cache
def time_zone_names() -> frozenset[str]:
    """The IANA time zone names this installation knows (the pinned tzdata package, else the system's)."""
    return frozenset(available_timezones())


def validate_time_zone(name: str) -> None:
    """An IANA time zone name, spelled as the tz database spells it ("America/New_York", "UTC")."""
    if name not in time_zone_names():
        raise ValidationError(
            "%(name)s is not an IANA time zone name: write one like America/New_York, Europe/Paris or UTC.",
            code="invalid_time_zone", params={"name": repr(name)[:80]},
        )


def zone_named(name: str) -> ZoneInfo:
    """The time zone of that name (UTC for a name this installation's tz database does not know)."""
    return ZoneInfo(name) if name in time_zone_names() else ZoneInfo("UTC")


class BillingChannel(models.TextChoices):
    INVOICE = "invoice", "Invoices from the portal"
    AWS_MARKETPLACE = "aws_marketplace", "AWS Marketplace"


MAX_PAYMENT_TERMS_DAYS = 365  # as a plan document's payment_terms_days (docs/plans.md)


class Tenant(models.Model):
    slug = models.SlugField(max_length=63, unique=True, validators=[slug_validator])
    name = models.CharField(max_length=200)
    contact_email = models.EmailField(help_text="Billing contact: finalized invoices are sent here.")
    status = models.CharField(max_length=20, choices=TenantStatus.choices, default=TenantStatus.ACTIVE)
    status_changed_at = models.DateTimeField(null=True, blank=True)
    time_zone = models.CharField(
        max_length=64, default="UTC", validators=[validate_time_zone],
        help_text="IANA name (America/New_York). Billing periods start at midnight on the 1st here (anniversary "
                  "periods at the local time the subscription started), and invoices, dashboards and the API show "
                  "periods in it (docs/plans.md, \"Time zones\"). It can change until a subscription's first "
                  "period ends.",
    )
    country = models.CharField(max_length=2, blank=True, help_text="ISO 3166-1 alpha-2 code (e.g. FR).")
    tax_id = models.CharField(max_length=64, blank=True, help_text="The tenant's VAT or tax number, printed on invoices.")
    tax_rate = models.ForeignKey(
        "tenants.TaxRate", null=True, blank=True, on_delete=models.PROTECT, related_name="tenants",
        help_text="Empty: the default tax rate (none: no tax).",
    )
    payment_terms_days = models.PositiveIntegerField(
        null=True, blank=True, validators=[MaxValueValidator(MAX_PAYMENT_TERMS_DAYS)],
        help_text="Days this tenant has to pay an invoice, from its issue date; empty: the plan's "
                  "payment_terms_days, else INVOICE_PAYMENT_TERMS_DAYS (docs/plans.md, \"Payment terms\").")
    billing_channel = models.CharField(
        max_length=20, choices=BillingChannel.choices, default=BillingChannel.INVOICE,
        help_text="AWS Marketplace: AWS bills the tenant from the usage the portal reports hourly; its invoices "
                  "are kept for the record, never emailed, and owe nothing (docs/marketplace.md).")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["slug"]
        constraints = [
            models.CheckConstraint(condition=Q(status__in=TenantStatus.values), name="tenant_status_known"),
            models.CheckConstraint(
                condition=Q(payment_terms_days__isnull=True) | Q(payment_terms_days__lte=MAX_PAYMENT_TERMS_DAYS),
                name="tenant_payment_terms_bounded"),
            models.CheckConstraint(condition=Q(billing_channel__in=BillingChannel.values),
                                   name="tenant_billing_channel_known"),
            models.CheckConstraint(condition=~Q(time_zone=""), name="tenant_time_zone_not_empty"),
        ]

    def __str__(self):
        return self.slug

    @property
    def zone(self) -> ZoneInfo:
        """The tenant's time zone (UTC when the stored name is unknown to this installation's tz database)."""
        return zone_named(self.time_zone)


class PlanInterval(models.TextChoices):
    MONTH = "month", "Monthly"
    YEAR = "year", "Yearly"


class Plan(models.Model):
    """A plan's stable identity; its prices live in versions, so subscribers keep what they signed up for."""

    code = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    is_public = models.BooleanField(default=True, help_text="Offered on the self-service signup page.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["code"]

    def __str__(self):
        return self.code

    @property
    def current_version(self) -> "PlanVersion | None":
        return self.versions.order_by("-version").first()


class PlanVersion(models.Model):
    plan = models.ForeignKey(Plan, on_delete=models.CASCADE, related_name="versions")
    version = models.PositiveIntegerField()
    # The canonical plan document (docs/plans.md) is the source of truth; the typed columns below are
    # derived from it so the database can check them and queries can filter on them.
    document = models.JSONField()
    name = models.CharField(max_length=200)
    currency = models.CharField(max_length=3)
    interval = models.CharField(max_length=10, choices=PlanInterval.choices, default=PlanInterval.MONTH)
    base_fee = models.DecimalField(max_digits=18, decimal_places=6, default=0)
    trial_days = models.PositiveIntegerField(default=0)
    minimum_commitment = models.DecimalField(max_digits=18, decimal_places=6, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["plan__code", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["plan", "version"], name="plan_version_unique"),
            models.CheckConstraint(condition=Q(version__gte=1), name="plan_version_positive"),
            models.CheckConstraint(condition=Q(base_fee__gte=0), name="plan_version_base_fee_non_negative"),
            models.CheckConstraint(
                condition=Q(minimum_commitment__isnull=True) | Q(minimum_commitment__gte=0),
                name="plan_version_commitment_non_negative",
            ),
            models.CheckConstraint(condition=Q(interval__in=PlanInterval.values), name="plan_version_interval_known"),
        ]

    def __str__(self):
        return f"{self.plan.code} v{self.version}"

    def to_spec(self):
        """The pricing engine's view of this version."""
        from metering.pricing.documents import parse_plan

        return parse_plan(self.document)


class ChargeModel(models.TextChoices):
    PER_UNIT = "per_unit", "per unit"
    PACKAGE = "package", "package"
    GRADUATED = "graduated", "graduated"
    VOLUME = "volume", "volume"
    CUSTOM = "custom", "custom"


class Charge(models.Model):
    """One usage charge of a plan version; rows mirror the document so a metric in use cannot be deleted."""

    plan_version = models.ForeignKey(PlanVersion, on_delete=models.CASCADE, related_name="charges")
    position = models.PositiveIntegerField()
    metric = models.ForeignKey("tenants.Metric", on_delete=models.PROTECT, related_name="charges")
    model = models.CharField(max_length=20, choices=ChargeModel.choices)
    spec = models.JSONField(default=dict, help_text="The charge's document, as in docs/plans.md.")

    class Meta:
        ordering = ["plan_version", "position"]
        constraints = [
            models.UniqueConstraint(fields=["plan_version", "metric"], name="charge_one_per_metric"),
            models.UniqueConstraint(fields=["plan_version", "position"], name="charge_position_unique"),
            models.CheckConstraint(condition=Q(model__in=ChargeModel.values), name="charge_model_known"),
        ]

    def __str__(self):
        return f"{self.plan_version} · {self.metric.code} ({self.model})"


class BillingCycle(models.TextChoices):
    CALENDAR = "calendar", "Calendar month"
    ANNIVERSARY = "anniversary", "Anniversary"


class SubscriptionStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    ENDED = "ended", "Ended"


class Subscription(models.Model):
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="subscriptions")
    plan_version = models.ForeignKey(PlanVersion, on_delete=models.PROTECT, related_name="subscriptions")
    status = models.CharField(max_length=10, choices=SubscriptionStatus.choices, default=SubscriptionStatus.ACTIVE)
    billing_cycle = models.CharField(max_length=12, choices=BillingCycle.choices, default=BillingCycle.CALENDAR)
    started_at = models.DateTimeField()
    trial_ends_at = models.DateTimeField(null=True, blank=True)
    ends_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-started_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant"],
                condition=Q(status="active"),
                name="subscription_one_active_per_tenant",
                violation_error_message="This tenant already has an active subscription.",
            ),
            models.CheckConstraint(condition=Q(status__in=SubscriptionStatus.values), name="subscription_status_known"),
            models.CheckConstraint(
                condition=Q(billing_cycle__in=BillingCycle.values), name="subscription_billing_cycle_known"
            ),
            models.CheckConstraint(
                condition=Q(ends_at__isnull=True) | Q(ends_at__gt=F("started_at")),
                name="subscription_ends_after_start",
                violation_error_message="The end must be after the start.",
            ),
            models.CheckConstraint(
                condition=Q(trial_ends_at__isnull=True) | Q(trial_ends_at__gte=F("started_at")),
                name="subscription_trial_after_start",
            ),
        ]

    def __str__(self):
        return f"{self.tenant.slug} on {self.plan_version}"


class SubscriptionChange(models.Model):
    """A plan change, with its time: billing prices each part of a period under its own plan version."""

    subscription = models.ForeignKey(Subscription, on_delete=models.CASCADE, related_name="changes")
    from_version = models.ForeignKey(PlanVersion, on_delete=models.PROTECT, related_name="+")
    to_version = models.ForeignKey(PlanVersion, on_delete=models.PROTECT, related_name="+")
    changed_at = models.DateTimeField(help_text="From when the new version is in force (later than now: scheduled).")
    made_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="Who made it: a tenant user's login (self-service) or staff; empty when made by the system.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["subscription", "changed_at"]
        constraints = [
            models.CheckConstraint(condition=~Q(from_version=F("to_version")), name="subscription_change_changes"),
        ]

    def __str__(self):
        return f"{self.subscription}: {self.from_version} -> {self.to_version} at {self.changed_at:%Y-%m-%d %H:%M}"


class SubscriptionRequestKind(models.TextChoices):
    UPGRADE = "upgrade", "Upgrade"
    DOWNGRADE = "downgrade", "Downgrade"
    CANCEL = "cancel", "Cancellation"


class SubscriptionRequestStatus(models.TextChoices):
    PENDING_APPROVAL = "pending_approval", "Waiting for staff approval"
    SCHEDULED = "scheduled", "Scheduled"
    APPLIED = "applied", "Applied"
    WITHDRAWN = "withdrawn", "Withdrawn"
    REFUSED = "refused", "Refused"


# A request in one of these is still to happen: a subscription has at most one (database constraint).
OPEN_REQUEST_STATUSES = (SubscriptionRequestStatus.PENDING_APPROVAL, SubscriptionRequestStatus.SCHEDULED)


class SubscriptionRequest(models.Model):
    """A change a tenant asked for on its subscription (docs/plans.md, "Changing plan"): an upgrade (applied at
    once), a downgrade (from the next period, perhaps after staff approval) or a cancellation at the period's end.

    Kept after it is applied, withdrawn or refused: with the SubscriptionChange rows, the subscription's history.
    """

    subscription = models.ForeignKey(Subscription, on_delete=models.CASCADE, related_name="requests")
    kind = models.CharField(max_length=10, choices=SubscriptionRequestKind.choices)
    status = models.CharField(max_length=20, choices=SubscriptionRequestStatus.choices)
    from_version = models.ForeignKey(PlanVersion, on_delete=models.PROTECT, related_name="+")
    to_version = models.ForeignKey(PlanVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    effective_at = models.DateTimeField(help_text="When it takes (or took) effect.")
    change = models.OneToOneField(
        SubscriptionChange, null=True, blank=True, on_delete=models.SET_NULL, related_name="request",
        help_text="The plan change billing prices (made when the request is applied or scheduled).",
    )
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                     related_name="+")
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+", help_text="Who approved, refused or withdrew it.")
    decided_at = models.DateTimeField(null=True, blank=True)
    note = models.CharField(max_length=300, blank=True, help_text="Why it was refused (shown to the tenant).")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["subscription"], condition=Q(status__in=OPEN_REQUEST_STATUSES),
                name="subscription_request_one_open",
                violation_error_message="This subscription already has a change waiting.",
            ),
            models.CheckConstraint(condition=Q(kind__in=SubscriptionRequestKind.values),
                                   name="subscription_request_kind_known"),
            models.CheckConstraint(condition=Q(status__in=SubscriptionRequestStatus.values),
                                   name="subscription_request_status_known"),
            models.CheckConstraint(
                condition=(Q(kind="cancel", to_version__isnull=True)
                           | (~Q(kind="cancel") & Q(to_version__isnull=False) & ~Q(to_version=F("from_version")))),
                name="subscription_request_target",
            ),
            # An upgrade takes effect at once: it never waits.
            models.CheckConstraint(condition=~Q(kind="upgrade") | Q(status="applied"),
                                   name="subscription_request_upgrade_at_once"),
        ]

    def __str__(self):
        target = f" to {self.to_version}" if self.to_version_id else ""
        return f"{self.subscription}: {self.get_kind_display().lower()}{target} ({self.get_status_display().lower()})"
