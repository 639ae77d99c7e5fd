"""The tenant manages its subscription over the API (docs/plans.md, "Changing plan").

- GET /api/v1/subscription/: the active subscription, its current period, what is waiting (a scheduled
  cancellation or downgrade, or one waiting for staff approval) and the history of its requests.
- GET /api/v1/plans/: the plans on offer to this tenant, each saying whether moving there is an upgrade (from
  now) or a downgrade (from the next period).
- GET /api/v1/subscription/preview/?plan=CODE: the first invoice on that plan, priced like the projected bill.
- POST /api/v1/subscription/change/ {"plan": CODE}, POST /api/v1/subscription/cancel/ (at the period's end),
  POST /api/v1/subscription/withdraw/ (undo the cancellation, or withdraw the downgrade).

Reads take a tenant user or an API key with `usage:read`; changes take the tenant's owner (an ID token or the
tenant area's session), never an API key, and staff under /api/v1/admin/tenants/<tenant>/subscription/...
"""

from __future__ import annotations

from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, permissions, serializers
from rest_framework.response import Response

from metering.api.base import TenantScopedView, caller_tenant_user
from metering.api.serializers import ProjectedBillSerializer
from metering.api.views import USAGE_READ, errors, priced_period_data
from metering.pricing import format_amount
from metering.selectors.billing import self_service_preview
from metering.services.billing.periods import subscription_period
from metering.services.self_service import (
    subscription_self_cancel,
    subscription_self_change,
    subscription_self_withdraw,
)
from tenants.models import SubscriptionRequest, TenantRole
from tenants.selectors import plans_on_offer, subscription_requests_of, tenant_active_subscription
from tenants.services.subscription_requests import open_request, plan_change_kind

HISTORY_SHOWN = 20

# --- serializers -------------------------------------------------------------------------------------


class SubscriptionRequestSerializer(serializers.ModelSerializer):
    from_plan = serializers.CharField(source="from_version.plan.code", read_only=True)
    to_plan = serializers.CharField(source="to_version.plan.code", read_only=True, allow_null=True, default=None)
    requested_by = serializers.SerializerMethodField(help_text="Email (or login) of who asked; null: unknown.")

    class Meta:
        model = SubscriptionRequest
        fields = ["id", "kind", "status", "from_plan", "to_plan", "effective_at", "requested_by", "decided_at",
                  "note", "created_at"]

    def get_requested_by(self, obj) -> str | None:
        user = obj.requested_by
        return (user.email or user.get_username()) if user is not None else None


class SubscriptionStateSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    plan = serializers.CharField(help_text="The plan's code.")
    plan_name = serializers.CharField()
    plan_version = serializers.IntegerField()
    currency = serializers.CharField()
    interval = serializers.CharField()
    base_fee = serializers.CharField(help_text="Decimal string with exactly the currency's minor digits.")
    status = serializers.CharField()
    billing_cycle = serializers.CharField()
    started_at = serializers.DateTimeField()
    trial_ends_at = serializers.DateTimeField(allow_null=True)
    period_start = serializers.DateTimeField()
    period_end = serializers.DateTimeField()
    waiting = SubscriptionRequestSerializer(allow_null=True, help_text=(
        "What is still to happen: a cancellation or downgrade (status scheduled), or a downgrade waiting for "
        "staff approval (status pending_approval); null when nothing is."))
    requests = SubscriptionRequestSerializer(many=True, help_text="The latest requests, newest first.")


class OfferedPlanSerializer(serializers.Serializer):
    plan = serializers.CharField(help_text="The plan's code: what /subscription/change/ takes.")
    name = serializers.CharField()
    version = serializers.IntegerField()
    currency = serializers.CharField()
    interval = serializers.CharField()
    base_fee = serializers.CharField(help_text="Decimal string with exactly the currency's minor digits.")
    change = serializers.ChoiceField(choices=["upgrade", "downgrade"], help_text=(
        "upgrade: takes effect at once (this period is billed in parts); downgrade: from the next period."))
    takes_effect_at = serializers.DateTimeField()
    document = serializers.JSONField(help_text="The plan document (docs/plans.md).")


class PlanChangePreviewSerializer(serializers.Serializer):
    as_of = serializers.DateTimeField()
    plan = serializers.CharField()
    change = serializers.ChoiceField(choices=["upgrade", "downgrade"])
    takes_effect_at = serializers.DateTimeField()
    estimated = serializers.BooleanField(help_text=(
        "true for a downgrade: the next period is priced on this period's usage so far."))
    invoice = ProjectedBillSerializer(help_text="The first invoice on the plan, as the projected bill shows one.")


class PlanChoiceSerializer(serializers.Serializer):
    plan = serializers.CharField(max_length=64, help_text="The code of a plan on offer (GET /api/v1/plans/).")


# --- views -------------------------------------------------------------------------------------------


class IsOwnerOrStaffScope(permissions.BasePermission):
    message = "Only the tenant's owner changes the subscription."

    def has_permission(self, request, view):
        if view.is_admin_scope():
            return True
        tenant_user = caller_tenant_user(request)
        return tenant_user is not None and tenant_user.role == TenantRole.OWNER


def _subscription(tenant):
    subscription = tenant_active_subscription(tenant=tenant)
    if subscription is None:
        raise exceptions.NotFound("This tenant has no active subscription.")
    return subscription


def subscription_state(subscription, now) -> dict:
    version = subscription.plan_version
    start, end = subscription_period(subscription, max(now, subscription.started_at))
    return {
        "id": subscription.pk, "plan": version.plan.code, "plan_name": version.name, "plan_version": version.version,
        "currency": version.currency, "interval": version.interval,
        "base_fee": format_amount(version.base_fee, version.currency), "status": subscription.status,
        "billing_cycle": subscription.billing_cycle, "started_at": subscription.started_at,
        "trial_ends_at": subscription.trial_ends_at, "period_start": start, "period_end": end,
        "waiting": open_request(subscription=subscription),
        "requests": list(subscription_requests_of(subscription=subscription)[:HISTORY_SHOWN]),
    }


class SubscriptionView(TenantScopedView):
    """The active subscription: its plan, current period, what is waiting, and its latest requests."""

    required_scopes = USAGE_READ
    serializer_class = SubscriptionStateSerializer
    pagination_class = None

    @extend_schema(responses={200: SubscriptionStateSerializer, **errors(401, 403, 404, 429)})
    def get(self, request, *args, **kwargs):
        subscription = _subscription(self.tenant)
        with timezone.override(self.tenant.zone):  # times on the tenant's clock, with its offsets
            return Response(SubscriptionStateSerializer(subscription_state(subscription, timezone.now())).data)


class OfferedPlansView(TenantScopedView):
    """The plans this tenant may move to by itself: public plans in its plan's currency and interval."""

    required_scopes = USAGE_READ
    serializer_class = OfferedPlanSerializer
    pagination_class = None

    @extend_schema(responses={200: OfferedPlanSerializer(many=True), **errors(401, 403, 404, 429)})
    def get(self, request, *args, **kwargs):
        now = timezone.now()
        subscription = _subscription(self.tenant)
        period_end = subscription_period(subscription, max(now, subscription.started_at))[1]
        data = []
        for version in plans_on_offer(subscription=subscription):
            kind = plan_change_kind(from_version=subscription.plan_version, to_version=version)
            data.append({
                "plan": version.plan.code, "name": version.name, "version": version.version,
                "currency": version.currency, "interval": version.interval,
                "base_fee": format_amount(version.base_fee, version.currency), "change": kind,
                "takes_effect_at": now if kind == "upgrade" else period_end, "document": version.document,
            })
        with timezone.override(self.tenant.zone):
            return Response(OfferedPlanSerializer(data, many=True).data)


class SubscriptionPreviewView(TenantScopedView):
    """The first invoice on another plan: for an upgrade this period's (the current plan until now, the new one
    after), for a downgrade the next period's, estimated on this period's usage so far."""

    required_scopes = USAGE_READ
    serializer_class = PlanChangePreviewSerializer
    pagination_class = None

    @extend_schema(
        parameters=[OpenApiParameter("plan", str, required=True, description="The code of a plan on offer.")],
        responses={200: PlanChangePreviewSerializer,
                   400: OpenApiResponse(description="No plan, or one not on offer to this tenant (the body says why)."),
                   **errors(401, 403, 404, 429)},
    )
    def get(self, request, *args, **kwargs):
        choice = PlanChoiceSerializer(data={"plan": request.query_params.get("plan", "")})
        choice.is_valid(raise_exception=True)
        now = timezone.now()
        _subscription(self.tenant)
        preview = self_service_preview(tenant=self.tenant, plan_code=choice.validated_data["plan"], as_of=now)
        data = {
            "as_of": now, "plan": preview.version.plan.code, "change": preview.kind,
            "takes_effect_at": preview.effective_at, "estimated": preview.estimated,
            "invoice": {"as_of": now, **priced_period_data(preview.priced)},
        }
        with timezone.override(self.tenant.zone):
            return Response(PlanChangePreviewSerializer(data).data)


class SubscriptionActionView(TenantScopedView):
    """Base of the changes: the tenant's owner (or staff in the admin scope); answers the request made."""

    serializer_class = SubscriptionRequestSerializer
    pagination_class = None

    def get_permissions(self):
        return [*super().get_permissions(), IsOwnerOrStaffScope()]

    def act(self, request):
        raise NotImplementedError

    def post(self, request, *args, **kwargs):
        made = self.act(request)
        with timezone.override(self.tenant.zone):
            return Response(SubscriptionRequestSerializer(made).data)


ACTION_RESPONSES = {
    200: SubscriptionRequestSerializer,
    400: OpenApiResponse(description="Refused: the body's detail says why (same plan, a plan of another currency, "
                                     "something already waiting, a cancelled tenant, nothing to withdraw)."),
    **errors(401, 403, 404, 429),
}


class SubscriptionChangeView(SubscriptionActionView):
    """Move to another plan: an upgrade (base fee at least the current one's) from now, a downgrade from the
    next period (waiting for staff approval where the provider requires it). Asking again for a downgrade
    that is waiting answers the same request."""

    @extend_schema(request=PlanChoiceSerializer, responses=ACTION_RESPONSES)
    def post(self, request, *args, **kwargs):
        return super().post(request, *args, **kwargs)

    def act(self, request):
        choice = PlanChoiceSerializer(data=request.data)
        choice.is_valid(raise_exception=True)
        _subscription(self.tenant)
        return subscription_self_change(tenant=self.tenant, plan_code=choice.validated_data["plan"], by=request.user)


class SubscriptionCancelView(SubscriptionActionView):
    """Cancel at the end of the current period (the tenant is cancelled then); undo with withdraw until then.
    Asking again answers the cancellation already scheduled."""

    @extend_schema(request=None, responses=ACTION_RESPONSES)
    def post(self, request, *args, **kwargs):
        return super().post(request, *args, **kwargs)

    def act(self, request):
        _subscription(self.tenant)
        return subscription_self_cancel(tenant=self.tenant, by=request.user)


class SubscriptionWithdrawView(SubscriptionActionView):
    """Withdraw what is waiting: undo the scheduled cancellation, or withdraw the downgrade."""

    @extend_schema(request=None, responses=ACTION_RESPONSES)
    def post(self, request, *args, **kwargs):
        return super().post(request, *args, **kwargs)

    def act(self, request):
        _subscription(self.tenant)
        return subscription_self_withdraw(tenant=self.tenant, by=request.user)
