"""A tenant's own subscription changes (upgrade, downgrade, cancel, withdraw), given the billing period's boundary
they take effect at: the requests themselves are tenants.services.subscription_requests."""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone

from metering.services.billing.periods import subscription_period
from portal.kernel import ApplicationError
from tenants.models import Subscription, SubscriptionRequest, Tenant
from tenants.selectors import tenant_active_subscription
from tenants.services.subscription_requests import (
    subscription_request_cancel,
    subscription_request_plan,
    subscription_request_withdraw,
)


def _subscription(tenant: Tenant) -> Subscription:
    subscription = tenant_active_subscription(tenant=tenant)
    if subscription is None:
        raise ApplicationError("This tenant has no active subscription.")
    return subscription


def _period_end(subscription: Subscription, now: datetime) -> datetime:
    """The end of the current billing period (of the first one, for a subscription that has not started)."""
    return subscription_period(subscription, max(now, subscription.started_at))[1]


def subscription_self_change(*, tenant: Tenant, plan_code: str, by, now: datetime | None = None) -> SubscriptionRequest:
    """Move the tenant to plan `plan_code`: an upgrade from now, a downgrade from the next period."""
    now = now or timezone.now()
    subscription = _subscription(tenant)
    return subscription_request_plan(subscription=subscription, plan_code=plan_code, by=by,
                                     next_period_start=_period_end(subscription, now), now=now)


def subscription_self_cancel(*, tenant: Tenant, by, now: datetime | None = None) -> SubscriptionRequest:
    """Cancel the tenant's subscription at the end of the current period."""
    now = now or timezone.now()
    subscription = _subscription(tenant)
    return subscription_request_cancel(subscription=subscription, by=by,
                                       period_end=_period_end(subscription, now), now=now)


def subscription_self_withdraw(*, tenant: Tenant, by, now: datetime | None = None) -> SubscriptionRequest:
    """Withdraw the tenant's waiting cancellation or downgrade."""
    return subscription_request_withdraw(subscription=_subscription(tenant), by=by, now=now)
