"""Admin for credit notes: staff issue one on a finalized or paid invoice (Invoices → an invoice → "Issue a
credit note"), through the credit notes service, and list them; an issued credit note is read-only."""

from decimal import Decimal

from django import forms
from django.contrib import admin, messages
from django.http import Http404, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from metering.models import CreditNote, CreditNoteLine, CreditNoteOutcome, Invoice, InvoiceStatus
from metering.pricing import format_amount
from metering.services.billing.credit_notes import (
    CreditRequest,
    credit_note_issue,
    invoice_creditable,
    line_credited,
)
from portal.kernel import ApplicationError


class CreditNoteForm(forms.Form):
    """Per invoice line: credit all that remains of it, or an amount; and/or an amount on the whole invoice."""

    outcome = forms.ChoiceField(help_text="Where the money goes.")
    amount = forms.CharField(required=False, max_length=40, label="Amount on the invoice as a whole",
                             help_text="Optional, besides or instead of lines (e.g. a goodwill credit).")
    description = forms.CharField(required=False, max_length=300, label="Its description",
                                  help_text="Shown on the credit note (default: \"Credit on the invoice\").")
    reason = forms.CharField(required=False, max_length=2000, widget=forms.Textarea(attrs={"rows": 3}))
    reference = forms.CharField(required=False, max_length=200, help_text="The refund's bank or processor reference.")

    def __init__(self, *args, invoice: Invoice, **kwargs):
        super().__init__(*args, **kwargs)
        outcomes = [CreditNoteOutcome.REFUNDED, CreditNoteOutcome.BALANCE]
        if invoice.status == InvoiceStatus.FINALIZED:
            outcomes.insert(0, CreditNoteOutcome.INVOICE)
        self.fields["outcome"].choices = [(o.value, o.label) for o in outcomes]
        self.rows = []
        lines = list(invoice.lines.order_by("position"))
        credited = line_credited(line.pk for line in lines)
        for line in lines:
            left = line.amount - credited.get(line.pk, Decimal(0))
            full, part = f"line_{line.pk}_all", f"line_{line.pk}_amount"
            self.fields[full] = forms.BooleanField(required=False, label="all that remains")
            self.fields[part] = forms.CharField(required=False, max_length=40, label="or an amount")
            self.rows.append({"line": line, "left": format_amount(left, invoice.currency),
                              "amount": format_amount(line.amount, invoice.currency),
                              "full": self[full], "part": self[part], "creditable": left > 0})

    def requests(self) -> list[CreditRequest]:
        chosen = []
        for row in self.rows:
            line = row["line"]
            whole = self.cleaned_data.get(f"line_{line.pk}_all")
            part = (self.cleaned_data.get(f"line_{line.pk}_amount") or "").strip()
            if whole and part:
                raise ApplicationError(f"Line {line.position}: tick \"all that remains\" or give an amount, not both.")
            if whole or part:
                chosen.append(CreditRequest(invoice_line_id=line.pk, amount=part or None))
        amount = (self.cleaned_data.get("amount") or "").strip()
        if amount:
            chosen.append(CreditRequest(invoice_line_id=None, amount=amount,
                                        description=self.cleaned_data.get("description") or ""))
        return chosen


class CreditNoteLineInline(admin.TabularInline):
    model = CreditNoteLine
    extra = 0
    fields = ("position", "invoice_line", "description", "amount")
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(CreditNote)
class CreditNoteAdmin(admin.ModelAdmin):
    list_display = ("number", "invoice", "tenant", "amount_shown", "outcome", "issued_at", "issued_by", "document")
    list_filter = ("outcome", "currency", "issued_at")
    search_fields = ("number", "invoice__number", "tenant__slug", "reference")
    list_select_related = ("invoice", "tenant", "issued_by")
    date_hierarchy = "issued_at"
    fields = ("number", "invoice", "tenant", "amount_shown", "outcome", "reason", "reference", "issued_at",
              "issued_by", "document")
    readonly_fields = fields
    inlines = [CreditNoteLineInline]

    def has_add_permission(self, request):
        return False  # issued from its invoice (Invoices → an invoice → "Issue a credit note")

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # a ledger

    @admin.display(description="amount", ordering="amount")
    def amount_shown(self, note):
        return f"{format_amount(note.amount, note.currency)} {note.currency}"

    @admin.display(description="document")
    def document(self, note):
        return format_html('<a href="{}" target="_blank">view</a>', note.get_absolute_url())

    def get_urls(self):
        return [path("issue/<int:invoice_id>/", self.admin_site.admin_view(self.issue_view),
                     name="metering_creditnote_issue"), *super().get_urls()]

    def issue_view(self, request, invoice_id):
        if not request.user.has_perm("metering.add_creditnote"):
            raise Http404("No such page")
        invoice = get_object_or_404(Invoice.objects.select_related("tenant"), pk=invoice_id)
        back = reverse("admin:metering_invoice_change", args=[invoice.pk])
        if invoice.status not in (InvoiceStatus.FINALIZED, InvoiceStatus.PAID):
            self.message_user(request, f"Only a finalized or paid invoice takes credit notes ({invoice} is "
                                       f"{invoice.get_status_display().lower()}).", level=messages.ERROR)
            return HttpResponseRedirect(back)
        form = CreditNoteForm(request.POST or None, invoice=invoice)
        if request.method == "POST" and form.is_valid():
            try:
                note = credit_note_issue(invoice=invoice, outcome=form.cleaned_data["outcome"],
                                         lines=form.requests(), reason=form.cleaned_data["reason"],
                                         reference=form.cleaned_data["reference"], by=request.user)
            except ApplicationError as exc:
                form.add_error(None, exc.message)
            else:
                self.message_user(request, f"Credit note {note.number} issued: "
                                           f"{format_amount(note.amount, note.currency)} {note.currency}.",
                                  level=messages.SUCCESS)
                return HttpResponseRedirect(reverse("admin:metering_creditnote_change", args=[note.pk]))
        context = {
            **self.admin_site.each_context(request), "title": f"Issue a credit note on {invoice}",
            "invoice": invoice, "form": form, "opts": self.model._meta,
            "total": format_amount(invoice.total, invoice.currency),
            "creditable": format_amount(invoice_creditable(invoice), invoice.currency),
            "credited": format_amount(invoice.credited_amount, invoice.currency), "back": back,
        }
        return TemplateResponse(request, "admin/metering/creditnote/issue.html", context,
                                status=400 if request.method == "POST" else 200)
