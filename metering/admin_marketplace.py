"""Admin for the usage reported to AWS Marketplace: each record's state, AWS's answer and the last error,
filtered by state; "Send again" puts failed records back in the queue, and "Report now" runs the hourly task's
service (docs/marketplace.md)."""

from django.contrib import admin, messages
from django.http import HttpResponseRedirect
from django.urls import path, reverse

from metering.models import MarketplaceRecordStatus, MarketplaceUsageRecord
from metering.services.marketplace import marketplace_records_retry, marketplace_usage_report


@admin.register(MarketplaceUsageRecord)
class MarketplaceUsageRecordAdmin(admin.ModelAdmin):
    change_list_template = "admin/metering/marketplaceusagerecord/change_list.html"
    list_display = ("hour", "tenant", "dimension", "quantity", "status", "attempts", "last_attempt_at",
                    "metering_record_id", "last_error")
    list_filter = ("status", "dimension", "product_code", "tenant")
    search_fields = ("customer__customer_identifier", "tenant__slug", "metering_record_id")
    list_select_related = ("tenant", "customer")
    date_hierarchy = "hour"
    readonly_fields = [field.name for field in MarketplaceUsageRecord._meta.fields]
    actions = ["send_again"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.action(description="Send the selected failed records again (at the next report)")
    def send_again(self, request, queryset):
        count = marketplace_records_retry(ids=queryset.filter(status=MarketplaceRecordStatus.FAILED)
                                          .values_list("pk", flat=True))
        self.message_user(request, f"{count} failed record(s) queued again.")

    def get_urls(self):
        return [path("report-now/", self.admin_site.admin_view(self.report_now_view),
                     name="metering_marketplaceusagerecord_report_now"), *super().get_urls()]

    def report_now_view(self, request):
        changelist = reverse("admin:metering_marketplaceusagerecord_changelist")
        if request.method != "POST":
            return HttpResponseRedirect(changelist)
        result = marketplace_usage_report()
        self.message_user(request, "Reported to AWS Marketplace: " + ", ".join(
            f"{count} {name}" for name, count in result.as_dict().items()),
            level=messages.WARNING if result.failed or result.retrying else messages.SUCCESS)
        return HttpResponseRedirect(changelist)
