"""The tenant's dashboard (/tenant/dashboard/): this period's usage against the plan's tiers, the projected bill,
past invoices and usage over time, scoped to the signed-in tenant user's tenant."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from decimal import Decimal

from django.shortcuts import render
from django.utils import timezone

from metering.lake import LakeError
from metering.pricing import tier_index, unit_amount_shown
from metering.pricing.documents import ChargeSpec
from metering.pricing.engine import calendar_period
from metering.selectors import period_quantities
from metering.selectors.billing import projected_bill
from metering.services.billing.periods import subscription_period
from metering.services.sync import floor_hour
from portal.dashboards.alerts import alert_rows
from portal.dashboards.selectors import (
    tenant_invoices_issued,
    tenant_usage_charts,
)
from portal.kernel import ApplicationError
from tenants.models import Metric
from tenants.selectors import metrics_by_code, tenant_active_subscription
from tenants.views_tenant import tenant_view

logger = logging.getLogger(__name__)

USAGE_DAYS = 30
TIERED = ("graduated", "volume")
INVOICES_SHOWN = 24


@dataclass
class TierRow:
    start: Decimal
    up_to: Decimal | None
    unit_amount: Decimal
    flat_amount: Decimal
    current: bool = False


@dataclass
class ChargeUsage:
    metric: Metric
    charge: ChargeSpec
    quantity: Decimal | None  # None: the lake could not answer
    tiers: list[TierRow] = field(default_factory=list)
    next_tier_at: Decimal | None = None
    to_next_tier: Decimal | None = None
    percent_of_tier: int | None = None

    @property
    def model(self) -> str:
        return self.charge.model.replace("_", " ")

    @property
    def unit_amount(self) -> Decimal | None:
        """The unit price an invoice line of this charge prints (per_unit only)."""
        return unit_amount_shown(self.charge)


def tier_position(charge: ChargeSpec, quantity: Decimal) -> tuple[list[TierRow], Decimal | None]:
    """The charge's tiers as rows, the one `quantity` falls in (the pricing engine's `tier_index`) marked
    current, and where the next tier starts (None: in the last tier)."""
    current = tier_index(charge, quantity)
    rows = [TierRow(start=lower, up_to=up_to, unit_amount=unit_amount, flat_amount=flat_amount, current=i == current)
            for i, (up_to, lower, unit_amount, flat_amount, _below) in enumerate(charge.tier_table)]
    return rows, rows[current].up_to


def charge_usage(metric: Metric, charge: ChargeSpec, quantity: Decimal | None) -> ChargeUsage:
    item = ChargeUsage(metric=metric, charge=charge, quantity=quantity)
    if charge.model in TIERED and quantity is not None:
        item.tiers, item.next_tier_at = tier_position(charge, quantity)
        current = next(row for row in item.tiers if row.current)
        if item.next_tier_at is not None:
            item.to_next_tier = item.next_tier_at - quantity
            width = item.next_tier_at - current.start
            item.percent_of_tier = int(min(100, max(0, (quantity - current.start) * 100 / width))) if width else 100
    return item


@tenant_view
def tenant_dashboard(request):
    tenant = request.tenant_user.tenant
    now = timezone.now()
    subscription = tenant_active_subscription(tenant=tenant)
    context = {"tenant": tenant, "tenant_user": request.tenant_user, "subscription": subscription, "now": now,
               "charges": [], "bill": None, "bill_error": "", "usage_error": ""}
    charged_codes: list[str] = []
    if subscription is not None and subscription.started_at <= now:
        start, end = subscription_period(subscription, now)
        spec = subscription.plan_version.to_spec()
        charged_codes = [charge.metric for charge in spec.charges]
        metrics = metrics_by_code(codes=charged_codes)
        try:
            # The period's hours as billing counts them (a boundary inside an hour moves to its start).
            quantities = period_quantities(subscription_or_tenant=tenant, metrics=list(metrics.values()),
                                           start=floor_hour(start), end=floor_hour(end))
        except LakeError:
            logger.exception("tenant dashboard: the lake did not answer for %s", tenant.slug)
            quantities = {}
            context["usage_error"] = "Some figures are unavailable right now; try again in a few minutes."
        context["charges"] = [charge_usage(metrics[c.metric], c, quantities.get(c.metric))
                              for c in spec.charges if c.metric in metrics]
        try:
            context["bill"] = projected_bill(tenant=tenant, as_of=now)
        except (LakeError, ApplicationError):
            logger.exception("tenant dashboard: no projected bill for %s", tenant.slug)
            context["bill_error"] = "The projected bill is unavailable right now; try again in a few minutes."
        context.update(period_start=start, period_end=end, plan=spec)
    else:
        context.update(zip(("period_start", "period_end"), calendar_period(now, "month", tenant.zone), strict=True))
    chart_metrics = list(metrics_by_code(codes=charged_codes or None).values())
    context["usage_charts"] = tenant_usage_charts(tenant=tenant, metrics=chart_metrics, end=now.date(), days=USAGE_DAYS)
    context["invoices"] = tenant_invoices_issued(tenant=tenant, limit=INVOICES_SHOWN)
    context["alerts"] = alert_rows(tenant)
    return render(request, "portal/dashboards/tenant.html", context)
