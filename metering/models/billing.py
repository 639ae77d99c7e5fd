"""Invoices and billing runs: one invoice per subscription and period, numbered when finalized, never edited after."""

import uuid
from decimal import Decimal

from django.db import models
from django.db.models import F, Q, Value
from django.db.models.functions import Abs
from django.db.models.lookups import LessThan


class InvoiceStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    FINALIZED = "finalized", "Finalized"
    PAID = "paid", "Paid"
    VOID = "void", "Void"


class FinalizedInvoiceError(Exception):
    """Raised when code tries to change a finalized invoice: correct it by voiding and reissuing."""


class Invoice(models.Model):
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.PROTECT, related_name="invoices")
    subscription = models.ForeignKey("tenants.Subscription", on_delete=models.PROTECT, related_name="invoices")
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=10, choices=InvoiceStatus.choices, default=InvoiceStatus.DRAFT)
    number = models.CharField(max_length=40, null=True, blank=True, unique=True, help_text="Given at finalization.")
    # The order of an invoice (docs/plans.md, "After the lines"): subtotal − discount (+ exclusive tax) = total;
    # total − credits applied − payments = what is left to pay. Check constraints below tie them together.
    subtotal = models.DecimalField(max_digits=18, decimal_places=4, default=0, help_text="The lines' sum.")
    discount = models.DecimalField(max_digits=18, decimal_places=4, default=0, help_text="The coupons' sum.")
    tax = models.DecimalField(max_digits=18, decimal_places=4, default=0)
    tax_name = models.CharField(max_length=100, blank=True, help_text="The tax rate's name, as it was.")
    tax_percentage = models.DecimalField(max_digits=7, decimal_places=4, null=True, blank=True,
                                         help_text="The tax rate's percentage, as it was (empty: no tax rate).")
    tax_inclusive = models.BooleanField(default=False, help_text="The tax is included in the subtotal.")
    total = models.DecimalField(max_digits=18, decimal_places=4, default=0)
    credits_applied = models.DecimalField(max_digits=18, decimal_places=4, default=0,
                                          help_text="Drawn from the tenant's prepaid credits when finalized.")
    replaces = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="replaced_by",
        help_text="The voided invoice this one corrects.",
    )
    finalize_after = models.DateTimeField(help_text="End of the grace period: late records still count until then.")
    finalized_at = models.DateTimeField(null=True, blank=True)
    payment_terms_days = models.PositiveIntegerField(
        null=True, blank=True, help_text="Days the tenant has to pay, counted from the issue date; fixed at finalization.")
    due_date = models.DateField(null=True, blank=True, help_text="Issue date (UTC) plus the payment terms; fixed at finalization.")
    paid_at = models.DateTimeField(null=True, blank=True)
    credited_amount = models.DecimalField(
        max_digits=18, decimal_places=4, default=0, help_text="What its credit notes gave back, all outcomes.")
    credited_against_due = models.DecimalField(
        max_digits=18, decimal_places=4, default=0,
        help_text="The part of credited_amount taken off what was left to pay (the rest was refunded or credited "
                  "to the tenant's balance).")
    voided_at = models.DateTimeField(null=True, blank=True)
    void_reason = models.TextField(blank=True)
    billing_run = models.ForeignKey("metering.BillingRun", null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="invoices")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-period_start", "tenant__slug"]
        constraints = [
            # Exactly one live invoice per subscription and period, whatever runs concurrently.
            models.UniqueConstraint(
                fields=["subscription", "period_start"],
                condition=~Q(status="void"),
                name="invoice_one_per_subscription_period",
            ),
            models.CheckConstraint(condition=Q(period_end__gt=F("period_start")), name="invoice_period_positive"),
            models.CheckConstraint(condition=Q(status__in=InvoiceStatus.values), name="invoice_status_known"),
            models.CheckConstraint(condition=Q(total__gte=0), name="invoice_total_non_negative"),
            models.CheckConstraint(condition=Q(subtotal__gte=0), name="invoice_subtotal_non_negative"),
            models.CheckConstraint(condition=Q(discount__gte=0, discount__lte=F("subtotal")),
                                   name="invoice_discount_within_subtotal"),
            models.CheckConstraint(
                condition=Q(tax__gte=0) & (Q(tax_percentage__isnull=False) | Q(tax=0, tax_inclusive=False)),
                name="invoice_tax_needs_rate"),
            # Compared within half a ten-thousandth, not with =: SQLite does this arithmetic in floating point
            # (0.30 − 0.10 is not 0.20 there); on PostgreSQL's exact numeric(18, 4) it is equality.
            models.CheckConstraint(
                condition=Q(Q(tax_inclusive=False), LessThan(Abs(F("total") - (F("subtotal") - F("discount") + F("tax"))),
                                                             Value(Decimal("0.00005"))))
                | Q(Q(tax_inclusive=True, tax__lte=F("total")),
                    LessThan(Abs(F("total") - (F("subtotal") - F("discount"))), Value(Decimal("0.00005")))),
                name="invoice_total_in_order"),
            models.CheckConstraint(
                condition=Q(credits_applied__gte=0, credits_applied__lte=F("total"))
                & (~Q(status="draft") | Q(credits_applied=0)),
                name="invoice_credits_within_total"),
            # Never more credited than invoiced, whatever the credit notes written concurrently.
            models.CheckConstraint(
                condition=Q(credited_against_due__gte=0, credited_against_due__lte=F("credited_amount"),
                            credited_amount__lte=F("total")),
                name="invoice_credited_within_total",
                violation_error_message="A credit note cannot credit more than the invoice's total."),
            models.CheckConstraint(
                condition=Q(status="draft", number__isnull=True) | (~Q(status="draft") & Q(number__isnull=False)),
                name="invoice_numbered_iff_not_draft",
            ),
            # A sent invoice always says when it is due (the terms are fixed when it is finalized).
            models.CheckConstraint(
                condition=Q(status="draft") | Q(due_date__isnull=False, payment_terms_days__isnull=False),
                name="invoice_due_date_unless_draft",
            ),
        ]
        indexes = [models.Index(fields=["status", "finalize_after"], name="invoice_status_due")]

    def __str__(self):
        return self.number or f"draft {self.tenant.slug} {self.period_start.astimezone(self.tenant.zone):%Y-%m-%d}"

    # What a finalized invoice may never change; only its status moves on (paid, void).
    FROZEN_FIELDS = ("tenant_id", "subscription_id", "period_start", "period_end", "currency", "number", "total",
                     "payment_terms_days", "due_date", "subtotal", "discount", "tax", "tax_name", "tax_percentage",
                     "tax_inclusive", "credits_applied")

    def save(self, *args, **kwargs):
        if self.pk is not None:
            stored = getattr(self, "_stored", None)
            if stored is None or any(name not in stored for name in ("status", *self.FROZEN_FIELDS)):
                stored = type(self).objects.filter(pk=self.pk).values("status", *self.FROZEN_FIELDS).first()
            if stored and stored["status"] != InvoiceStatus.DRAFT:
                changed = [name for name in self.FROZEN_FIELDS if stored[name] != getattr(self, name)]
                if changed:
                    raise FinalizedInvoiceError(
                        f"invoice {stored['number']} is {stored['status']}: {', '.join(changed)} cannot change "
                        "(void it and issue a replacement)"
                    )
        super().save(*args, **kwargs)
        self._stored = {name: getattr(self, name) for name in ("status", *self.FROZEN_FIELDS)}

    def get_absolute_url(self):
        from django.urls import reverse

        return reverse("invoice-document", args=[self.public_id])

    @classmethod
    def from_db(cls, db, field_names, values):
        instance = super().from_db(db, field_names, values)
        instance._stored = dict(zip(field_names, values, strict=True))  # what the row held, for save()'s check
        return instance

    @property
    def shows_tax(self) -> bool:
        """A tax line is printed for a rate above 0 % (never at 0 %)."""
        return bool(self.tax_percentage)

    @property
    def is_editable(self) -> bool:
        return self.status == InvoiceStatus.DRAFT

    def is_overdue(self, today=None) -> bool:
        """Finalized, unpaid, and past its due date (UTC): overdue is a state of time, not a stored status."""
        from django.utils import timezone

        today = today or timezone.now().date()
        return self.status == InvoiceStatus.FINALIZED and self.due_date is not None and self.due_date < today


class LineType(models.TextChoices):
    BASE_FEE = "base_fee", "Base fee"
    USAGE = "usage", "Usage"
    MINIMUM_COMMITMENT = "minimum_commitment", "Minimum commitment true-up"
    LATE_USAGE = "late_usage", "Late usage from an earlier period"


class DraftInvoicePart(models.Model):
    """A row of an invoice (a line, a discount) that changes only while its invoice is a draft."""

    part_name = "rows"

    class Meta:
        abstract = True

    def save(self, *args, **kwargs):
        self._check_editable()
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        self._check_editable()
        return super().delete(*args, **kwargs)

    def _check_editable(self):
        if Invoice.objects.filter(pk=self.invoice_id).exclude(status=InvoiceStatus.DRAFT).exists():
            raise FinalizedInvoiceError(f"invoice {self.invoice} is not a draft: its {self.part_name} cannot change")


class InvoiceLine(DraftInvoicePart):
    part_name = "lines"
    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="lines")
    position = models.PositiveIntegerField()
    type = models.CharField(max_length=20, choices=LineType.choices)
    description = models.CharField(max_length=300)
    plan_code = models.CharField(max_length=64, blank=True)
    metric_code = models.CharField(max_length=64, blank=True)
    model = models.CharField(max_length=20, blank=True)
    quantity = models.DecimalField(max_digits=30, decimal_places=6, null=True, blank=True)
    unit_amount = models.DecimalField(max_digits=30, decimal_places=12, null=True, blank=True)
    amount = models.DecimalField(max_digits=18, decimal_places=4)
    tiers = models.JSONField(
        default=list, blank=True,
        help_text="Graduated and volume lines: per tier its range, units, unit amount, flat amount and amount "
        "(decimal strings), adding up to the line's amount; empty for other lines.",
    )
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    adjusts = models.ForeignKey(
        Invoice, null=True, blank=True, on_delete=models.PROTECT, related_name="late_lines",
        help_text="For late usage: the finalized invoice of the period the usage belongs to.",
    )

    class Meta:
        ordering = ["invoice", "position"]
        constraints = [
            models.UniqueConstraint(fields=["invoice", "position"], name="invoice_line_position_unique"),
            models.CheckConstraint(condition=Q(type__in=LineType.values), name="invoice_line_type_known"),
            models.CheckConstraint(
                condition=Q(type="late_usage", adjusts__isnull=False) | (~Q(type="late_usage") & Q(adjusts__isnull=True)),
                name="invoice_line_late_usage_adjusts",
            ),
        ]

    def __str__(self):
        return f"{self.invoice} #{self.position} {self.description}"



class InvoiceDiscount(DraftInvoicePart):
    """A coupon's discount on an invoice (a line below the subtotal); a coupon for N periods counts the live
    invoices it discounted."""

    part_name = "discounts"
    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="discounts")
    position = models.PositiveIntegerField()
    subscription_coupon = models.ForeignKey("tenants.SubscriptionCoupon", on_delete=models.PROTECT,
                                            related_name="invoice_discounts")
    coupon_code = models.CharField(max_length=40)
    description = models.CharField(max_length=300)
    amount = models.DecimalField(max_digits=18, decimal_places=4)

    class Meta:
        ordering = ["invoice", "position"]
        constraints = [
            models.UniqueConstraint(fields=["invoice", "position"], name="invoice_discount_position_unique"),
            models.UniqueConstraint(fields=["invoice", "subscription_coupon"], name="invoice_discount_coupon_once"),
            models.CheckConstraint(condition=Q(amount__gt=0), name="invoice_discount_positive"),
        ]

    def __str__(self):
        return f"{self.invoice} {self.coupon_code} −{self.amount}"



class InvoiceSequence(models.Model):
    """The last invoice number given per prefix and year: numbers are sequential and gapless."""

    prefix = models.CharField(max_length=20)
    year = models.PositiveIntegerField()
    last_number = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["prefix", "year"], name="invoice_sequence_unique")]

    def __str__(self):
        return f"{self.prefix}-{self.year}: {self.last_number}"


class BillingRunStatus(models.TextChoices):
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


class BillingRun(models.Model):
    """One run of the billing service: what it looked at and how far it got."""

    as_of = models.DateTimeField()
    period = models.CharField(max_length=7, blank=True, help_text="YYYY-MM when the run was limited to one month.")
    status = models.CharField(max_length=10, choices=BillingRunStatus.choices, default=BillingRunStatus.RUNNING)
    triggered_by = models.CharField(max_length=40, blank=True)
    subscriptions_seen = models.PositiveIntegerField(default=0)
    invoices_created = models.PositiveIntegerField(default=0)
    invoices_finalized = models.PositiveIntegerField(default=0)
    errors = models.TextField(blank=True)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(
        null=True, blank=True,
        help_text="Last sign of life of the worker running it; a running run whose heartbeat is older than "
                  "RUN_STALE_AFTER_SECONDS is marked failed.")
    finalize_now = models.BooleanField(
        default=False, help_text="Finalize new invoices at once, without the grace period (the workers read it).")
    next_check_at = models.DateTimeField(
        null=True, blank=True,
        help_text="When a worker looks again for a chunk whose worker died (one such check is queued at a time).")

    class Meta:
        ordering = ["-started_at"]
        constraints = [
            models.CheckConstraint(condition=Q(status__in=BillingRunStatus.values), name="billing_run_status_known"),
        ]

    def __str__(self):
        return f"billing run {self.pk} as of {self.as_of:%Y-%m-%d %H:%M}"


class BillingChunkStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


class BillingRunChunk(models.Model):
    """A range of subscription ids of one billing run, billed (and its due drafts finalized) by one worker at a
    time; taken again when that worker's heartbeat is older than RUN_STALE_AFTER_SECONDS
    (metering.services.billing.run says how)."""

    run = models.ForeignKey(BillingRun, on_delete=models.CASCADE, related_name="chunks")
    position = models.PositiveIntegerField(help_text="1, 2, ... in subscription id order.")
    first_subscription_id = models.PositiveBigIntegerField(help_text="The range's first subscription id (inclusive).")
    last_subscription_id = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="The range's last subscription id (inclusive); empty: no upper bound.")
    subscriptions = models.PositiveIntegerField(default=0, help_text="Subscriptions of the run in the range.")
    status = models.CharField(max_length=10, choices=BillingChunkStatus.choices, default=BillingChunkStatus.PENDING)
    attempts = models.PositiveIntegerField(
        default=0, help_text="Times a worker took it: more than one means a worker died (or stalled) on it.")
    worker = models.CharField(max_length=200, blank=True, help_text="The worker that took it last (host and pid).")
    invoices_created = models.PositiveIntegerField(default=0)
    invoices_finalized = models.PositiveIntegerField(default=0)
    errors = models.TextField(blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["run", "position"]
        constraints = [
            models.UniqueConstraint(fields=["run", "position"], name="billing_chunk_position_unique"),
            models.CheckConstraint(condition=Q(status__in=BillingChunkStatus.values), name="billing_chunk_status_known"),
            models.CheckConstraint(
                condition=Q(last_subscription_id__isnull=True) | Q(last_subscription_id__gte=F("first_subscription_id")),
                name="billing_chunk_range_ordered"),
            # A chunk being worked on, or done, was taken by a worker (one failed may never have been: its run stopped).
            models.CheckConstraint(condition=Q(status__in=["pending", "failed"]) | Q(attempts__gte=1, started_at__isnull=False),
                                   name="billing_chunk_taken_when_started"),
        ]

    def __str__(self):
        last = "" if self.last_subscription_id is None else self.last_subscription_id
        return f"chunk {self.position} of billing run {self.run_id} (subscriptions {self.first_subscription_id}..{last})"
