"""A tenant manages its own subscription: upgrade now, downgrade from the next period (perhaps after staff
approval), cancel at the period's end, and withdraw what is still waiting (docs/plans.md, "Changing plan").

Every request is a SubscriptionRequest row (the history staff see) and, for a plan change, a SubscriptionChange
(what billing prices, from its time). The subscription's row is locked for each decision, and the database
allows one waiting request per subscription, so a double submit or two browsers make one change. Each step is
confirmed by email to the tenant's billing contact, in the transaction that makes it.

The period boundary (`next_period_start`) is given by the caller: billing periods are metering's business
(metering.services.self_service computes it and calls these).
"""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from metering.pricing import format_amount, local_label
from portal.kernel import ApplicationError
from tenants.models import (
    USABLE_TENANT_STATUSES,
    EmailKind,
    Plan,
    PlanVersion,
    Subscription,
    SubscriptionChange,
    SubscriptionRequest,
    SubscriptionRequestKind,
    SubscriptionRequestStatus,
    SubscriptionStatus,
    Tenant,
    TenantStatus,
)
from tenants.models.commercial import OPEN_REQUEST_STATUSES, zone_named
from tenants.services.email import email_queue
from tenants.services.lifecycle import tenant_transition
from tenants.services.subscriptions import (
    subscription_change_plan,
    subscription_change_withdraw,
    subscription_changes_apply_due,
)

Kind = SubscriptionRequestKind
Status = SubscriptionRequestStatus


def plan_change_kind(*, from_version: PlanVersion, to_version: PlanVersion) -> str:
    """An upgrade when the new plan's base fee is at least the current one's (same currency and interval),
    else a downgrade."""
    return Kind.UPGRADE if to_version.base_fee >= from_version.base_fee else Kind.DOWNGRADE


def offered_version(*, subscription: Subscription, plan_code: str) -> PlanVersion:
    """The version a tenant on `subscription` would move to by asking for plan `plan_code`, or why not."""
    plan = Plan.objects.filter(code=plan_code).first()
    current = subscription.plan_version
    if plan is None:
        raise ApplicationError(f"There is no plan {plan_code!r}.", {"field": "plan"})
    if plan.pk == current.plan_id:
        raise ApplicationError(f"You are already on {plan.name}.", {"field": "plan"})
    version = plan.current_version
    if not plan.is_public or version is None:
        raise ApplicationError(f"{plan.name} is not on offer.", {"field": "plan"})
    if version.currency != current.currency:
        raise ApplicationError(
            f"{plan.name} is billed in {version.currency} and your plan in {current.currency}: a plan of another "
            "currency is set by our staff, ask us.", {"field": "plan"})
    if version.interval != current.interval:
        raise ApplicationError(
            f"{plan.name} is billed per {version.interval} and your plan per {current.interval}: a plan of another "
            "interval is set by our staff, ask us.", {"field": "plan"})
    return version


def open_request(*, subscription: Subscription) -> SubscriptionRequest | None:
    return subscription.requests.filter(status__in=OPEN_REQUEST_STATUSES).select_related("to_version").first()


def _lock(subscription: Subscription) -> Subscription:
    # No join in the locking query: on PostgreSQL, a row another transaction updated meanwhile (its plan_version
    # moved) is re-checked against the joined rows as first read, so a join would lose it.
    sub = Subscription.objects.select_for_update().get(pk=subscription.pk)
    if sub.tenant.status == TenantStatus.CANCELLED:
        raise ApplicationError("This tenant is cancelled: its subscription cannot change.")
    if sub.tenant.status not in USABLE_TENANT_STATUSES:
        raise ApplicationError("This tenant is suspended: ask us to restore it first.")
    if sub.status != SubscriptionStatus.ACTIVE:
        raise ApplicationError("This subscription has ended.")
    return sub


def request_moment(request: SubscriptionRequest) -> str:
    """When a request takes effect, on its tenant's clock (``2026-12-01 00:00 UTC-05:00``)."""
    return local_label(request.effective_at, zone_named(request.subscription.tenant.time_zone))


def _describe(request: SubscriptionRequest) -> str:
    when = request_moment(request)
    if request.kind == Kind.CANCEL:
        return f"The cancellation at {when}"
    waiting = "waiting for approval" if request.status == Status.PENDING_APPROVAL else "scheduled"
    return f"The downgrade to {request.to_version.name} from {when} ({waiting})"


def _create(**fields) -> SubscriptionRequest:
    try:
        with transaction.atomic():
            return SubscriptionRequest.objects.create(**fields)
    except IntegrityError as exc:  # a waiting request made in another transaction since we looked
        raise ApplicationError("This subscription already has a change waiting: reload to see it.") from exc


def _new_change(sub: Subscription, version: PlanVersion, at: datetime, made_by, now: datetime) -> SubscriptionChange:
    subscription_change_plan(subscription=sub, plan_version=version, at=at, made_by=made_by, now=now)
    return sub.changes.order_by("-changed_at", "-pk").first()


def subscription_request_plan(
    *, subscription: Subscription, plan_code: str, by, next_period_start: datetime, now: datetime | None = None
) -> SubscriptionRequest:
    """Move to plan `plan_code`: an upgrade from now, a downgrade from `next_period_start` (waiting for staff
    when SUBSCRIPTION_DOWNGRADE_REQUIRES_APPROVAL). Asking again for a downgrade that is waiting returns it."""
    now = now or timezone.now()
    with transaction.atomic():
        sub = _lock(subscription)
        target = offered_version(subscription=sub, plan_code=plan_code)
        kind = plan_change_kind(from_version=sub.plan_version, to_version=target)
        waiting = open_request(subscription=sub)
        if waiting is not None:
            if kind == Kind.DOWNGRADE and waiting.kind == Kind.DOWNGRADE and waiting.to_version_id == target.pk:
                return waiting
            raise ApplicationError(f"{_describe(waiting)} is waiting: withdraw it first.")
        fields = {"subscription": sub, "kind": kind, "from_version": sub.plan_version, "to_version": target,
                  "requested_by": by}
        if kind == Kind.UPGRADE:
            change = _new_change(sub, target, now, by, now)
            request = _create(**fields, status=Status.APPLIED, effective_at=now, change=change)
        elif settings.SUBSCRIPTION_DOWNGRADE_REQUIRES_APPROVAL:
            request = _create(**fields, status=Status.PENDING_APPROVAL, effective_at=next_period_start)
        else:
            request = _create(**fields, status=Status.SCHEDULED, effective_at=next_period_start)
            request.change = _new_change(sub, target, next_period_start, by, now)
            request.save(update_fields=["change", "updated_at"])
        _confirm(request, by)
    return request


def subscription_request_cancel(
    *, subscription: Subscription, by, period_end: datetime, now: datetime | None = None
) -> SubscriptionRequest:
    """Cancel at the end of the current period (`period_end`); a downgrade still waiting is withdrawn (there is
    no next period for it). Asking again returns the cancellation already scheduled."""
    now = now or timezone.now()
    with transaction.atomic():
        sub = _lock(subscription)
        waiting = open_request(subscription=sub)
        if waiting is not None and waiting.kind == Kind.CANCEL:
            return waiting
        if waiting is not None:
            _withdraw(waiting, by, now)
        request = _create(subscription=sub, kind=Kind.CANCEL, status=Status.SCHEDULED, from_version=sub.plan_version,
                          effective_at=period_end, requested_by=by)
        _confirm(request, by)
    return request


def _withdraw(request: SubscriptionRequest, by, now: datetime, note: str = "") -> None:
    if request.status == Status.SCHEDULED and request.effective_at <= now:
        raise ApplicationError(f"{_describe(request)} has taken effect: it can no longer be withdrawn.")
    if request.change_id is not None:
        subscription_change_withdraw(change=request.change, now=now)  # the change row goes; the request keeps the story
    request.status, request.decided_by, request.decided_at, request.note = Status.WITHDRAWN, by, now, note
    request.save(update_fields=["status", "decided_by", "decided_at", "note", "updated_at"])


def subscription_request_withdraw(*, subscription: Subscription, by, now: datetime | None = None) -> SubscriptionRequest:
    """Withdraw what is waiting: undo a cancellation (the subscription goes on), or a downgrade."""
    now = now or timezone.now()
    with transaction.atomic():
        sub = _lock(subscription)
        waiting = open_request(subscription=sub)
        if waiting is None:
            raise ApplicationError("Nothing is waiting: there is no cancellation or downgrade to withdraw.")
        _withdraw(waiting, by, now)
        _confirm(waiting, by)
    return waiting


def _lock_request(request: SubscriptionRequest) -> tuple[Subscription, SubscriptionRequest]:
    sub = _lock(request.subscription)
    return sub, SubscriptionRequest.objects.select_related("to_version", "from_version").get(pk=request.pk)


def subscription_request_approve(*, request: SubscriptionRequest, by, now: datetime | None = None) -> SubscriptionRequest:
    """Staff approve a waiting downgrade: scheduled for the date it asked for, or from now once that has passed."""
    now = now or timezone.now()
    with transaction.atomic():
        sub, request = _lock_request(request)
        if request.status in (Status.SCHEDULED, Status.APPLIED):
            return request  # approved already
        if request.status != Status.PENDING_APPROVAL:
            raise ApplicationError(f"This request is {request.get_status_display().lower()}: there is nothing to approve.")
        if sub.plan_version_id != request.from_version_id:
            raise ApplicationError("The subscription's plan has changed since this request: refuse it instead.")
        at = max(request.effective_at, now)
        request.change = _new_change(sub, request.to_version, at, request.requested_by, now)
        request.effective_at = at
        request.status = Status.SCHEDULED if at > now else Status.APPLIED
        request.decided_by, request.decided_at = by, now
        request.save(update_fields=["change", "effective_at", "status", "decided_by", "decided_at", "updated_at"])
        _confirm(request)  # approved by staff: the tenant is told it is scheduled (or done), not by whom
    return request


def subscription_request_refuse(
    *, request: SubscriptionRequest, by, note: str = "", now: datetime | None = None
) -> SubscriptionRequest:
    """Staff refuse a waiting downgrade (the tenant is told, with `note`)."""
    now = now or timezone.now()
    with transaction.atomic():
        _, request = _lock_request(request)
        if request.status == Status.REFUSED:
            return request
        if request.status != Status.PENDING_APPROVAL:
            raise ApplicationError(f"This request is {request.get_status_display().lower()}: there is nothing to refuse.")
        request.status, request.decided_by, request.decided_at, request.note = Status.REFUSED, by, now, note[:300]
        request.save(update_fields=["status", "decided_by", "decided_at", "note", "updated_at"])
        _confirm(request)
    return request


def subscription_requests_apply_due(*, now: datetime | None = None) -> int:
    """Carry out what has come due: scheduled downgrades take effect, and tenants whose cancellation's date came
    are cancelled as of that date (their subscription ends then and is billed up to it). Returns how many
    requests were applied; a second run applies none."""
    now = now or timezone.now()
    subscription_changes_apply_due(now=now)
    applied = 0
    due = SubscriptionRequest.objects.filter(status=Status.SCHEDULED, effective_at__lte=now).order_by("effective_at", "pk")
    for pk, subscription_id, tenant_id in list(due.values_list("pk", "subscription_id", "subscription__tenant_id")):
        with transaction.atomic():
            # Tenant, subscription, request: the order a staff cancellation locks in (tenant, then subscription),
            # and the subscription before the request as a withdrawal does, so the two cannot both succeed.
            Tenant.objects.select_for_update().filter(pk=tenant_id).first()
            Subscription.objects.select_for_update().filter(pk=subscription_id).first()
            request = (SubscriptionRequest.objects.select_for_update(of=("self",))
                       .select_related("subscription__tenant", "to_version").get(pk=pk))
            if request.status != Status.SCHEDULED:
                continue  # applied or withdrawn meanwhile
            if request.kind == Kind.CANCEL:
                tenant_transition(tenant=request.subscription.tenant, to_status=TenantStatus.CANCELLED,
                                  at=request.effective_at)
            request.status = Status.APPLIED
            request.save(update_fields=["status", "updated_at"])
            _confirm(request)
            applied += 1
    return applied


# --- the confirmations ------------------------------------------------------------------------------


def _money(version: PlanVersion) -> str:
    return f"{version.currency} {format_amount(version.base_fee, version.currency)} per {version.interval}"


def _confirm(request: SubscriptionRequest, by=None) -> None:
    """Email the tenant's billing contact what just happened to the request, and who asked for it (`by`; none
    when it came due by itself), in the caller's transaction."""
    tenant = request.subscription.tenant
    when = request_moment(request)
    to = request.to_version
    subjects = {
        (Kind.UPGRADE, Status.APPLIED): (f"your plan is now {to and to.name}",
                                          f"Your plan changed to {to and to.name} ({to and _money(to)}) at {when}. This "
                                          "period's invoice bills each plan for its part of the period."),
        (Kind.DOWNGRADE, Status.PENDING_APPROVAL): (f"your move to {to and to.name} is waiting for approval",
                                                     f"You asked to move to {to and to.name} from {when}. We will "
                                                     "confirm it by email once it is approved."),
        (Kind.DOWNGRADE, Status.SCHEDULED): (f"your move to {to and to.name} is scheduled",
                                             f"Your plan changes to {to and to.name} ({to and _money(to)}) at {when}, "
                                             "the start of your next billing period. You can withdraw it until then."),
        (Kind.DOWNGRADE, Status.APPLIED): (f"your plan is now {to and to.name}",
                                           f"Your plan changed to {to and to.name} ({to and _money(to)}) at {when}."),
        (Kind.DOWNGRADE, Status.WITHDRAWN): (f"your move to {to and to.name} is withdrawn",
                                             f"The move to {to and to.name} is withdrawn: you stay on your plan."),
        (Kind.DOWNGRADE, Status.REFUSED): (f"your move to {to and to.name} was not approved",
                                           f"Your request to move to {to and to.name} was not approved: you stay on "
                                           f"your plan.{' ' + request.note if request.note else ''}"),
        (Kind.CANCEL, Status.SCHEDULED): ("your subscription ends at the end of this period",
                                          f"Your subscription is cancelled as of {when}, the end of your billing "
                                          "period; you are billed up to then. You can undo this until then."),
        (Kind.CANCEL, Status.WITHDRAWN): ("your subscription goes on",
                                          "The cancellation is undone: your subscription goes on as before."),
        (Kind.CANCEL, Status.APPLIED): ("your subscription has ended",
                                        f"Your subscription ended at {when}; its last invoice follows."),
    }
    subject, text = subjects[(request.kind, request.status)]
    who = f"\n\nAsked by {by.email or by.get_username()}." if by is not None else ""
    email_queue(
        kind=EmailKind.SUBSCRIPTION_CHANGE,
        recipient=tenant.contact_email,
        subject=f"{settings.PROVIDER_NAME}: {subject}",
        body=(f"{tenant.name} ({tenant.slug}):\n\n{text}{who}\n\n"
              f"Your subscription: {settings.PORTAL_BASE_URL.rstrip('/')}/tenant/subscription/\n"),
        about=request,
        tenant=tenant,
    )
