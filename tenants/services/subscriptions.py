"""Subscriptions: start one, change its plan (recorded with its time), end it."""

from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

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


def subscription_create(
    *,
    tenant: Tenant,
    plan_version: PlanVersion,
    started_at: datetime | None = None,
    billing_cycle: str = BillingCycle.CALENDAR,
    with_trial: bool = True,
) -> Subscription:
    """Subscribe a tenant; the database refuses a second active subscription, reported as ApplicationError."""
    started_at = started_at or timezone.now()
    trial_ends_at = None
    if with_trial and plan_version.trial_days:
        trial_ends_at = started_at + timedelta(days=plan_version.trial_days)
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
    except IntegrityError as exc:
        if Subscription.objects.filter(tenant=tenant, status=SubscriptionStatus.ACTIVE).exists():
            raise ApplicationError(f"Tenant {tenant.slug} already has an active subscription.") from exc
        raise
    return subscription


def subscription_change_plan(
    *, subscription: Subscription, plan_version: PlanVersion, at: datetime | None = None
) -> Subscription:
    """Move a subscription to another plan version from `at` on; the change is kept for billing."""
    at = at or timezone.now()
    with transaction.atomic():
        sub = Subscription.objects.select_for_update().get(pk=subscription.pk)
        if sub.status != SubscriptionStatus.ACTIVE:
            raise ApplicationError("Only an active subscription can change plan.")
        if sub.plan_version_id == plan_version.pk:
            return sub
        if at < sub.started_at:
            raise ApplicationError("A plan change cannot come before the subscription starts.")
        last = sub.changes.order_by("-changed_at").first()
        if last and at < last.changed_at:
            raise ApplicationError("A plan change cannot come before the previous change.")
        SubscriptionChange.objects.create(
            subscription=sub, from_version_id=sub.plan_version_id, to_version=plan_version, changed_at=at
        )
        sub.plan_version = plan_version
        sub.save(update_fields=["plan_version", "updated_at"])
    return sub


def subscription_move_to_latest(*, plan: Plan, at: datetime | None = None) -> int:
    """Move every active subscriber of `plan` to its newest version; returns how many moved."""
    latest = plan.current_version
    moved = 0
    for sub in Subscription.objects.filter(plan_version__plan=plan, status=SubscriptionStatus.ACTIVE).exclude(
        plan_version=latest
    ):
        subscription_change_plan(subscription=sub, plan_version=latest, at=at)
        moved += 1
    return moved


def subscription_end(*, subscription: Subscription, at: datetime | None = None) -> Subscription:
    at = at or timezone.now()
    with transaction.atomic():
        sub = Subscription.objects.select_for_update().get(pk=subscription.pk)
        if sub.status == SubscriptionStatus.ENDED:
            return sub
        if at <= sub.started_at:
            raise ApplicationError("A subscription cannot end before it starts.")
        sub.status = SubscriptionStatus.ENDED
        sub.ends_at = at
        sub.save(update_fields=["status", "ends_at", "updated_at"])
    return sub
