"""Admin for invoices and billing runs (registered by metering.admin)."""

import csv

from django.contrib import admin, messages
from django.http import HttpResponse, HttpResponseRedirect
from django.urls import path, reverse
from django.utils.html import format_html

from metering.models import BillingRun, BillingRunStatus, Invoice, InvoiceLine, InvoiceStatus, LineType
from metering.pricing import format_amount
from metering.services import billing as billing_services
from portal.errors import ApplicationError
from portal.heartbeat import liveness


class InvoiceLineInline(admin.TabularInline):
    model = InvoiceLine
    fk_name = "invoice"
    extra = 0
    fields = ("position", "type", "description", "quantity", "unit_amount", "amount", "period_start", "period_end", "adjusts")
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


class LateUsageFilter(admin.SimpleListFilter):
    title = "late usage"
    parameter_name = "late"

    def lookups(self, request, model_admin):
        return [("yes", "Has late-usage lines")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(lines__type=LineType.LATE_USAGE).distinct()
        return queryset


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
    list_display = ("__str__", "tenant", "period_start", "period_end", "status", "total_display", "late_lines",
                    "finalize_after", "document")
    list_filter = ("status", LateUsageFilter, "period_start", "currency", "tenant")
    search_fields = ("number", "tenant__slug", "tenant__name")
    date_hierarchy = "period_start"
    list_select_related = ("tenant",)
    inlines = [InvoiceLineInline]
    readonly_fields = [f.name for f in Invoice._meta.fields]
    actions = ["finalize", "void", "reissue", "mark_paid", "export_invoices_csv", "export_lines_csv"]

    def has_add_permission(self, request):
        return False  # invoices come from billing runs

    def has_delete_permission(self, request, obj=None):
        return False  # never deleted: voided and replaced

    def get_queryset(self, request):
        from django.db.models import Count, Q

        return super().get_queryset(request).annotate(
            _late=Count("lines", filter=Q(lines__type=LineType.LATE_USAGE))
        )

    @admin.display(description="total", ordering="total")
    def total_display(self, invoice):
        return f"{format_amount(invoice.total, invoice.currency)} {invoice.currency}"

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
            [i.number or "", i.tenant.slug, i.period_start.isoformat(), i.period_end.isoformat(), i.status,
             i.currency, format_amount(i.total, i.currency), i.finalized_at.isoformat() if i.finalized_at else "",
             i.replaces.number if i.replaces_id else ""]
            for i in queryset.select_related("tenant", "replaces").order_by("period_start", "tenant__slug")
        )
        return _csv_response("invoices.csv", ["number", "tenant", "period_start", "period_end", "status", "currency",
                                              "total", "finalized_at", "replaces"], rows)

    @admin.action(description="Export the lines of the selected invoices as CSV")
    def export_lines_csv(self, request, queryset):
        lines = InvoiceLine.objects.filter(invoice__in=queryset).select_related("invoice__tenant", "adjusts")
        rows = (
            [line.invoice.number or "", line.invoice.tenant.slug, line.position, line.type, line.description,
             line.plan_code, line.metric_code, line.model, "" if line.quantity is None else line.quantity.normalize(),
             "" if line.unit_amount is None else line.unit_amount.normalize(),
             format_amount(line.amount, line.invoice.currency), line.invoice.currency,
             line.adjusts.number if line.adjusts_id else ""]
            for line in lines.order_by("invoice__period_start", "invoice_id", "position")
        )
        return _csv_response("invoice-lines.csv", ["invoice", "tenant", "position", "type", "description", "plan",
                                                   "metric", "model", "quantity", "unit_amount", "amount", "currency",
                                                   "adjusts_invoice"], rows)


@admin.register(BillingRun)
class BillingRunAdmin(admin.ModelAdmin):
    list_display = ("pk", "as_of", "period", "status", "subscriptions_seen", "invoices_created", "invoices_finalized",
                    "triggered_by", "started_at", "finished_at", "heartbeat_at", "worker")
    list_filter = ("status", "triggered_by")
    readonly_fields = [*(f.name for f in BillingRun._meta.fields), "worker"]

    @admin.display(description="Worker")
    def worker(self, obj):
        return liveness(obj, running=obj.status == BillingRunStatus.RUNNING)

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
