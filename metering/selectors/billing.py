"""Reads on billing: the projected bill, what the tenant's next invoice would be if its period closed now.

The API's /api/v1/projected-bill/ and the tenant dashboard both show this one figure; it is priced
exactly as the billing run prices a period (metering.services.billing.periods), on the usage known now.
"""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone

from metering.pricing import CreditSource, PricedPeriod, with_totals
from metering.services.billing.catalog import Catalog
from metering.services.billing.order import usable_grants
from metering.services.billing.periods import (
    price_subscription_period,
    subscription_period,
    with_metric_names,
    with_plan_change,
)
from portal.kernel import ApplicationError
from tenants.models import PlanVersion, Subscription, SubscriptionStatus
from tenants.selectors import tenant_active_subscription


def projected_bill(*, tenant, as_of: datetime | None = None) -> PricedPeriod | None:
    """The tenant's upcoming invoice: its active subscription's period containing `as_of` (now by default)
    priced on its usage so far, lines described as on invoices, with its discounts, tax and credits
    (``.totals``); None without an active subscription, or before it starts. Late usage of earlier periods,
    which the invoice would add, is not included."""
    as_of = as_of or timezone.now()
    subscription = tenant_active_subscription(tenant=tenant)
    if subscription is None or subscription.started_at > as_of:
        return None
    start, end = subscription_period(subscription, as_of)
    catalog = Catalog()
    priced = with_metric_names(price_subscription_period(subscription, start, end, catalog), catalog.metric_names())
    return with_order(priced, subscription, catalog)


def with_order(priced: PricedPeriod, subscription, catalog: Catalog) -> PricedPeriod:
    """The priced period with the subscription's coupons, its tenant's tax rate and the credits that would pay
    it now, in the invoice's order (docs/plans.md, "After the lines"), as its invoice will have them."""
    tenant = subscription.tenant
    grants = usable_grants(tenant.pk, priced.currency, priced.period_end)
    return with_totals(
        priced,
        coupons=catalog.coupons.terms(subscription, priced.period_start, priced.period_end, priced.currency),
        tax=catalog.taxes.terms(tenant),
        credits=[CreditSource(grant.remaining, grant.pk) for grant in grants],
    )


def plan_change_preview(
    *, subscription: Subscription, plan_version: PlanVersion, at: datetime, catalog: Catalog | None = None
) -> tuple[PricedPeriod, PricedPeriod]:
    """The invoice of the period containing `at` as it stands, and as it would be with the subscription moved
    to `plan_version` from `at` (tenants.services.subscriptions.subscription_change_plan), both priced on the
    usage known now, lines described as on invoices. ApplicationError for a move that service would refuse,
    or one that changes the currency (a period is billed in one currency)."""
    if subscription.status != SubscriptionStatus.ACTIVE:
        raise ApplicationError("Only an active subscription can change plan.")
    if at < subscription.started_at:
        raise ApplicationError("A plan change cannot come before the subscription starts.")
    last = subscription.changes.order_by("-changed_at").first()
    if last and at < last.changed_at:
        raise ApplicationError("A plan change cannot come before the previous change.")
    if subscription.ends_at is not None and at >= subscription.ends_at:
        raise ApplicationError("The subscription ends before that date.")
    if plan_version.currency != subscription.plan_version.currency:
        raise ApplicationError(f"{plan_version} is priced in {plan_version.currency}, the subscription in "
                               f"{subscription.plan_version.currency}: the currency cannot change.")
    catalog = catalog or Catalog()
    start, end = subscription_period(subscription, at)
    names = catalog.metric_names()
    before = price_subscription_period(subscription, start, end, catalog)
    moved = with_plan_change(subscription, plan_version, at)
    after = price_subscription_period(moved, start, end, catalog)
    return (with_order(with_metric_names(before, names), subscription, catalog),
            with_order(with_metric_names(after, names), moved, catalog))
