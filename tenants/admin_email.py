"""Admin for email deliveries (registered by tenants.admin): read-only, searchable, with a Resend action."""

from django.contrib import admin, messages
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html

from portal.kernel import ApplicationError
from tenants.models import EmailDelivery
from tenants.services.email import email_delivery_resend


@admin.register(EmailDelivery)
class EmailDeliveryAdmin(admin.ModelAdmin):
    list_display = ("created_at", "kind", "recipient", "subject", "about_link", "status", "attempts", "short_error",
                    "next_attempt_at", "sent_at", "resends")
    list_filter = ("status", "kind", "created_at")
    search_fields = ("recipient", "subject", "tenant__slug")
    list_select_related = ("about_type", "tenant")
    fields = ("kind", "recipient", "subject", "about_link", "tenant", "status", "attempts", "last_error",
              "next_attempt_at", "expires_at", "sent_at", "resends", "resent_at", "resent_by", "created_at",
              "updated_at", "body_shown")
    readonly_fields = fields
    actions = ["resend"]

    def has_add_permission(self, request):
        return False  # emails are written by what causes them

    def has_change_permission(self, request, obj=None):
        return False  # a record of what happened; Resend is the one operation

    def has_delete_permission(self, request, obj=None):
        return False

    def has_resend_permission(self, request):
        return request.user.has_perm("tenants.change_emaildelivery")

    @admin.display(description="about")
    def about_link(self, delivery):
        if delivery.about_type_id is None:
            return "–"
        label = f"{delivery.about_type.model} {delivery.about_id}"
        try:
            url = reverse(f"admin:{delivery.about_type.app_label}_{delivery.about_type.model}_change",
                          args=[delivery.about_id])
        except NoReverseMatch:
            return label
        return format_html('<a href="{}">{}</a>', url, label)

    @admin.display(description="last error")
    def short_error(self, delivery):
        return (delivery.last_error[:80] + "…") if len(delivery.last_error) > 80 else delivery.last_error

    @admin.display(description="body")
    def body_shown(self, delivery):
        if delivery.secret:
            return "(holds a secret: never shown, kept encrypted until sent, then wiped)"
        return format_html('<pre style="white-space: pre-wrap">{}</pre>', delivery.body)

    @admin.action(description="Resend the selected emails now (a fresh set of attempts)", permissions=["resend"])
    def resend(self, request, queryset):
        done, failed = 0, []
        for delivery in queryset:
            try:
                email_delivery_resend(delivery=delivery, by=request.user)
            except ApplicationError as exc:
                failed.append(exc.message)
                continue
            self.log_change(request, delivery, "Resent")
            done += 1
        if done:
            self.message_user(request, f"Queued again: {done}.", messages.SUCCESS)
        for message in failed:
            self.message_user(request, message, messages.ERROR)
