"""Admin for tenants' subscription requests (upgrades, downgrades, cancellations): the history of every
subscription, and the queue of downgrades waiting for approval (SUBSCRIPTION_DOWNGRADE_REQUIRES_APPROVAL).

Staff approve or refuse a waiting downgrade with the list's actions, or on its page with a note the tenant is
told; both go through tenants.services.subscription_requests. Nothing else is edited here.
"""

from django import forms
from django.contrib import admin, messages

from portal.kernel import ApplicationError
from tenants.admin_writes import ServiceWriteAdmin
from tenants.models import SubscriptionRequest, SubscriptionRequestStatus
from tenants.services.subscription_requests import subscription_request_approve, subscription_request_refuse


def who(user) -> str:
    """A person as staff read the history: a tenant user's login (self-service) or staff."""
    if user is None:
        return "—"
    tenant_user = getattr(user, "tenant_user", None)
    if tenant_user is not None:
        return f"{tenant_user.email} (tenant user of {tenant_user.tenant.slug})"
    return f"{user.get_username()} (staff)" if user.is_staff else user.get_username()


class PeopleColumns:
    """Who asked for a request and who decided on it, as staff read them (the list, its page and the inline)."""

    @admin.display(description="requested by")
    def requested_by_shown(self, obj):
        return who(obj.requested_by)

    @admin.display(description="decided by")
    def decided_by_shown(self, obj):
        return who(obj.decided_by)


class DecisionForm(forms.ModelForm):
    """Input only: the decision and its note; saving calls the approve or refuse service."""

    decision = forms.ChoiceField(required=False, choices=[("", "—"), ("approve", "Approve"), ("refuse", "Refuse")])

    class Meta:
        model = SubscriptionRequest
        fields = ("note",)


@admin.register(SubscriptionRequest)
class SubscriptionRequestAdmin(PeopleColumns, ServiceWriteAdmin):
    form = DecisionForm
    list_display = ("subscription", "kind", "status", "to_version", "effective_at", "requested_by_shown", "created_at")
    list_filter = ("status", "kind")
    search_fields = ("subscription__tenant__slug", "subscription__tenant__name")
    list_select_related = ("subscription__tenant", "subscription__plan_version__plan", "to_version__plan",
                           "requested_by__tenant_user__tenant")
    readonly_fields = ("subscription", "kind", "status", "from_version", "to_version", "effective_at", "change",
                       "requested_by_shown", "decided_by_shown", "decided_at", "created_at", "updated_at")
    actions = ["approve", "refuse"]

    def has_add_permission(self, request):
        return False  # tenants ask (tenant area, API); staff change a plan on the subscription's page

    def has_delete_permission(self, request, obj=None):
        return False  # history

    def get_fields(self, request, obj=None):
        waiting = obj is not None and obj.status == SubscriptionRequestStatus.PENDING_APPROVAL
        return (*self.readonly_fields, *(("decision", "note") if waiting else ("note",)))

    def get_readonly_fields(self, request, obj=None):
        if obj is not None and obj.status == SubscriptionRequestStatus.PENDING_APPROVAL:
            return self.readonly_fields
        return (*self.readonly_fields, "note")

    def save_model(self, request, obj, form, change):
        decision = form.cleaned_data.get("decision")
        if decision == "approve":
            saved = subscription_request_approve(request=obj, by=request.user)
        elif decision == "refuse":
            saved = subscription_request_refuse(request=obj, by=request.user, note=form.cleaned_data.get("note", ""))
        else:
            saved = obj  # nothing decided: nothing changes
        self.saved_as(obj, saved)

    def _decide(self, request, queryset, service, verb):
        done, failed = 0, []
        for item in queryset.order_by("pk"):
            try:
                service(item)
                done += 1
            except ApplicationError as exc:  # said per request; the others are still decided
                failed.append(f"{item}: {exc.message}")
        if done:
            self.message_user(request, f"{verb}: {done}.", messages.SUCCESS)
        for message in failed:
            self.message_user(request, message, messages.ERROR)

    @admin.action(description="Approve the selected downgrades")
    def approve(self, request, queryset):
        self._decide(request, queryset, lambda item: subscription_request_approve(request=item, by=request.user),
                     "Approved")

    @admin.action(description="Refuse the selected downgrades")
    def refuse(self, request, queryset):
        self._decide(request, queryset, lambda item: subscription_request_refuse(request=item, by=request.user),
                     "Refused")
