"""Admin for usage, sync runs and posted events (their receipts and rejections; invoices and billing runs are in admin_billing; metrics, part of the catalog,
in tenants.admin_metrics)."""

from decimal import Decimal, localcontext

from django.contrib import admin

from metering import (  # noqa: F401  (register the other admins)
    admin_alerts,
    admin_billing,
    admin_credit_notes,
    admin_credits,
    admin_marketplace,
    admin_payments,
)
from metering.models import (
    EventReceipt,
    EventRejection,
    HourlyUsage,
    SyncCursor,
    SyncOutcome,
    SyncRun,
    UnattributedUsage,
)
from metering.pricing import format_plain
from metering.pricing.currency import ARITHMETIC_CONTEXT
from metering.runs import liveness
from tenants.models import Metric


class _ReadOnlyAdmin(admin.ModelAdmin):
    """Written by the usage sync only: shown, never edited by hand."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


def in_unit(raw, metric: Metric) -> str:
    """A raw aggregate (bytes for a metric counted in MB) in the metric's unit, after its divisor: "17.440363 MB"."""
    with localcontext(ARITHMETIC_CONTEXT):  # six places, as the usage rows keep: a divisor of 3 would never end
        value = format_plain((raw / metric.divisor).quantize(Decimal("0.000001")))
    return f"{value} {metric.unit}" if metric.unit else value


class _UsageColumns:
    """The usage rows keep raw aggregates; the admin shows them in the metric's unit, the raw figure beside it."""

    @admin.display(description="usage (in the metric's unit)", ordering="value")
    def usage(self, row):
        return in_unit(row.value, row.metric)

    @admin.display(description="raw value (before the divisor)", ordering="value")
    def raw_value(self, row):
        return format_plain(row.value)


@admin.register(HourlyUsage)
class HourlyUsageAdmin(_UsageColumns, _ReadOnlyAdmin):
    list_display = ("hour", "tenant", "metric", "usage", "raw_value", "updated_at")
    list_filter = ("metric", "tenant")
    search_fields = ("tenant__slug",)
    date_hierarchy = "hour"
    list_select_related = ("tenant", "metric")


@admin.register(UnattributedUsage)
class UnattributedUsageAdmin(_UsageColumns, _ReadOnlyAdmin):
    list_display = ("hour", "tenant_key", "user_key", "metric", "usage", "raw_value", "updated_at")
    list_select_related = ("metric",)
    list_filter = ("metric",)
    search_fields = ("tenant_key", "user_key")
    date_hierarchy = "hour"


@admin.register(SyncRun)
class SyncRunAdmin(_ReadOnlyAdmin):
    list_display = ("started_at", "backend", "window_start", "window_end", "outcome", "rows_read", "rows_written",
                    "unattributed_rows", "attempts", "duration_seconds", "triggered_by", "heartbeat_at", "worker")
    list_filter = ("outcome", "backend", "triggered_by")
    readonly_fields = [*(f.name for f in SyncRun._meta.fields), "worker"]
    change_list_template = "admin/metering/syncrun/change_list.html"

    @admin.display(description="Worker")
    def worker(self, obj):
        return liveness(obj, running=obj.outcome == SyncOutcome.RUNNING)

    def has_change_permission(self, request, obj=None):
        # Viewable (read-only fields) so the error text can be read; nothing can be saved.
        return request.method in ("GET", "HEAD") and super(_ReadOnlyAdmin, self).has_change_permission(request, obj)

    def get_urls(self):
        from django.urls import path

        return [
            path("sync-now/", self.admin_site.admin_view(self.sync_now_view), name="metering_syncrun_sync_now"),
            *super().get_urls(),
        ]

    def sync_now_view(self, request):
        """POST: run the usage sync now (from the cursor), as the beat task does."""
        from django.contrib import messages
        from django.http import HttpResponseNotAllowed
        from django.shortcuts import redirect

        from metering.lake import LakeError
        from metering.services.sync import usage_sync

        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not request.user.has_perm("metering.view_syncrun"):
            from django.core.exceptions import PermissionDenied

            raise PermissionDenied
        try:
            run = usage_sync(triggered_by="admin")
        except LakeError as exc:
            messages.error(request, f"Usage sync failed: {exc}")
        else:
            messages.success(request, f"Usage sync done: {run.rows_written} hourly rows "
                                      f"({run.duration_seconds:.1f} s).")
        return redirect("admin:metering_syncrun_changelist")


@admin.register(SyncCursor)
class SyncCursorAdmin(_ReadOnlyAdmin):
    list_display = ("name", "synced_until", "updated_at")


from metering.models import DailyUsage  # noqa: E402


@admin.register(DailyUsage)
class DailyUsageAdmin(_UsageColumns, _ReadOnlyAdmin):
    """Each tenant's UTC day per metric, its exact figure (the usage sync keeps it with the hours): what the
    dashboards chart and the API's day buckets serve."""

    list_display = ("day", "tenant", "metric", "usage", "busiest_hour", "raw_value")

    @admin.display(description="busiest hour (in the metric's unit)", ordering="peak")
    def busiest_hour(self, row):
        return in_unit(row.peak, row.metric)
    list_filter = ("metric", "tenant")
    search_fields = ("tenant__slug",)
    date_hierarchy = "day"
    list_select_related = ("tenant", "metric")


from metering.models import MonthlyUsage  # noqa: E402


@admin.register(MonthlyUsage)
class MonthlyUsageAdmin(_UsageColumns, _ReadOnlyAdmin):
    """Each tenant's calendar month per metric (the usage sync keeps it with the days): what a calendar
    month's invoice bills for max and unique_count metrics, and the API's month buckets."""

    list_display = ("month", "tenant", "metric", "usage", "raw_value")
    list_filter = ("metric", "tenant")
    search_fields = ("tenant__slug",)
    date_hierarchy = "month"
    list_select_related = ("tenant", "metric")


@admin.register(EventReceipt)
class EventReceiptAdmin(_ReadOnlyAdmin):
    """The accepted events (written by POST /api/v1/events/ and send_events only; kept forever)."""

    list_display = ("received_at", "tenant", "transaction_id", "code", "timestamp")
    list_filter = ("tenant", "code")
    search_fields = ("transaction_id",)
    date_hierarchy = "received_at"
    list_select_related = ("tenant",)
    show_full_result_count = False  # the table grows without bound: no count(*) of all of it per page


@admin.register(EventRejection)
class EventRejectionAdmin(_ReadOnlyAdmin):
    """Refused events with their reasons (kept EVENTS_REJECTIONS_KEEP_DAYS days)."""

    list_display = ("received_at", "tenant", "transaction_id", "index", "error")
    list_filter = ("tenant",)
    search_fields = ("transaction_id",)
    date_hierarchy = "received_at"
    list_select_related = ("tenant",)
