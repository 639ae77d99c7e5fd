"""Reads about tenants, their users, the catalog and subscriptions: one query per question, asked here and nowhere else."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from django.db.models import F, OuterRef, QuerySet, Subquery

from tenants.models import (
    ApiKey,
    Metric,
    Plan,
    PlanVersion,
    Subscription,
    SubscriptionRequest,
    SubscriptionStatus,
    Tenant,
    TenantStatus,
    TenantUser,
)


def subscriptions_active(
    *, tenant: Tenant | None = None, plan: Plan | None = None, plan_version: PlanVersion | None = None
) -> QuerySet[Subscription]:
    """The active subscriptions, optionally of one tenant, plan or plan version (a tenant has at most one)."""
    queryset = Subscription.objects.filter(status=SubscriptionStatus.ACTIVE)
    if tenant is not None:
        queryset = queryset.filter(tenant=tenant)
    if plan is not None:
        queryset = queryset.filter(plan_version__plan=plan)
    if plan_version is not None:
        queryset = queryset.filter(plan_version=plan_version)
    return queryset


def tenant_active_subscription(*, tenant: Tenant) -> Subscription | None:
    """The tenant's active subscription with its plan version and plan, or None."""
    return subscriptions_active(tenant=tenant).select_related("tenant", "plan_version__plan").first()


def tenant_has_active_subscription(*, tenant: Tenant) -> bool:
    return subscriptions_active(tenant=tenant).exists()


def tenants_with_trial_over(*, now: datetime) -> QuerySet[Tenant]:
    """Trialing tenants whose active subscription's trial ended by `now`."""
    return Tenant.objects.filter(
        status=TenantStatus.TRIALING,
        subscriptions__status=SubscriptionStatus.ACTIVE,
        subscriptions__trial_ends_at__lte=now,
    ).distinct()


def tenant_user_of_login(*, user) -> TenantUser | None:
    """The tenant user a portal login belongs to (with its tenant), or None for a login of no tenant."""
    return TenantUser.objects.select_related("tenant").filter(user=user).first()


def tenant_users_listed(*, tenant: Tenant) -> QuerySet[TenantUser]:
    """The tenant's users as its owner sees them: those still in the identity store, by email."""
    return TenantUser.objects.filter(tenant=tenant, identity_deleted_at__isnull=True).order_by("email")


def metrics_by_code(*, codes: Iterable[str] | None = None) -> dict[str, Metric]:
    """Metrics by code, in code order: those of `codes` (unknown codes are left out), or all of them."""
    queryset = Metric.objects.order_by("code")
    if codes is not None:
        queryset = queryset.filter(code__in=list(codes))
    return {metric.code: metric for metric in queryset}


def tenant_api_keys(*, tenant: Tenant) -> QuerySet[ApiKey]:
    """The tenant's API keys, live ones first, newest first."""
    return ApiKey.objects.filter(tenant=tenant).order_by(F("revoked_at").desc(nulls_first=True), "-created_at")


def plans_on_offer(*, subscription: Subscription) -> QuerySet[PlanVersion]:
    """What the tenant of `subscription` may move to by itself: the public plans (`Plan.is_public`, those of the
    signup page) at their newest version, in its plan's currency and interval, its own plan left out; by base fee."""
    current = subscription.plan_version
    newest = PlanVersion.objects.filter(plan=OuterRef("plan")).order_by("-version").values("pk")[:1]
    return (PlanVersion.objects.filter(pk=Subquery(newest), plan__is_public=True, currency=current.currency,
                                       interval=current.interval)
            .exclude(plan_id=current.plan_id).select_related("plan").order_by("base_fee", "plan__code"))


def subscription_requests_of(*, subscription: Subscription) -> QuerySet[SubscriptionRequest]:
    """The subscription's self-service requests, newest first (its history as the tenant sees it)."""
    return subscription.requests.select_related("from_version", "to_version", "requested_by", "decided_by")
