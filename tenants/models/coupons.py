"""Coupons and taxes: what a subscription's invoices are discounted by, and the tax rates staff keep.

A ``Coupon`` is a percentage or a fixed amount (in one currency), for one period, N periods or every period,
redeemable a limited number of times and until an optional date. A ``SubscriptionCoupon`` is one coupon
applied to one subscription (by staff, the API or a code at signup); the billing run discounts a period with
the subscription's coupons in the order they were applied (docs/plans.md, "After the lines"). A ``TaxRate``
is a named percentage, exclusive or inclusive; a tenant has one, or the default rate (at most one default).
"""

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import F, Q


class CouponKind(models.TextChoices):
    PERCENT = "percent", "Percentage"
    FIXED = "fixed", "Fixed amount"


class CouponDuration(models.TextChoices):
    ONCE = "once", "One period"
    REPEATING = "repeating", "N periods"
    FOREVER = "forever", "Every period"


coupon_code_validator = RegexValidator(
    r"^[A-Z0-9][A-Z0-9_-]{0,39}$", "Use 1 to 40 capital letters, digits, hyphens and underscores (e.g. LAUNCH10).")


class Coupon(models.Model):
    code = models.CharField(max_length=40, unique=True, validators=[coupon_code_validator],
                            help_text="What a customer types at signup (capital letters, digits, - and _).")
    name = models.CharField(max_length=200, help_text="Shown on the invoice's discount line.")
    kind = models.CharField(max_length=10, choices=CouponKind.choices)
    percent_off = models.DecimalField(max_digits=7, decimal_places=4, null=True, blank=True,
                                      help_text="Percentage coupons: above 0, at most 100.")
    amount_off = models.DecimalField(max_digits=18, decimal_places=4, null=True, blank=True,
                                     help_text="Fixed coupons: the amount taken off each period, in the currency.")
    currency = models.CharField(max_length=3, blank=True, help_text="Fixed coupons: the amount's currency.")
    duration = models.CharField(max_length=10, choices=CouponDuration.choices, default=CouponDuration.ONCE)
    duration_periods = models.PositiveIntegerField(null=True, blank=True,
                                                   help_text="N periods coupons: how many billing periods.")
    max_redemptions = models.PositiveIntegerField(null=True, blank=True,
                                                  help_text="How many subscriptions may use it (empty: no limit).")
    redeem_by = models.DateTimeField(null=True, blank=True, help_text="Not applicable after this (empty: no end).")
    times_redeemed = models.PositiveIntegerField(default=0, editable=False)
    active = models.BooleanField(default=True, help_text="Untick to stop new redemptions (applied ones keep running).")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["code"]
        constraints = [
            models.CheckConstraint(condition=Q(kind__in=CouponKind.values), name="coupon_kind_known"),
            models.CheckConstraint(condition=Q(duration__in=CouponDuration.values), name="coupon_duration_known"),
            models.CheckConstraint(
                condition=(Q(kind="percent", percent_off__gt=0, percent_off__lte=100, amount_off__isnull=True,
                             currency="")
                           | Q(kind="fixed", amount_off__gt=0, percent_off__isnull=True) & ~Q(currency="")),
                name="coupon_terms_match_kind",
                violation_error_message="A percentage coupon has a percentage (above 0, at most 100) and no amount; "
                                        "a fixed coupon has an amount above 0 and its currency.",
            ),
            models.CheckConstraint(
                condition=Q(duration="repeating", duration_periods__gte=1)
                | (~Q(duration="repeating") & Q(duration_periods__isnull=True)),
                name="coupon_periods_iff_repeating",
                violation_error_message="An N periods coupon says how many periods (1 or more); the others say none.",
            ),
            models.CheckConstraint(
                condition=Q(max_redemptions__isnull=True) | Q(times_redeemed__lte=F("max_redemptions")),
                name="coupon_redemptions_within_limit",
            ),
        ]

    def __str__(self):
        return self.code


class CouponVia(models.TextChoices):
    STAFF = "staff", "Staff (admin)"
    API = "api", "Staff API"
    SIGNUP = "signup", "Code at signup"


class SubscriptionCoupon(models.Model):
    """A coupon applied to a subscription: it discounts the periods that end after it was applied."""

    subscription = models.ForeignKey("tenants.Subscription", on_delete=models.CASCADE, related_name="coupons")
    coupon = models.ForeignKey(Coupon, on_delete=models.PROTECT, related_name="redemptions")
    applied_at = models.DateTimeField()
    via = models.CharField(max_length=10, choices=CouponVia.choices)
    applied_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")

    class Meta:
        ordering = ["subscription", "applied_at", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["subscription", "coupon"], name="subscription_coupon_once"),
            models.CheckConstraint(condition=Q(via__in=CouponVia.values), name="subscription_coupon_via_known"),
        ]

    def __str__(self):
        return f"{self.coupon.code} on {self.subscription}"


class TaxRate(models.Model):
    name = models.CharField(max_length=100, help_text="Printed on the invoice, e.g. “VAT 20 %”.")
    percentage = models.DecimalField(max_digits=7, decimal_places=4, help_text="0 to 100.")
    inclusive = models.BooleanField(default=False,
                                    help_text="Prices already include the tax (the total is not raised by it).")
    country = models.CharField(max_length=2, blank=True, help_text="ISO 3166-1 alpha-2 code (e.g. FR), if any.")
    is_default = models.BooleanField(default=False, help_text="Used for tenants with no rate of their own.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=Q(percentage__gte=0, percentage__lte=100), name="tax_rate_percentage_range",
                                   violation_error_message="A tax rate is between 0 and 100 %."),
            models.UniqueConstraint(fields=["is_default"], condition=Q(is_default=True), name="tax_rate_one_default",
                                    violation_error_message="Another tax rate is the default already."),
        ]

    def __str__(self):
        suffix = ", inclusive" if self.inclusive else ""
        return f"{self.name} ({self.percentage.normalize():f} %{suffix})"
