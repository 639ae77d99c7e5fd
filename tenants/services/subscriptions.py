"""Subscriptions: start one, change its plan (recorded with its time), set its trial's end, end it."""

from datetime import datetime, timedelta
from typing import Literal

from django.db import IntegrityError, transaction
from django.db.models import F, OuterRef, Subquery
from django.utils import timezone

from metering.pricing import trial_ends_at as plan_trial_end
from portal.kernel import ApplicationError
from tenants.models import (
    BillingCycle,
    Plan,
    PlanVersion,
    Subscription,
    SubscriptionChange,
    SubscriptionStatus,
    Tenant,
)
from tenants.selectors import subscriptions_active, tenant_has_active_subscription
from tenants.webhooks.events import webhook_emit

# The database wants an end after the start; a subscription ended before it starts lasts this long.
SHORTEST_SUBSCRIPTION = timedelta(seconds=1)


def subscription_create(
    *,
    tenant: Tenant,
    plan_version: PlanVersion,
    started_at: datetime | None = None,
    billing_cycle: str = BillingCycle.CALENDAR,
    with_trial: bool = True,
    trial_ends_at: datetime | None = None,
) -> Subscription:
    """Subscribe a tenant; the database refuses a second active subscription, reported as ApplicationError.

    The trial ends as the plan version says (`with_trial=False`: no trial), unless `trial_ends_at` sets it.
    """
    started_at = started_at or timezone.now()
    if trial_ends_at is None and with_trial:
        trial_ends_at = plan_trial_end(started_at, plan_version.trial_days)
    _check_trial_end(started_at, trial_ends_at)
    subscription = Subscription(
        tenant=tenant,
        plan_version=plan_version,
        started_at=started_at,
        billing_cycle=billing_cycle,
        trial_ends_at=trial_ends_at,
    )
    try:
        with transaction.atomic():
            subscription.save()
            webhook_emit(type="subscription.started", resource=subscription, tenant=tenant)
    except IntegrityError as exc:
        if tenant_has_active_subscription(tenant=tenant):
            raise ApplicationError(f"Tenant {tenant.slug} already has an active subscription.") from exc
        raise
    return subscription


def subscription_change_plan(
    *, subscription: Subscription, plan_version: PlanVersion, at: datetime | None = None, made_by=None,
    now: datetime | None = None,
) -> Subscription:
    """Move a subscription to another plan version from `at` on; the change is kept for billing.

    A change at a time still to come is scheduled: billing prices it from its time already, and the
    subscription's `plan_version` (what it is on now) follows when subscription_changes_apply_due runs then.
    A change is always after the previous one, so a scheduled change must be withdrawn before another.
    """
    now = now or timezone.now()
    at = at or now
    with transaction.atomic():
        sub = Subscription.objects.select_for_update().get(pk=subscription.pk)
        if sub.status != SubscriptionStatus.ACTIVE:
            raise ApplicationError("Only an active subscription can change plan.")
        last = sub.changes.order_by("-changed_at").first()
        if last and last.changed_at > now:
            raise ApplicationError(
                f"A change to {last.to_version} is scheduled for {last.changed_at:%Y-%m-%d %H:%M} UTC: "
                "withdraw it first.")
        if sub.plan_version_id == plan_version.pk:
            return sub
        if at < sub.started_at:
            raise ApplicationError("A plan change cannot come before the subscription starts.")
        if last and at < last.changed_at:
            raise ApplicationError("A plan change cannot come before the previous change.")
        if plan_version.currency != sub.plan_version.currency:  # a period is billed in one currency (docs/plans.md)
            raise ApplicationError(f"{plan_version} is priced in {plan_version.currency}, the subscription in "
                                   f"{sub.plan_version.currency}: the currency cannot change.")
        SubscriptionChange.objects.create(
            subscription=sub, from_version_id=sub.plan_version_id, to_version=plan_version, changed_at=at,
            made_by=made_by,
        )
        if at <= now:
            sub.plan_version = plan_version
            sub.save(update_fields=["plan_version", "updated_at"])
            webhook_emit(type="subscription.plan_changed", resource=sub, tenant=sub.tenant)
    return sub


def subscription_change_withdraw(*, change: SubscriptionChange, now: datetime | None = None) -> None:
    """Withdraw a scheduled plan change before its time (one in force is history: it was billed)."""
    with transaction.atomic():
        sub = Subscription.objects.select_for_update().get(pk=change.subscription_id)
        found = sub.changes.filter(pk=change.pk).first()
        if found is None:
            return  # withdrawn already
        if found.changed_at <= (now or timezone.now()) or sub.plan_version_id == found.to_version_id:
            raise ApplicationError("This plan change has taken effect: it can no longer be withdrawn.")
        found.delete()


def subscription_changes_apply_due(*, now: datetime | None = None) -> list[Subscription]:
    """Put each active subscription on the plan version its changes say is in force now (scheduled changes whose
    time came); each moved subscription emits subscription.plan_changed. A second run moves none."""
    now = now or timezone.now()
    latest_due = (SubscriptionChange.objects.filter(subscription=OuterRef("pk"), changed_at__lte=now)
                  .order_by("-changed_at").values("to_version_id")[:1])
    due = (Subscription.objects.filter(status=SubscriptionStatus.ACTIVE).annotate(due_version=Subquery(latest_due))
           .filter(due_version__isnull=False).exclude(plan_version_id=F("due_version"))
           .order_by("pk").values_list("pk", flat=True))
    moved = []
    for pk in list(due):
        with transaction.atomic():
            sub = Subscription.objects.select_for_update().get(pk=pk)
            latest = sub.changes.filter(changed_at__lte=now).order_by("-changed_at").first()
            if sub.status != SubscriptionStatus.ACTIVE or latest is None or sub.plan_version_id == latest.to_version_id:
                continue
            sub.plan_version_id = latest.to_version_id
            sub.save(update_fields=["plan_version", "updated_at"])
            webhook_emit(type="subscription.plan_changed", resource=sub, tenant=sub.tenant)
            moved.append(sub)
    return moved


def subscription_move_to_latest(*, plan: Plan, at: datetime | None = None) -> int:
    """Move every active subscriber of `plan` to its newest version; returns how many moved."""
    latest = plan.current_version
    moved = 0
    for sub in subscriptions_active(plan=plan).exclude(plan_version=latest):
        subscription_change_plan(subscription=sub, plan_version=latest, at=at)
        moved += 1
    return moved


def _check_trial_end(started_at: datetime, trial_ends_at: datetime | None) -> None:
    if trial_ends_at is not None and trial_ends_at < started_at:
        raise ApplicationError("A trial cannot end before the subscription starts.")


def subscription_set_trial_end(*, subscription: Subscription, trial_ends_at: datetime | None) -> Subscription:
    """Move (or remove, with None) the end of a subscription's trial, e.g. staff extending a trial."""
    with transaction.atomic():
        sub = Subscription.objects.select_for_update().get(pk=subscription.pk)
        if sub.trial_ends_at == trial_ends_at:
            return sub
        _check_trial_end(sub.started_at, trial_ends_at)
        sub.trial_ends_at = trial_ends_at
        sub.save(update_fields=["trial_ends_at", "updated_at"])
    return sub


def subscription_end(
    *, subscription: Subscription, at: datetime | None = None, before_start: Literal["refuse", "clamp"] = "refuse"
) -> Subscription:
    """End a subscription at `at` (default now): it is ended, and billed up to its end.

    The one rule for ending, whoever asks. An end already set earlier than `at` is kept (the subscription is
    billed to the earlier one). An end at or before the start is the caller's choice of two: "refuse" (an
    ApplicationError: staff ending one by hand are told) or "clamp" (it ends SHORTEST_SUBSCRIPTION after its
    start: a tenant's cancellation must end every subscription, also one that has not started yet).
    An ended subscription is left as it is (a second call changes nothing).
    """
    at = at or timezone.now()
    with transaction.atomic():
        sub = Subscription.objects.select_for_update().get(pk=subscription.pk)
        if sub.status == SubscriptionStatus.ENDED:
            return sub
        if at <= sub.started_at:
            if before_start == "refuse":
                raise ApplicationError("A subscription cannot end before it starts.")
            at = sub.started_at + SHORTEST_SUBSCRIPTION
        sub.status = SubscriptionStatus.ENDED
        if sub.ends_at is None or sub.ends_at > at:
            sub.ends_at = at
        sub.save(update_fields=["status", "ends_at", "updated_at"])
        webhook_emit(type="subscription.ended", resource=sub, tenant=sub.tenant)
    return sub
