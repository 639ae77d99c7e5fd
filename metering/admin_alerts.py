"""Admin for alerts: staff set usage and spend thresholds for any tenant (through the alert services), see
when each fired, and the notices staff were sent about the pipeline."""

from django import forms
from django.contrib import admin

from metering.models import AlertKind, StaffNotice, UsageAlert, UsageAlertFiring
from metering.services.alerts import alert_description, usage_alert_create
from tenants.admin_writes import ServiceWriteAdmin


class UsageAlertForm(forms.ModelForm):
    class Meta:
        model = UsageAlert
        fields = ("tenant", "kind", "metric", "threshold", "channel")
        help_texts = {"metric": "The metric of a usage alert; empty for a spend alert (the projected bill)."}


class FiringInline(admin.TabularInline):
    model = UsageAlertFiring
    extra = 0
    can_delete = False
    fields = readonly_fields = ("fired_at", "period_start", "period_end", "value", "currency")

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(UsageAlert)
class UsageAlertAdmin(ServiceWriteAdmin):
    form = UsageAlertForm
    list_display = ("tenant", "described", "channel", "last_fired", "created_at")
    list_filter = ("kind", "channel")
    search_fields = ("tenant__slug", "tenant__name", "metric__code")
    list_select_related = ("tenant", "metric")
    inlines = [FiringInline]

    def get_inlines(self, request, obj):
        return self.inlines if obj is not None else []  # a new alert has not fired

    def get_readonly_fields(self, request, obj=None):
        # An alert is replaced, not edited: a new threshold is a new alert (its firings stay with the old one).
        return () if obj is None else ("tenant", "kind", "metric", "threshold", "channel")

    @admin.display(description="alert")
    def described(self, alert):
        return alert_description(alert)

    @admin.display(description="last fired")
    def last_fired(self, alert):
        firing = alert.firings.order_by("-fired_at").first()
        return firing.fired_at if firing else "never"

    def save_model(self, request, obj, form, change):
        if change:
            return
        data = form.cleaned_data
        saved = usage_alert_create(tenant=data["tenant"], kind=data["kind"],
                                   metric=data["metric"] if data["kind"] == AlertKind.USAGE else None,
                                   threshold=data["threshold"], channel=data["channel"], created_by=request.user)
        self.saved_as(obj, saved)


@admin.register(StaffNotice)
class StaffNoticeAdmin(admin.ModelAdmin):
    list_display = ("kind", "sent_at", "key")
    list_filter = ("kind",)
    readonly_fields = ("kind", "key", "message", "sent_at")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
