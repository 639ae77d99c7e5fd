"""Response (and admin input) serializers: times in UTC ISO 8601, decimals as strings; no business logic."""

from __future__ import annotations

from operator import attrgetter

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from metering.models import (
    CreditNote,
    EventReceipt,
    EventRejection,
    Invoice,
    InvoiceDiscount,
    InvoiceLine,
    SyncRun,
    UsageAlertFiring,
)
from metering.pricing import format_amount, format_plain, format_unit_amount
from tenants.models import Metric, Plan, PlanVersion, Subscription, Tenant, TenantStatus, TenantUser

# Decimals as strings with no fixed number of places (quantities can be fractional to many digits).
Decimal = lambda **kw: serializers.DecimalField(max_digits=None, decimal_places=None, **kw)  # noqa: E731


class TenantClockMixin:
    """Times written on the tenant's clock: ISO 8601 with the offset of its time zone
    (``2026-11-01T00:00:00-04:00``; ``Z`` for a UTC tenant), the same instants as in UTC."""

    tenant_source = "tenant"

    def to_representation(self, instance):
        with timezone.override(attrgetter(self.tenant_source)(instance).zone):
            return super().to_representation(instance)


@extend_schema_field(OpenApiTypes.STR)
class MoneyField(serializers.Field):
    """An amount as a decimal string with exactly its currency's minor digits ("100.00", "1200" for JPY)."""

    def __init__(self, *, currency_source: str, **kwargs):
        kwargs["read_only"] = True
        kwargs.setdefault("help_text", "Decimal string with exactly the currency's minor digits.")
        super().__init__(**kwargs)
        self._currency = attrgetter(currency_source)

    def get_attribute(self, instance):
        return super().get_attribute(instance), self._currency(instance)

    def to_representation(self, value):
        amount, currency = value
        return format_amount(amount, currency)


@extend_schema_field(OpenApiTypes.STR)
class UnitAmountField(MoneyField):
    """A unit price as a decimal string: at least the currency's minor digits, more where the price has them
    ("0.09", "0.0005"), never rounded; null when the line has none."""

    def __init__(self, **kwargs):
        kwargs.setdefault("help_text", "Decimal string: at least the currency's minor digits, never rounded; "
                                       "null for lines without a unit price.")
        super().__init__(**kwargs)

    def to_representation(self, value):
        amount, currency = value
        return None if amount is None else format_unit_amount(amount, currency)


@extend_schema_field(OpenApiTypes.STR)
class PlainDecimalField(serializers.Field):
    """A stored decimal as plain digits without trailing zeros ("40", "17.440363"), never an exponent."""

    def __init__(self, **kwargs):
        kwargs["read_only"] = True
        super().__init__(**kwargs)

    def to_representation(self, value):
        return format_plain(value)


class TierSerializer(serializers.Serializer):
    """One tier of a graduated or volume line (decimal strings)."""

    # "from" is a Python keyword: the field is declared under another name and renamed below.
    from_ = serializers.CharField(help_text="The tier covers quantities above this...")
    up_to = serializers.CharField(allow_null=True, help_text="...up to this one included (null: unbounded).")
    units = serializers.CharField(help_text="The part of the line's quantity priced in this tier.")
    unit_amount = serializers.CharField(help_text="Price per unit in this tier.")
    flat_amount = serializers.CharField(help_text="The tier's flat amount, charged with it (0 when none).")
    amount = serializers.CharField(help_text="The tier's amount, in the currency's minor digits; the tiers add up "
                                             "to the line's amount.")

    def get_fields(self):
        return {"from" if name == "from_" else name: field for name, field in super().get_fields().items()}


class UsageBucketSerializer(serializers.Serializer):
    metric = serializers.CharField(help_text="The metric's code.")
    unit = serializers.CharField(help_text="The metric's unit ('' for a plain count).")
    start = serializers.DateTimeField(help_text="Start of the bucket (UTC).")
    value = Decimal(help_text="The bucket's quantity, after the metric's divisor: what an invoice of the bucket "
                              "would bill (the sum for count and sum metrics, the largest value for max, the "
                              "distinct count over the whole bucket for unique_count).")


class MetricQuantitySerializer(serializers.Serializer):
    metric = serializers.CharField()
    name = serializers.CharField()
    unit = serializers.CharField()
    aggregation = serializers.CharField()
    quantity = Decimal(help_text="The period's quantity so far, after the metric's divisor.")


class CurrentUsageSerializer(serializers.Serializer):
    period_start = serializers.DateTimeField()
    period_end = serializers.DateTimeField()
    as_of = serializers.DateTimeField()
    totals = MetricQuantitySerializer(many=True)


class PricedLineSerializer(serializers.Serializer):
    type = serializers.CharField()
    description = serializers.CharField()
    plan = serializers.CharField(allow_blank=True)
    metric = serializers.CharField(allow_null=True)
    model = serializers.CharField(allow_null=True)
    quantity = Decimal(allow_null=True)
    unit_amount = serializers.CharField(allow_null=True, help_text="Decimal string: at least the currency's minor "
                                        "digits, never rounded; null for lines without a unit price.")
    amount = serializers.CharField(help_text="Decimal string with exactly the currency's minor digits.")
    tiers = TierSerializer(many=True, help_text="Graduated and volume lines: how each tier priced the quantity.")
    period_start = serializers.DateTimeField(allow_null=True)
    period_end = serializers.DateTimeField(allow_null=True)


class DiscountSerializer(serializers.Serializer):
    description = serializers.CharField()
    amount = serializers.CharField(help_text="Decimal string with exactly the currency's minor digits.")


class TaxRateSerializer(serializers.Serializer):
    name = serializers.CharField()
    percentage = serializers.CharField(help_text="Decimal string, e.g. \"20\" or \"8.5\".")
    inclusive = serializers.BooleanField()


class ProjectedBillSerializer(serializers.Serializer):
    as_of = serializers.DateTimeField()
    plans = serializers.ListField(child=serializers.CharField())
    currency = serializers.CharField()
    period_start = serializers.DateTimeField()
    period_end = serializers.DateTimeField()
    lines = PricedLineSerializer(many=True)
    subtotal = serializers.CharField(help_text="The lines' sum (decimal string with the currency's minor digits).")
    discounts = DiscountSerializer(many=True, help_text="The subscription's coupons, in the order applied.")
    discount = serializers.CharField(help_text="The discounts' sum.")
    tax_rate = TaxRateSerializer(allow_null=True, help_text="The tenant's tax rate; null without one or at 0 %.")
    tax = serializers.CharField(help_text="Tax on subtotal − discount (included in it for an inclusive rate).")
    total = serializers.CharField(help_text="subtotal − discount + exclusive tax, with the currency's minor digits.")
    credits_applied = serializers.CharField(help_text="Prepaid credits that would pay it now.")
    amount_due = serializers.CharField(help_text="total − credits_applied.")


class InvoiceLineSerializer(serializers.ModelSerializer):
    quantity = PlainDecimalField(allow_null=True)
    unit_amount = UnitAmountField(currency_source="invoice.currency", allow_null=True)
    amount = MoneyField(currency_source="invoice.currency")
    tiers = TierSerializer(many=True, read_only=True,
                           help_text="Graduated and volume lines: how each tier priced the quantity; empty otherwise.")
    adjusts = serializers.SlugRelatedField(slug_field="public_id", read_only=True, allow_null=True,
                                           help_text="For late usage: the invoice the usage belongs to.")

    class Meta:
        model = InvoiceLine
        fields = ["position", "type", "description", "plan_code", "metric_code", "model", "quantity", "unit_amount",
                  "amount", "tiers", "period_start", "period_end", "adjusts"]


class InvoiceSerializer(TenantClockMixin, serializers.ModelSerializer):
    id = serializers.UUIDField(source="public_id", read_only=True)
    tenant = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    subtotal = MoneyField(currency_source="currency", help_text="The lines' sum.")
    discount = MoneyField(currency_source="currency", help_text="The coupons' discounts.")
    tax = MoneyField(currency_source="currency",
                     help_text="Tax on subtotal − discount at tax_rate (included in it when the rate is inclusive).")
    tax_rate = serializers.SerializerMethodField(help_text="The tax rate applied; null without one or at 0 %.")
    total = MoneyField(currency_source="currency", help_text="subtotal − discount + exclusive tax.")
    credits_applied = MoneyField(currency_source="currency", help_text="Drawn from prepaid credits when finalized.")
    amount_due = serializers.SerializerMethodField(
        help_text="What is left to pay (decimal string in the currency's minor digits): the total less the "
                  "credits applied and the payments received while finalized; 0 once paid, void or a draft.")
    overdue = serializers.SerializerMethodField(help_text="Finalized, not paid in full, and past its due date (UTC).")
    credited = MoneyField(source="credited_amount", currency_source="currency",
                          help_text="What its credit notes gave back, whatever their outcome.")
    creditable = serializers.SerializerMethodField(
        help_text="What credit notes may still give back: the total less what was credited (0 unless finalized or paid).")

    class Meta:
        model = Invoice
        fields = ["id", "number", "tenant", "status", "currency", "subtotal", "discount", "tax", "tax_rate", "total",
                  "credits_applied", "amount_due", "overdue", "credited", "creditable", "period_start", "period_end",
                  "finalized_at", "due_date", "payment_terms_days", "paid_at", "voided_at"]

    @extend_schema_field(TaxRateSerializer(allow_null=True))
    def get_tax_rate(self, invoice) -> dict | None:
        if not invoice.shows_tax:
            return None
        return {"name": invoice.tax_name, "percentage": format_plain(invoice.tax_percentage),
                "inclusive": invoice.tax_inclusive}

    def get_creditable(self, invoice) -> str:
        from metering.services.billing.credit_notes import invoice_creditable

        return format_amount(invoice_creditable(invoice), invoice.currency)

    def get_amount_due(self, invoice) -> str:
        from metering.services.billing.payments import invoice_amount_due

        return format_amount(invoice_amount_due(invoice), invoice.currency)

    def get_overdue(self, invoice) -> bool:
        return invoice.is_overdue()


class CreditNoteSerializer(serializers.ModelSerializer):
    id = serializers.UUIDField(source="public_id", read_only=True)
    amount = MoneyField(currency_source="currency")
    pdf = serializers.SerializerMethodField(help_text="Path of the credit note's PDF (the tenant's users may fetch it).")

    class Meta:
        model = CreditNote
        fields = ["id", "number", "amount", "outcome", "issued_at", "pdf"]

    def get_pdf(self, note) -> str:
        from django.urls import reverse

        return reverse("credit-note-pdf", args=[note.public_id])


class InvoiceDiscountSerializer(serializers.ModelSerializer):
    amount = MoneyField(currency_source="invoice.currency")

    class Meta:
        model = InvoiceDiscount
        fields = ["position", "coupon_code", "description", "amount"]


class InvoiceDetailSerializer(InvoiceSerializer):
    lines = InvoiceLineSerializer(many=True, read_only=True)
    discounts = InvoiceDiscountSerializer(many=True, read_only=True)
    credit_notes = CreditNoteSerializer(many=True, read_only=True)

    class Meta(InvoiceSerializer.Meta):
        fields = [*InvoiceSerializer.Meta.fields, "lines", "discounts", "credit_notes"]


class SubscriptionSerializer(TenantClockMixin, serializers.ModelSerializer):
    tenant = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    plan = serializers.CharField(source="plan_version.plan.code", read_only=True)
    plan_version = serializers.IntegerField(source="plan_version.version", read_only=True)

    class Meta:
        model = Subscription
        fields = ["id", "tenant", "plan", "plan_version", "status", "billing_cycle", "started_at", "trial_ends_at",
                  "ends_at"]


class PlanVersionSerializer(serializers.ModelSerializer):
    plan = serializers.CharField(source="plan.code")
    document = serializers.JSONField(help_text="The plan document (docs/plans.md), amounts as decimal strings.")

    class Meta:
        model = PlanVersion
        fields = ["plan", "version", "name", "currency", "interval", "document", "created_at"]


class TenantPlanSerializer(serializers.Serializer):
    subscription = SubscriptionSerializer()
    plan = PlanVersionSerializer()


class TenantUserSerializer(serializers.ModelSerializer):
    class Meta:
        model = TenantUser
        fields = ["id", "email", "role", "is_active", "created_at"]


class MetricSerializer(serializers.ModelSerializer):
    divisor = PlainDecimalField(help_text="Decimal string: the raw aggregate is divided by it (\"1000000\" bytes per MB).")

    class Meta:
        model = Metric
        fields = ["code", "name", "event", "aggregation", "field", "filters", "divisor", "unit"]


class MetricDocumentSerializer(serializers.Serializer):
    """A metrics-document entry (docs/plans.md); validated by the document parser in the service."""

    code = serializers.SlugField(max_length=64)
    name = serializers.CharField(max_length=200)
    event = serializers.CharField(required=False, allow_blank=True,
                                  help_text="The posted events' code it counts; absent for the access-log table.")
    aggregation = serializers.ChoiceField(choices=["count", "sum", "max", "unique_count", "latest"])
    field = serializers.CharField(required=False, allow_blank=True)
    filters = serializers.DictField(required=False)
    divisor = serializers.CharField(required=False, help_text="Decimal string, default 1.")
    unit = serializers.CharField(required=False, allow_blank=True)


class TenantSerializer(serializers.ModelSerializer):
    class Meta:
        model = Tenant
        fields = ["slug", "name", "contact_email", "status", "time_zone", "status_changed_at", "created_at"]
        read_only_fields = ["status_changed_at", "created_at"]


class TenantStatusSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=TenantStatus.choices, help_text="The lifecycle's allowed moves only.")


class PlanSerializer(serializers.ModelSerializer):
    current_version = PlanVersionSerializer(read_only=True)

    class Meta:
        model = Plan
        fields = ["code", "name", "is_public", "current_version"]


class PlanDocumentSerializer(serializers.Serializer):
    document = serializers.JSONField(help_text="A plan document (docs/plans.md).")
    is_public = serializers.BooleanField(required=False, allow_null=True, default=None)


class SubscriptionCreateSerializer(serializers.Serializer):
    tenant = serializers.SlugRelatedField(slug_field="slug", queryset=Tenant.objects.all())
    plan = serializers.SlugRelatedField(slug_field="code", queryset=Plan.objects.all())
    started_at = serializers.DateTimeField(required=False)
    billing_cycle = serializers.ChoiceField(choices=["calendar", "anniversary"], default="calendar")
    with_trial = serializers.BooleanField(default=True)


class TopTenantSerializer(serializers.Serializer):
    tenant = serializers.CharField(help_text="The tenant's slug.")
    name = serializers.CharField()
    value = Decimal(help_text="The metric's quantity over the range, after its divisor.")


class EventBatchSerializer(serializers.Serializer):
    """The body of POST /api/v1/events/ (each event is validated on its own, so only the list's shape is checked here)."""

    events = serializers.ListField(child=serializers.JSONField(), help_text=(
        "1 to EVENTS_MAX_BATCH events, each {transaction_id, code, timestamp, properties?, tenant? (staff only)}."))


class IngestResultSerializer(serializers.Serializer):
    accepted = serializers.IntegerField(help_text="Events accepted now (counted exactly once from now on).")
    duplicates = serializers.IntegerField(help_text="Events whose (tenant, transaction_id) was accepted before.")
    rejected = serializers.ListField(child=serializers.DictField(), help_text=(
        "One {index, error} per refused event (its position in `events` and why)."))


class EventReceiptSerializer(serializers.ModelSerializer):
    tenant = serializers.SlugRelatedField(slug_field="slug", read_only=True)

    class Meta:
        model = EventReceipt
        fields = ["transaction_id", "tenant", "code", "timestamp", "received_at"]


class EventRejectionSerializer(serializers.ModelSerializer):
    tenant = serializers.SlugRelatedField(slug_field="slug", read_only=True)

    class Meta:
        model = EventRejection
        fields = ["transaction_id", "tenant", "index", "error", "payload", "received_at"]


class AlertFiringSerializer(TenantClockMixin, serializers.ModelSerializer):
    """An alert that fired (the data of usage.threshold_reached and spend.threshold_reached webhooks)."""

    tenant_source = "alert.tenant"

    id = serializers.IntegerField(source="alert.pk", read_only=True, help_text="The alert's id.")
    tenant = serializers.CharField(source="alert.tenant.slug", read_only=True)
    kind = serializers.CharField(source="alert.kind", read_only=True, help_text="usage or spend.")
    metric = serializers.SerializerMethodField(help_text="The metric's code (usage alerts), else null.")
    threshold = PlainDecimalField(source="alert.threshold")
    value = PlainDecimalField(help_text="What was seen: the period's quantity, or the projected bill's total.")

    class Meta:
        model = UsageAlertFiring
        fields = ["id", "tenant", "kind", "metric", "threshold", "value", "currency", "period_start", "period_end",
                  "fired_at"]

    def get_metric(self, firing) -> str | None:
        return firing.alert.metric.code if firing.alert.metric_id else None


class SyncRunSerializer(serializers.ModelSerializer):
    """A usage sync run (the data of the sync.failed webhook)."""

    class Meta:
        model = SyncRun
        fields = ["id", "backend", "window_start", "window_end", "started_at", "finished_at", "attempts", "outcome",
                  "error"]


# --- prepaid credits and coupons -------------------------------------------------------------------------


class CreditBalanceSerializer(serializers.Serializer):
    currency = serializers.CharField()
    balance = serializers.CharField(help_text="What the grants not expired yet have left (decimal string).")


class CreditGrantSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    currency = serializers.CharField(read_only=True)
    amount = serializers.CharField(read_only=True)
    remaining = serializers.CharField(read_only=True)
    expires_at = serializers.DateTimeField(read_only=True, allow_null=True)
    expired = serializers.BooleanField(read_only=True)
    source = serializers.CharField(read_only=True, help_text="staff, api or plan (included in the plan).")
    note = serializers.CharField(read_only=True)
    created_at = serializers.DateTimeField(read_only=True)


class CreditDrawDownSerializer(serializers.Serializer):
    grant = serializers.IntegerField(help_text="The grant's id.")
    invoice = serializers.UUIDField(help_text="The invoice's id.")
    invoice_number = serializers.CharField(allow_null=True)
    kind = serializers.CharField(help_text="draw (by the invoice) or restore (the invoice was voided).")
    amount = serializers.CharField()
    remaining_after = serializers.CharField(help_text="The grant's remaining after this entry.")
    created_at = serializers.DateTimeField()


class CreditsSerializer(serializers.Serializer):
    balances = CreditBalanceSerializer(many=True)
    grants = CreditGrantSerializer(many=True)
    draw_downs = CreditDrawDownSerializer(many=True, help_text="The ledger, newest first (never edited).")


class CreditGrantCreateSerializer(serializers.Serializer):
    amount = serializers.CharField(max_length=40, help_text="Decimal string in the currency's minor units, above 0.")
    currency = serializers.CharField(max_length=3)
    expires_at = serializers.DateTimeField(required=False, allow_null=True,
                                           help_text="Pays invoices of periods that end by then; empty: never expires.")
    note = serializers.CharField(max_length=300, required=False, allow_blank=True)


class CouponApplySerializer(serializers.Serializer):
    code = serializers.CharField(max_length=40, help_text="The coupon's code.")


class SubscriptionCouponSerializer(serializers.Serializer):
    code = serializers.CharField(source="coupon.code")
    name = serializers.CharField(source="coupon.name")
    kind = serializers.CharField(source="coupon.kind")
    percent_off = serializers.SerializerMethodField()
    amount_off = serializers.SerializerMethodField()
    currency = serializers.CharField(source="coupon.currency")
    duration = serializers.CharField(source="coupon.duration")
    duration_periods = serializers.IntegerField(source="coupon.duration_periods", allow_null=True)
    applied_at = serializers.DateTimeField()
    via = serializers.CharField()

    def get_percent_off(self, redemption) -> str | None:
        value = redemption.coupon.percent_off
        return None if value is None else format_plain(value)

    def get_amount_off(self, redemption) -> str | None:
        coupon = redemption.coupon
        return None if coupon.amount_off is None else format_amount(coupon.amount_off, coupon.currency)
