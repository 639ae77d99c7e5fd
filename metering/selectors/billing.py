"""Reads on billing: the projected bill, what the tenant's next invoice would be if its period closed now.

The API's /api/v1/projected-bill/ and the tenant dashboard both show this one figure; it is priced
exactly as the billing run prices a period (metering.services.billing.periods), on the usage known now.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.utils import timezone

from metering.pricing import CreditSource, PricedPeriod, Segment, price_period, with_totals
from metering.services.billing.catalog import Catalog
from metering.services.billing.order import usable_grants
from metering.services.billing.periods import (
    price_subscription_period,
    subscription_period,
    with_metric_names,
    with_plan_change,
)
from metering.services.sync import floor_hour
from portal.kernel import ApplicationError
from tenants.models import PlanVersion, Subscription, SubscriptionRequestKind, SubscriptionStatus
from tenants.selectors import tenant_active_subscription
from tenants.services.subscription_requests import offered_version, open_request, plan_change_kind


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
    last = subscription.changes.order_by("-changed_at").select_related("to_version__plan").first()
    if last and last.changed_at > timezone.now():
        raise ApplicationError(f"A change to {last.to_version} is scheduled for {last.changed_at:%Y-%m-%d %H:%M} UTC: "
                               "withdraw it first.")
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


@dataclass(frozen=True)
class SelfServicePreview:
    """What a tenant's move to another plan would bill, had it asked at `as_of` (docs/plans.md, "Changing plan")."""

    kind: str  # upgrade (from now) or downgrade (from the next period)
    effective_at: datetime
    version: PlanVersion
    priced: PricedPeriod  # the first invoice on the new plan
    current: PricedPeriod  # this period's invoice as it stands (the projected bill)
    estimated: bool  # a downgrade's next period, priced on the usage of this period so far


def self_service_preview(*, tenant, plan_code: str, as_of: datetime | None = None) -> SelfServicePreview:
    """The first invoice on plan `plan_code` if the tenant moved there by itself, priced like the projected bill.

    An upgrade takes effect now: this period's invoice, the current plan until now and the new one after,
    on the usage so far (plan_change_preview). A downgrade takes effect at the next period: that period wholly
    on the new plan, its quantities estimated by this period's so far. ApplicationError when the plan is not
    on offer, or while another change waits.
    """
    as_of = as_of or timezone.now()
    subscription = tenant_active_subscription(tenant=tenant)
    if subscription is None or subscription.started_at > as_of:
        raise ApplicationError("This tenant has no active subscription.")
    version = offered_version(subscription=subscription, plan_code=plan_code)
    kind = plan_change_kind(from_version=subscription.plan_version, to_version=version)
    if kind == SubscriptionRequestKind.UPGRADE:
        if open_request(subscription=subscription) is not None:
            raise ApplicationError("A change is waiting: withdraw it first to preview an upgrade.")
        current, priced = plan_change_preview(subscription=subscription, plan_version=version, at=as_of)
        return SelfServicePreview(kind, as_of, version, priced, current, False)
    catalog = Catalog()
    start, end = subscription_period(subscription, as_of)
    names = catalog.metric_names()
    current = with_order(with_metric_names(price_subscription_period(subscription, start, end, catalog), names),
                         subscription, catalog)
    next_start, next_end = subscription_period(subscription, end)
    spec = catalog.spec(version)
    counted_from = max(start, subscription.started_at, subscription.trial_ends_at or start)
    window = (floor_hour(counted_from), floor_hour(as_of))
    quantities = catalog.quantities(tenant, spec.metric_codes, window) if window[0] < window[1] else {}
    priced = price_period([Segment(spec, next_start, next_end, quantities)], period_start=next_start,
                          period_end=next_end, trial_end=subscription.trial_ends_at)
    priced = with_order(with_metric_names(priced, names), subscription, catalog)
    return SelfServicePreview(kind, end, version, priced, current, True)
