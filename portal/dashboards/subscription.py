"""The tenant's subscription page (/tenant/subscription/): the plan and period, the plans on offer with a preview
of the first invoice on each, and (the owner only) upgrade, downgrade, cancel and withdraw; other users see the
same page without the buttons. The changes are metering.services.self_service's, as over the API."""

from __future__ import annotations

import logging

from django.conf import settings
from django.contrib import messages
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from metering.lake import LakeError
from metering.selectors.billing import self_service_preview
from metering.services.billing.periods import subscription_period
from metering.services.self_service import (
    subscription_self_cancel,
    subscription_self_change,
    subscription_self_withdraw,
)
from portal.kernel import ApplicationError
from tenants.models import SubscriptionRequestKind, SubscriptionRequestStatus, TenantRole
from tenants.selectors import plans_on_offer, subscription_requests_of, tenant_active_subscription
from tenants.services.subscription_requests import open_request, plan_change_kind, request_moment
from tenants.views_tenant import tenant_view

logger = logging.getLogger(__name__)
HISTORY_SHOWN = 20


def _done_message(made) -> str:
    when = request_moment(made)
    to = made.to_version.name if made.to_version_id else ""
    if made.status == SubscriptionRequestStatus.WITHDRAWN:
        return ("The cancellation is undone: your subscription goes on." if made.kind == SubscriptionRequestKind.CANCEL
                else f"The move to {to} is withdrawn.")
    if made.kind == SubscriptionRequestKind.UPGRADE:
        return f"You are now on {to}."
    if made.kind == SubscriptionRequestKind.CANCEL:
        return f"Your subscription ends at {when}. You can undo this until then."
    if made.status == SubscriptionRequestStatus.PENDING_APPROVAL:
        return f"Your move to {to} from {when} is waiting for our approval."
    return f"Your plan changes to {to} at {when}."


@tenant_view
@require_http_methods(["GET", "POST"])
def tenant_subscription(request):
    me = request.tenant_user
    tenant = me.tenant
    owner = me.role == TenantRole.OWNER
    if request.method == "POST":
        if not owner:
            return render(request, "tenants/area_denied.html",
                          {"reason": "Only the owner changes the subscription."}, status=403)
        actions = {
            "change": lambda: subscription_self_change(tenant=tenant, plan_code=request.POST.get("plan", ""),
                                                       by=request.user),
            "cancel": lambda: subscription_self_cancel(tenant=tenant, by=request.user),
            "withdraw": lambda: subscription_self_withdraw(tenant=tenant, by=request.user),
        }
        action = actions.get(request.POST.get("action", ""))
        if action is None:
            messages.error(request, "Unknown action.")
        else:
            try:
                made = action()
            except ApplicationError as exc:
                messages.error(request, exc.message)
            else:
                messages.success(request, _done_message(made))
        return redirect("tenant-subscription")

    now = timezone.now()
    subscription = tenant_active_subscription(tenant=tenant)
    context = {"tenant": tenant, "owner": owner, "subscription": subscription,
               "approval_required": settings.SUBSCRIPTION_DOWNGRADE_REQUIRES_APPROVAL}
    if subscription is not None:
        period = subscription_period(subscription, max(now, subscription.started_at))
        offers = [
            {"version": version, "kind": plan_change_kind(from_version=subscription.plan_version, to_version=version)}
            for version in plans_on_offer(subscription=subscription)
        ]
        for offer in offers:
            offer["takes_effect_at"] = now if offer["kind"] == SubscriptionRequestKind.UPGRADE else period[1]
        context.update(period_start=period[0], period_end=period[1], offers=offers,
                       waiting=open_request(subscription=subscription),
                       history=subscription_requests_of(subscription=subscription)[:HISTORY_SHOWN])
        asked = request.GET.get("preview")
        if asked:
            try:
                context["preview"] = self_service_preview(tenant=tenant, plan_code=asked, as_of=now)
            except LakeError:  # an ApplicationError too, but the portal's trouble: its details are for the log
                logger.exception("plan change preview of %s: the lake did not answer", tenant.slug)
                context["preview_error"] = "The usage figures are unavailable right now; try again in a few minutes."
            except ApplicationError as exc:
                context["preview_error"] = exc.message
    return render(request, "portal/dashboards/subscription.html", context)
