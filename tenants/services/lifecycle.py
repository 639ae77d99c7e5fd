"""The tenant status lifecycle: the allowed transitions, enforced here and nowhere else."""

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from metering.pricing import period_bounds
from portal.kernel import ApplicationError
from tenants.models import (
    USABLE_TENANT_STATUSES,
    BillingCycle,
    Subscription,
    Tenant,
    TenantStatus,
    validate_time_zone,
    zone_named,
)
from tenants.selectors import subscriptions_active, tenants_with_trial_over
from tenants.services.api_keys import api_key_forget
from tenants.services.subscriptions import subscription_end
from tenants.signals import tenant_status_changed
from tenants.webhooks.events import webhook_emit

ALLOWED_TRANSITIONS: dict[str, frozenset[str]] = {
    TenantStatus.TRIALING: frozenset({TenantStatus.ACTIVE, TenantStatus.SUSPENDED, TenantStatus.CANCELLED}),
    TenantStatus.ACTIVE: frozenset({TenantStatus.SUSPENDED, TenantStatus.CANCELLED}),
    TenantStatus.SUSPENDED: frozenset({TenantStatus.ACTIVE, TenantStatus.CANCELLED}),
    TenantStatus.CANCELLED: frozenset(),
}


# The webhook event of each move: (from, to), or (None, to) for any from; a trial ending is no event.
STATUS_EVENTS: dict[tuple[str | None, str], str] = {
    (TenantStatus.SUSPENDED, TenantStatus.ACTIVE): "tenant.reactivated",
    (None, TenantStatus.SUSPENDED): "tenant.suspended",
    (None, TenantStatus.CANCELLED): "tenant.cancelled",
}


def tenant_create(*, slug: str, name: str, contact_email: str, status: str = TenantStatus.ACTIVE,
                  time_zone: str = "UTC") -> Tenant:
    if status not in USABLE_TENANT_STATUSES:
        raise ApplicationError(f"A new tenant starts trialing or active, not {status}.")
    tenant = Tenant(slug=slug, name=name, contact_email=contact_email, status=status, status_changed_at=timezone.now(),
                    time_zone=time_zone)
    tenant.full_clean()
    with transaction.atomic():
        tenant.save()
        webhook_emit(type="tenant.created", resource=tenant, tenant=tenant)
    return tenant


def time_zone_change_problem(*, tenant: Tenant, time_zone: str, now=None) -> str | None:
    """Why the tenant's time zone cannot become `time_zone` now (None: it can).

    The zone cuts the billing periods, so it is fixed once a subscription's first period has ended (in
    the zone it has or the one asked): a period billed in one zone is never cut again in another.
    """
    try:
        validate_time_zone(time_zone)
    except ValidationError as exc:
        return exc.messages[0]
    if time_zone == tenant.time_zone or not tenant.pk:
        return None
    now = now or timezone.now()
    for subscription in Subscription.objects.filter(tenant=tenant, started_at__lte=now).select_related("plan_version"):
        anchor = subscription.started_at if subscription.billing_cycle == BillingCycle.ANNIVERSARY else None
        for name in (tenant.time_zone, time_zone):
            _start, end = period_bounds(subscription.started_at, subscription.plan_version.interval, anchor=anchor,
                                        zone=zone_named(name))
            if end <= now or (subscription.ends_at and subscription.ends_at <= now):
                return (f"The time zone of {tenant.slug} is fixed: a billing period of its subscriptions has ended "
                        f"in {tenant.time_zone} (changing the zone would cut billed periods again).")
    return None


def tenant_set_time_zone(*, tenant: Tenant, time_zone: str) -> Tenant:
    """Set the tenant's time zone (an IANA name) while no billing period of it has ended; ApplicationError otherwise."""
    with transaction.atomic():
        locked = Tenant.objects.select_for_update().get(pk=tenant.pk)
        problem = time_zone_change_problem(tenant=locked, time_zone=time_zone)
        if problem:
            raise ApplicationError(problem, {"field": "time_zone"})
        if locked.time_zone != time_zone:
            locked.time_zone = time_zone
            locked.save(update_fields=["time_zone", "updated_at"])
    return locked


def tenant_transition(*, tenant: Tenant, to_status: str, at=None) -> Tenant:
    """Move a tenant to another status, or raise ApplicationError naming the illegal move."""
    if to_status not in TenantStatus.values:
        raise ApplicationError(f"Unknown tenant status {to_status!r}.")
    at = at or timezone.now()
    with transaction.atomic():
        locked = Tenant.objects.select_for_update().get(pk=tenant.pk)
        from_status = locked.status
        if to_status == from_status:
            return locked  # asking twice for the same state is not an error: the first call did the work
        if to_status not in ALLOWED_TRANSITIONS[from_status]:
            raise ApplicationError(
                f"Tenant {locked.slug} cannot go from {TenantStatus(from_status).label.lower()} "
                f"to {TenantStatus(to_status).label.lower()}."
            )
        locked.status = to_status
        locked.status_changed_at = at
        locked.save(update_fields=["status", "status_changed_at", "updated_at"])
        api_key_forget()  # this process looks its API keys up again (the others within API_KEY_CACHE_SECONDS)
        if to_status == TenantStatus.CANCELLED:
            # A cancelled tenant is billed up to now and no further.
            for sub in subscriptions_active(tenant=locked):
                subscription_end(subscription=sub, at=at, before_start="clamp")
        event = STATUS_EVENTS.get((from_status, to_status)) or STATUS_EVENTS.get((None, to_status))
        if event:
            webhook_emit(type=event, resource=locked, tenant=locked, at=at)
        transaction.on_commit(
            lambda: tenant_status_changed.send(
                sender=Tenant, tenant=locked, from_status=from_status, to_status=to_status
            )
        )
    tenant.status, tenant.status_changed_at = locked.status, locked.status_changed_at
    return locked


def tenant_suspend(*, tenant: Tenant) -> Tenant:
    return tenant_transition(tenant=tenant, to_status=TenantStatus.SUSPENDED)


def tenant_reactivate(*, tenant: Tenant) -> Tenant:
    return tenant_transition(tenant=tenant, to_status=TenantStatus.ACTIVE)


def tenant_cancel(*, tenant: Tenant) -> Tenant:
    return tenant_transition(tenant=tenant, to_status=TenantStatus.CANCELLED)


def tenants_end_trials(*, now=None) -> list[Tenant]:
    """Trialing tenants whose subscription's trial has ended become active (a second run finds none)."""
    now = now or timezone.now()
    return [tenant_transition(tenant=tenant, to_status=TenantStatus.ACTIVE, at=now)
            for tenant in tenants_with_trial_over(now=now)]
