"""Admin for invoices and billing runs (registered by metering.admin)."""

import csv
import json
from decimal import Decimal

from django.contrib import admin, messages
from django.contrib.contenttypes.models import ContentType
from django.db.models import Count, OuterRef, Q, Subquery
from django.http import HttpResponse, HttpResponseRedirect
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from metering.models import (
    BillingChunkStatus,
    BillingRun,
    BillingRunChunk,
    BillingRunStatus,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    LineType,
)
from metering.pricing import format_amount, format_plain, format_unit_amount, isoformat_local, local_label
from metering.runs import liveness
from metering.services import billing as billing_services
from portal.kernel import ApplicationError
from tenants.models import DeliveryStatus, EmailDelivery, EmailKind


def tier_range(tier: dict) -> str:
    """A stored tier's range as an invoice reads it: "0 to 10000", "above 1000000"."""
    return f"above {tier['from']}" if tier["up_to"] is None else f"{tier['from']} to {tier['up_to']}"


class InvoiceLineInline(admin.TabularInline):
    model = InvoiceLine
    fk_name = "invoice"
    extra = 0
    fields = ("position", "type", "description", "quantity_shown", "unit_price", "amount_shown", "tier_breakdown",
              "period_start", "period_end", "adjusts")
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    @admin.display(description="quantity")
    def quantity_shown(self, line):
        return "" if line.quantity is None else format_plain(line.quantity)

    @admin.display(description="unit price")
    def unit_price(self, line):
        return "" if line.unit_amount is None else format_unit_amount(line.unit_amount, line.invoice.currency)

    @admin.display(description="amount")
    def amount_shown(self, line):
        return format_amount(line.amount, line.invoice.currency)

    @admin.display(description="tiers")
    def tier_breakdown(self, line):
        # One row per tier: its range, the units in it at their price (plus its flat amount), and its amount.
        return format_html_join(
            mark_safe("<br>"), "{}: {} × {}{} = {}",
            ((tier_range(t), t["units"], t["unit_amount"], f" + {t['flat_amount']}" if Decimal(t["flat_amount"]) else "",
              t["amount"]) for t in line.tiers),
        ) or "-"


class EmailStateFilter(admin.SimpleListFilter):
    title = "email"
    parameter_name = "email"

    def lookups(self, request, model_admin):
        return [(DeliveryStatus.PENDING, "Not sent yet"), (DeliveryStatus.FAILED, "Failed"), (DeliveryStatus.SENT, "Sent")]

    def queryset(self, request, queryset):
        return queryset.filter(_email=self.value()) if self.value() else queryset


class LateUsageFilter(admin.SimpleListFilter):
    title = "late usage"
    parameter_name = "late"

    def lookups(self, request, model_admin):
        return [("yes", "Has late-usage lines")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(lines__type=LineType.LATE_USAGE).distinct()
        return queryset


def _invoice_emails():
    return EmailDelivery.objects.filter(kind=EmailKind.INVOICE, about_type=ContentType.objects.get_for_model(Invoice))


def _csv_response(filename: str, header: list[str], rows) -> HttpResponse:
    response = HttpResponse(content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    writer = csv.writer(response)
    writer.writerow(header)
    writer.writerows(rows)
    return response


@admin.register(Invoice)
class InvoiceAdmin(admin.ModelAdmin):
    change_list_template = "admin/metering/invoice/change_list.html"
    list_display = ("__str__", "tenant", "period", "status", "total_display", "late_lines",
                    "finalize_after", "email_state", "document")
    list_filter = ("status", LateUsageFilter, EmailStateFilter, "period_start", "currency", "tenant")
    search_fields = ("number", "tenant__slug", "tenant__name")
    date_hierarchy = "period_start"
    list_select_related = ("tenant",)
    inlines = [InvoiceLineInline]
    # Everything is shown, nothing is edited here: a finalized invoice changes only through its actions (void,
    # reissue, mark paid), a draft only by being re-priced.
    fields = ("number", "status", "tenant", "subscription", "currency", "period", "period_start", "period_end",
              "order_display", "total_display", "finalized_at", "payment_terms", "due_date", "paid_at", "credit_notes",
              "voided_at", "void_reason", "replaces", "finalize_after", "billing_run", "public_id", "created_at",
              "updated_at", "email_delivery")
    readonly_fields = fields
    actions = ["finalize", "void", "reissue", "mark_paid", "export_invoices_csv", "export_lines_csv"]

    def has_add_permission(self, request):
        return False  # invoices come from billing runs

    def has_delete_permission(self, request, obj=None):
        return False  # never deleted: voided and replaced

    def has_change_permission(self, request, obj=None):
        # A sent invoice is read-only: its page has no Save buttons and a POST to it is refused (403).
        if obj is not None and not obj.is_editable:
            return False
        return super().has_change_permission(request, obj)

    def get_queryset(self, request):
        from django.db.models import Count, Q

        return super().get_queryset(request).annotate(
            _late=Count("lines", filter=Q(lines__type=LineType.LATE_USAGE)),
            _email=Subquery(_invoice_emails().filter(about_id=OuterRef("pk")).values("status")[:1]),
        )

    @admin.display(description="email", ordering="_email")
    def email_state(self, invoice):
        return DeliveryStatus(invoice._email).label if invoice._email else ""

    @admin.display(description="email")
    def email_delivery(self, invoice):
        delivery = _invoice_emails().filter(about_id=invoice.pk).first()
        if delivery is None:
            return "none (a draft is emailed when finalized)" if invoice.status == InvoiceStatus.DRAFT else "none"
        state = f"{delivery.get_status_display()} to {delivery.recipient}, {delivery.attempts} attempt(s)"
        if delivery.sent_at:
            state += f", sent {delivery.sent_at:%Y-%m-%d %H:%M} UTC"
        if delivery.last_error:
            state += f"; last error: {delivery.last_error}"
        url = reverse("admin:tenants_emaildelivery_change", args=[delivery.pk])
        return format_html('{} (<a href="{}">details, Resend</a>)', state, url)

    @admin.display(description="period (the tenant's clock)", ordering="period_start")
    def period(self, invoice):
        zone = invoice.tenant.zone
        return (f"{local_label(invoice.period_start, zone)} to {local_label(invoice.period_end, zone)}"
                f"{'' if invoice.tenant.time_zone == 'UTC' else f' ({invoice.tenant.time_zone})'}")

    @admin.display(description="total", ordering="total")
    def total_display(self, invoice):
        return f"{format_amount(invoice.total, invoice.currency)} {invoice.currency}"

    @admin.display(description="subtotal → total")
    def order_display(self, invoice):
        """The order after the lines (docs/plans.md): each step as it was computed."""
        c = invoice.currency
        parts = [f"subtotal {format_amount(invoice.subtotal, c)}"]
        for discount in invoice.discounts.all():
            parts.append(f"{discount.description} −{format_amount(discount.amount, c)}")
        if invoice.shows_tax:
            kind = "included" if invoice.tax_inclusive else "added"
            parts.append(f"{invoice.tax_name} ({invoice.tax_percentage.normalize():f} %, {kind}) "
                         f"{format_amount(invoice.tax, c)}")
        parts.append(f"total {format_amount(invoice.total, c)}")
        if invoice.credits_applied:
            parts.append(f"credits −{format_amount(invoice.credits_applied, c)}")
        return "; ".join(parts) + f" {c}"

    @admin.display(description="credit notes")
    def credit_notes(self, invoice):
        from metering.services.billing.credit_notes import invoice_creditable

        notes = format_html_join(
            mark_safe("<br>"), '<a href="{}">{}</a>: {} {} ({})',
            ((reverse("admin:metering_creditnote_change", args=[note.pk]), note.number,
              format_amount(note.amount, note.currency), note.currency, note.get_outcome_display())
             for note in invoice.credit_notes.all()))
        creditable = invoice_creditable(invoice)
        summary = format_html("credited {} {}, {} remains creditable", format_amount(invoice.credited_amount, invoice.currency),
                              invoice.currency, format_amount(creditable, invoice.currency))
        issue = format_html(' · <a href="{}" id="issue-credit-note">Issue a credit note</a>',
                            reverse("admin:metering_creditnote_issue", args=[invoice.pk])) if creditable > 0 else ""
        return format_html("{}{}{}{}", notes, mark_safe("<br>") if notes else "", summary, issue)

    @admin.display(description="payment terms")
    def payment_terms(self, invoice):
        return "-" if invoice.payment_terms_days is None else f"{invoice.payment_terms_days} days after issue"

    @admin.display(description="late lines", ordering="_late")
    def late_lines(self, invoice):
        return invoice._late or ""

    @admin.display(description="document")
    def document(self, invoice):
        return format_html('<a href="{}" target="_blank">view</a>', invoice.get_absolute_url())

    def get_urls(self):
        return [
            path("run-billing/", self.admin_site.admin_view(self.run_billing_view), name="metering_invoice_run_billing"),
            *super().get_urls(),
        ]

    def run_billing_view(self, request):
        if request.method != "POST":
            return HttpResponseRedirect(reverse("admin:metering_invoice_changelist"))
        try:
            result = billing_services.billing_run(triggered_by=f"admin:{request.user.get_username()}")
        except Exception as exc:  # shown to the operator, recorded on the BillingRun
            self.message_user(request, f"Billing run failed: {exc}", level=messages.ERROR)
        else:
            level = messages.SUCCESS if not result.run.errors else messages.WARNING
            self.message_user(
                request,
                f"Billing run {result.run.pk}: {len(result.created)} invoices created, {len(result.finalized)} finalized."
                + (f" Errors: {result.run.errors}" if result.run.errors else ""),
                level=level,
            )
        return HttpResponseRedirect(reverse("admin:metering_invoice_changelist"))

    def _each(self, request, queryset, service, verb):
        done = 0
        for invoice in queryset:
            try:
                service(invoice)
                done += 1
            except ApplicationError as exc:
                self.message_user(request, exc.message, level=messages.ERROR)
        if done:
            self.message_user(request, f"{verb}: {done}.", level=messages.SUCCESS)

    @admin.action(description="Finalize the selected drafts now (re-priced with current usage)")
    def finalize(self, request, queryset):
        self._each(request, queryset.filter(status=InvoiceStatus.DRAFT),
                   lambda i: billing_services.invoice_finalize(invoice=i), "Finalized")

    @admin.action(description="Void the selected invoices")
    def void(self, request, queryset):
        self._each(request, queryset, lambda i: billing_services.invoice_void(invoice=i, reason=f"voided by {request.user}"),
                   "Voided")

    @admin.action(description="Void and reissue the selected invoices (a new draft replaces each)")
    def reissue(self, request, queryset):
        self._each(request, queryset, lambda i: billing_services.invoice_reissue(invoice=i, reason=f"reissued by {request.user}"),
                   "Reissued")

    @admin.action(description="Mark the selected invoices paid")
    def mark_paid(self, request, queryset):
        self._each(request, queryset, lambda i: billing_services.invoice_mark_paid(invoice=i), "Marked paid")

    @admin.action(description="Export the selected invoices as CSV")
    def export_invoices_csv(self, request, queryset):
        rows = (
            [i.number or "", i.tenant.slug, isoformat_local(i.period_start, i.tenant.zone),
             isoformat_local(i.period_end, i.tenant.zone), i.status,
             i.currency, format_amount(i.total, i.currency), i.finalized_at.isoformat() if i.finalized_at else "",
             i.replaces.number if i.replaces_id else "", i.due_date.isoformat() if i.due_date else "",
             "" if i.payment_terms_days is None else i.payment_terms_days]
            for i in queryset.select_related("tenant", "replaces").order_by("period_start", "tenant__slug")
        )
        return _csv_response("invoices.csv", ["number", "tenant", "period_start", "period_end", "status", "currency",
                                              "total", "finalized_at", "replaces", "due_date", "payment_terms_days"],
                             rows)

    @admin.action(description="Export the lines of the selected invoices as CSV")
    def export_lines_csv(self, request, queryset):
        lines = InvoiceLine.objects.filter(invoice__in=queryset).select_related("invoice__tenant", "adjusts")
        rows = (
            [line.invoice.number or "", line.invoice.tenant.slug, line.position, line.type, line.description,
             line.plan_code, line.metric_code, line.model, "" if line.quantity is None else format_plain(line.quantity),
             "" if line.unit_amount is None else format_unit_amount(line.unit_amount, line.invoice.currency),
             format_amount(line.amount, line.invoice.currency), line.invoice.currency,
             line.adjusts.number if line.adjusts_id else "",
             json.dumps(line.tiers, separators=(",", ":")) if line.tiers else ""]
            for line in lines.order_by("invoice__period_start", "invoice_id", "position")
        )
        return _csv_response("invoice-lines.csv", ["invoice", "tenant", "position", "type", "description", "plan",
                                                   "metric", "model", "quantity", "unit_amount", "amount", "currency",
                                                   "adjusts_invoice", "tiers"], rows)


class BillingRunChunkInline(admin.TabularInline):
    """The run's chunks: which worker has or had each, how often it was taken, and what it billed."""

    model = BillingRunChunk
    extra = 0
    fields = ("position", "subscription_range", "subscriptions", "status", "attempts", "worker", "invoices_created",
              "invoices_finalized", "started_at", "finished_at", "liveness", "errors")
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    @admin.display(description="subscription ids")
    def subscription_range(self, chunk):
        last = "" if chunk.last_subscription_id is None else chunk.last_subscription_id
        return f"{chunk.first_subscription_id}–{last}" if last != "" else f"{chunk.first_subscription_id} and above"

    @admin.display(description="worker state")
    def liveness(self, chunk):
        return liveness(chunk, running=chunk.status == BillingChunkStatus.RUNNING)


@admin.register(BillingRun)
class BillingRunAdmin(admin.ModelAdmin):
    list_display = ("pk", "as_of", "period", "status", "progress", "subscriptions_seen", "invoices_created",
                    "invoices_finalized", "triggered_by", "started_at", "finished_at", "heartbeat_at", "worker")
    list_filter = ("status", "triggered_by")
    readonly_fields = [*(f.name for f in BillingRun._meta.fields), "progress", "worker"]
    inlines = [BillingRunChunkInline]

    def get_queryset(self, request):
        chunks = {state: Count("chunks", filter=Q(chunks__status=state)) for state in BillingChunkStatus.values}
        return super().get_queryset(request).annotate(
            _chunks=Count("chunks"), _taken_again=Count("chunks", filter=Q(chunks__attempts__gt=1)),
            **{f"_chunks_{state}": count for state, count in chunks.items()})

    @admin.display(description="Progress")
    def progress(self, obj):
        """Chunks done of all, with those running, failed and taken again after a worker died."""
        if not obj._chunks:
            return "-"
        parts = [f"{obj._chunks_done} of {obj._chunks} chunks done"]
        parts += [f"{count} {label}" for count, label in (
            (obj._chunks_running, "running"), (obj._chunks_failed, "failed"),
            (obj._taken_again, "taken again after a worker stopped")) if count]
        return ", ".join(parts)

    @admin.display(description="Worker")
    def worker(self, obj):
        return liveness(obj, running=obj.status == BillingRunStatus.RUNNING)

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
