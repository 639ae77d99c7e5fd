"""The tenant's dashboard (/tenant/dashboard/): this period's usage against the plan's tiers, the projected bill,
past invoices and usage over time, scoped to the signed-in tenant user's tenant."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

from django.shortcuts import render
from django.utils import timezone

from metering.lake import LakeError
from metering.models import DailyUsage, Invoice, InvoiceStatus, Metric
from metering.pricing.documents import ChargeSpec
from metering.pricing.engine import calendar_period
from metering.selectors import ADDITIVE, period_quantities
from metering.selectors.billing import projected_bill
from metering.services.billing.periods import subscription_period
from metering.services.sync import floor_hour
from portal.dashboards.charts import Chart, Series
from portal.dashboards.selectors import _as_date, day_note, days_between, display_quantity, metric_label
from portal.errors import ApplicationError
from tenants.models import Subscription, SubscriptionStatus, Tenant
from tenants.views_tenant import tenant_view

logger = logging.getLogger(__name__)

USAGE_DAYS = 30
TIERED = ("graduated", "volume")


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


def tier_position(charge: ChargeSpec, quantity: Decimal) -> tuple[list[TierRow], Decimal | None]:
    """The charge's tiers, the one `quantity` falls in marked current, and where the next tier starts.

    Tier i covers (up_to of tier i-1, up_to of tier i], the first from 0 (docs/plans.md); a quantity of 0
    is in the first tier, for graduated and volume alike."""
    rows, previous, found = [], Decimal(0), False
    for tier in charge.tiers:
        current = not found and (tier.up_to is None or quantity <= tier.up_to)
        found = found or current
        rows.append(TierRow(start=previous, up_to=tier.up_to, unit_amount=tier.unit_amount,
                            flat_amount=tier.flat_amount, current=current))
        previous = tier.up_to if tier.up_to is not None else previous
    current = next((row for row in rows if row.current), None)
    return rows, (current.up_to if current is not None else None)


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


def _active_subscription(tenant: Tenant) -> Subscription | None:
    return (Subscription.objects.filter(tenant=tenant, status=SubscriptionStatus.ACTIVE)
            .select_related("plan_version__plan").first())


def usage_over_time(*, tenant: Tenant, metrics: list[Metric], days: int = USAGE_DAYS) -> list[Chart]:
    """Daily usage of each metric for the last `days` days, one line chart per metric (units differ); one query
    on the daily rollup (each day's exact figure: for metrics that do not add up, the chart says so)."""
    end = timezone.now().date()
    start = end - timedelta(days=days - 1)
    daily: dict[int, dict] = {m.pk: {} for m in metrics}
    rows = (DailyUsage.objects.filter(tenant=tenant, metric__in=metrics, day__gte=start, day__lte=end)
            .values("metric_id", "day", "value").order_by())
    for row in rows:
        daily[row["metric_id"]][_as_date(row["day"])] = row["value"]
    labels = [d.isoformat() for d in days_between(start, end)]
    charts = []
    for metric in metrics:
        values = [display_quantity(daily[metric.pk].get(d), metric) for d in days_between(start, end)]
        chart = Chart(id=f"tenant-usage-{metric.code}", title=metric_label(metric), kind="line", labels=labels,
                      series=[Series(metric.name, values)], unit=metric.unit)
        if metric.aggregation not in ADDITIVE:
            chart.note = day_note(metric, tenants=False)
        charts.append(chart)
    return charts


@tenant_view
def tenant_dashboard(request):
    tenant = request.tenant_user.tenant
    now = timezone.now()
    subscription = _active_subscription(tenant)
    context = {"tenant": tenant, "tenant_user": request.tenant_user, "subscription": subscription, "now": now,
               "charges": [], "bill": None, "bill_error": "", "usage_error": ""}
    charged_codes: list[str] = []
    if subscription is not None and subscription.started_at <= now:
        start, end = subscription_period(subscription, now)
        spec = subscription.plan_version.to_spec()
        charged_codes = [charge.metric for charge in spec.charges]
        metrics = {m.code: m for m in Metric.objects.filter(code__in=charged_codes)}
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
        context.update(zip(("period_start", "period_end"), calendar_period(now, "month"), strict=True))
    context["period_last_day"] = context["period_end"] - timedelta(seconds=1)  # the end is exclusive
    chart_metrics = list(Metric.objects.filter(code__in=charged_codes).order_by("code")) if charged_codes else \
        list(Metric.objects.order_by("code"))
    context["usage_charts"] = usage_over_time(tenant=tenant, metrics=chart_metrics)
    context["invoices"] = list(Invoice.objects.filter(tenant=tenant).exclude(status=InvoiceStatus.DRAFT)
                               .order_by("-period_start", "-created_at")[:24])
    return render(request, "portal/dashboards/tenant.html", context)
