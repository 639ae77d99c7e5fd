"""Admin for payments: staff record money received against a finalized invoice (in part or in full, through
the payments service: the payment that completes an invoice marks it paid), and see the reminders sent."""

from django import forms
from django.contrib import admin

from metering.models import Invoice, InvoicePayment, InvoiceReminder, InvoiceStatus
from metering.pricing import format_amount
from metering.services.billing.payments import invoice_payment_record
from tenants.admin_writes import ServiceWriteAdmin


class PaymentForm(forms.ModelForm):
    invoice = forms.ModelChoiceField(queryset=Invoice.objects.filter(status=InvoiceStatus.FINALIZED)
                                     .select_related("tenant").order_by("due_date", "number"),
                                     help_text="A finalized invoice not paid in full yet.")

    class Meta:
        model = InvoicePayment
        fields = ("invoice", "amount", "received_at", "reference")


@admin.register(InvoicePayment)
class InvoicePaymentAdmin(ServiceWriteAdmin):
    form = PaymentForm
    list_display = ("invoice", "tenant", "amount_shown", "received_at", "reference", "recorded_by")
    list_select_related = ("invoice", "invoice__tenant", "recorded_by")
    search_fields = ("invoice__number", "invoice__tenant__slug", "reference")
    date_hierarchy = "received_at"

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else ("invoice", "amount", "received_at", "reference", "recorded_by", "created_at")

    def has_delete_permission(self, request, obj=None):
        return False  # a ledger: a wrong payment is corrected by voiding the invoice

    @admin.display(description="tenant")
    def tenant(self, payment):
        return payment.invoice.tenant

    @admin.display(description="amount")
    def amount_shown(self, payment):
        return f"{format_amount(payment.amount, payment.invoice.currency)} {payment.invoice.currency}"

    def save_model(self, request, obj, form, change):
        if change:
            return
        data = form.cleaned_data
        saved = invoice_payment_record(invoice=data["invoice"], amount=data["amount"], received_at=data["received_at"],
                                       reference=data["reference"], by=request.user)
        self.saved_as(obj, saved)


@admin.register(InvoiceReminder)
class InvoiceReminderAdmin(admin.ModelAdmin):
    list_display = ("invoice", "step", "sent_at")
    list_select_related = ("invoice",)
    search_fields = ("invoice__number", "invoice__tenant__slug")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
