"""Reads on billing: the projected bill, what the tenant's next invoice would be if its period closed now.

The API's /api/v1/projected-bill/ and the tenant dashboard both show this one figure; it is priced
exactly as the billing run prices a period (metering.services.billing.periods), on the usage known now.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.utils import timezone

from metering.pricing import PricedPeriod, Segment, price_period
from metering.services.billing.catalog import Catalog
from metering.services.billing.periods import (
    price_subscription_period,
    subscription_period,
    with_metric_names,
    with_plan_change,
)
from metering.services.sync import floor_hour
from portal.kernel import ApplicationError
from tenants.models import PlanVersion, SubscriptionRequestKind
from tenants.selectors import tenant_active_subscription
from tenants.services.subscription_requests import offered_version, plan_change_kind


def projected_bill(*, tenant, as_of: datetime | None = None) -> PricedPeriod | None:
    """The tenant's upcoming invoice: its active subscription's period containing `as_of` (now by default)
    priced on its usage so far, lines described as on invoices; None without an active subscription, or
    before it starts. Late usage of earlier periods, which the invoice would add, is not included."""
    as_of = as_of or timezone.now()
    subscription = tenant_active_subscription(tenant=tenant)
    if subscription is None or subscription.started_at > as_of:
        return None
    start, end = subscription_period(subscription, as_of)
    catalog = Catalog()
    return with_metric_names(price_subscription_period(subscription, start, end, catalog), catalog.metric_names())


@dataclass(frozen=True)
class PlanChangePreview:
    """The first invoice on another plan, had the tenant asked for it at `as_of`."""

    kind: str  # upgrade (from now) or downgrade (from the next period)
    effective_at: datetime
    version: PlanVersion
    priced: PricedPeriod
    estimated: bool  # a downgrade's next period, priced on the usage of this period so far


def plan_change_preview(*, tenant, plan_code: str, as_of: datetime | None = None) -> PlanChangePreview:
    """What moving to plan `plan_code` would bill, through the same pricing as the projected bill.

    An upgrade takes effect now: this period's invoice, the current plan until now and the new one after,
    on the usage so far. A downgrade takes effect at the next period: that period wholly on the new plan,
    its quantities estimated by this period's so far. ApplicationError when the plan is not on offer.
    """
    as_of = as_of or timezone.now()
    subscription = tenant_active_subscription(tenant=tenant)
    if subscription is None or subscription.started_at > as_of:
        raise ApplicationError("This tenant has no active subscription.")
    version = offered_version(subscription=subscription, plan_code=plan_code)
    kind = plan_change_kind(from_version=subscription.plan_version, to_version=version)
    start, end = subscription_period(subscription, as_of)
    catalog = Catalog()
    if kind == SubscriptionRequestKind.UPGRADE:
        priced = price_subscription_period(with_plan_change(subscription, version, as_of), start, end, catalog)
        return PlanChangePreview(kind, as_of, version, with_metric_names(priced, catalog.metric_names()), False)
    next_start, next_end = subscription_period(subscription, end)
    spec = catalog.spec(version)
    counted_from = max(start, subscription.started_at, subscription.trial_ends_at or start)
    window = (floor_hour(counted_from), floor_hour(as_of))
    quantities = catalog.quantities(tenant, spec.metric_codes, window) if window[0] < window[1] else {}
    priced = price_period([Segment(spec, next_start, next_end, quantities)], period_start=next_start,
                          period_end=next_end, trial_end=subscription.trial_ends_at)
    return PlanChangePreview(kind, end, version, with_metric_names(priced, catalog.metric_names()), True)
