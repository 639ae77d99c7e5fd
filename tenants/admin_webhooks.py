"""Admin for webhooks (registered by tenants.admin): staff add provider and tenant endpoints (the secret is shown
once, on the answer), disable, enable and rotate them; every event, delivery and attempt is listed, and a
delivery is resent from here. Writes go through tenants.webhooks' services."""

import json

from django import forms
from django.contrib import admin, messages
from django.template.response import TemplateResponse
from django.utils.html import format_html

from portal.kernel import ApplicationError
from tenants.admin_writes import ServiceWriteAdmin
from tenants.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookEvent
from tenants.webhooks.delivery import webhook_delivery_resend, webhook_endpoint_disable
from tenants.webhooks.endpoints import (
    webhook_endpoint_create,
    webhook_endpoint_enable,
    webhook_endpoint_rotate_secret,
    webhook_endpoint_update,
)
from tenants.webhooks.registry import EVENT_TYPES


class WebhookEndpointForm(forms.ModelForm):
    url = forms.URLField(max_length=2000, assume_scheme="https", label="URL")
    event_types = forms.MultipleChoiceField(
        choices=[(name, f"{name}{' (provider endpoints only)' if t.provider_only else ''}")
                 for name, t in EVENT_TYPES.items()],
        widget=forms.CheckboxSelectMultiple)

    class Meta:
        model = WebhookEndpoint
        fields = ("tenant", "url", "description", "event_types")


class AttemptInline(admin.TabularInline):
    model = WebhookAttempt
    extra = 0
    can_delete = False
    fields = ("number", "started_at", "finished_at", "succeeded", "status_code", "latency_ms", "response_excerpt",
              "error")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(ServiceWriteAdmin):
    form = WebhookEndpointForm
    list_display = ("url", "owner", "types_shown", "enabled", "failing_since", "disabled_reason", "created_at")
    list_filter = ("enabled", ("tenant", admin.EmptyFieldListFilter))
    search_fields = ("url", "description", "tenant__slug")
    list_select_related = ("tenant",)
    actions = ["disable", "enable", "rotate_secret"]
    readonly_fields = ("enabled", "disabled_at", "disabled_reason", "failing_since", "created_by", "created_at",
                       "updated_at")

    def get_fields(self, request, obj=None):
        editable = ("tenant", "url", "description", "event_types")
        return editable if obj is None else (*editable, *self.readonly_fields)

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_fields if obj is None else ("tenant", *self.readonly_fields)

    @admin.display(description="owner", ordering="tenant__slug")
    def owner(self, endpoint):
        return endpoint.tenant.slug if endpoint.tenant_id else "provider (every tenant)"

    @admin.display(description="events")
    def types_shown(self, endpoint):
        return ", ".join(endpoint.event_types)

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        if change:
            webhook_endpoint_update(endpoint=obj, url=data["url"], event_types=data["event_types"],
                                    description=data["description"])
            return
        saved, secret = webhook_endpoint_create(tenant=data.get("tenant"), url=data["url"],
                                                event_types=data["event_types"], description=data["description"],
                                                created_by=request.user)
        self.saved_as(obj, saved)
        request.webhook_secret = secret

    def response_add(self, request, obj, post_url_continue=None):
        secret = getattr(request, "webhook_secret", None)
        if secret is None:
            return super().response_add(request, obj, post_url_continue)
        return self._show_secrets(request, [(obj, secret)], "Endpoint added")

    def _show_secrets(self, request, shown, title):
        context = {**self.admin_site.each_context(request), "title": title, "shown": shown, "opts": self.opts}
        return TemplateResponse(request, "admin/tenants/webhookendpoint/secret_shown.html", context)

    @admin.action(description="Disable the selected endpoints (their pending deliveries fail)")
    def disable(self, request, queryset):
        for endpoint in queryset:
            webhook_endpoint_disable(endpoint=endpoint, reason=f"Disabled by {request.user.get_username()}.")
        self.message_user(request, f"Disabled: {queryset.count()}.", messages.SUCCESS)

    @admin.action(description="Enable the selected endpoints again")
    def enable(self, request, queryset):
        for endpoint in queryset:
            try:
                webhook_endpoint_enable(endpoint=endpoint)
            except ApplicationError as exc:
                self.message_user(request, f"{endpoint.url}: {exc.message}", messages.ERROR)

    @admin.action(description="Rotate the signing secret of the selected endpoints")
    def rotate_secret(self, request, queryset):
        shown = [webhook_endpoint_rotate_secret(endpoint=endpoint) for endpoint in queryset]
        return self._show_secrets(request, shown, "Secrets rotated")


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = ("webhook_id", "event_type", "endpoint", "status", "attempts", "last_status_code", "short_error",
                    "next_attempt_at", "delivered_at", "created_at")
    list_filter = ("status", "event__type", "created_at")
    search_fields = ("webhook_id", "event__public_id", "endpoint__url", "endpoint__tenant__slug")
    list_select_related = ("event", "endpoint__tenant")
    fields = ("webhook_id", "event", "endpoint", "status", "attempts", "next_attempt_at", "lease_until",
              "last_status_code", "last_error", "delivered_at", "resends", "created_at", "updated_at")
    readonly_fields = fields
    inlines = [AttemptInline]
    actions = ["resend"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False  # a record of what happened; Resend is the one operation

    def has_resend_permission(self, request):
        return request.user.has_perm("tenants.change_webhookdelivery")

    @admin.display(description="event", ordering="event__type")
    def event_type(self, delivery):
        return delivery.event.type

    @admin.display(description="last error")
    def short_error(self, delivery):
        return (delivery.last_error[:80] + "…") if len(delivery.last_error) > 80 else delivery.last_error

    @admin.action(description="Resend the selected deliveries now (a fresh set of attempts, the same webhook-id)",
                  permissions=["resend"])
    def resend(self, request, queryset):
        done = 0
        for delivery in queryset:
            try:
                webhook_delivery_resend(delivery=delivery)
            except ApplicationError as exc:
                self.message_user(request, f"{delivery.webhook_id}: {exc.message}", messages.ERROR)
                continue
            self.log_change(request, delivery, "Resent")
            done += 1
        if done:
            self.message_user(request, f"Queued again: {done}.", messages.SUCCESS)


@admin.register(WebhookEvent)
class WebhookEventAdmin(admin.ModelAdmin):
    list_display = ("public_id", "type", "tenant", "created_at")
    list_filter = ("type", "created_at")
    search_fields = ("public_id", "tenant__slug")
    list_select_related = ("tenant",)
    fields = ("public_id", "type", "tenant", "created_at", "payload_shown")
    readonly_fields = fields

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="payload")
    def payload_shown(self, event):
        return format_html('<pre style="white-space: pre-wrap">{}</pre>', json.dumps(json.loads(event.payload), indent=2))
