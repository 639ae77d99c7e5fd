"""Revenue a provider can read: month by month and per currency (never added across currencies), what was
invoiced, by plan, MRR and ARR, new and churned tenants, and the net revenue retention of the last twelve
months. Read by the provider's Revenue page (portal.dashboards.revenue) and GET /api/v1/admin/revenue/; the
definitions (DEFINITIONS) are written on both.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from decimal import Decimal

from django.db.models import F, Sum
from django.db.models.functions import TruncMonth
from django.utils import timezone

from metering.models import Invoice, InvoiceLine, InvoiceStatus, LineType
from metering.pricing import format_amount, quantize_amount
from tenants.models import Subscription
from tenants.models.commercial import PlanInterval

REVENUE_STATUSES = (InvoiceStatus.FINALIZED, InvoiceStatus.PAID)
MONTHS_SHOWN = 12

DEFINITIONS = [
    ("Revenue", "the totals of the finalized and paid invoices whose period starts in the month (void and draft "
                "invoices do not count), per currency and per plan."),
    ("MRR", "at a month's end: the monthly base fee of every subscription running then and out of its trial "
            "(a yearly plan's fee divided by 12), plus the usage charges (usage and late-usage lines) of the "
            "invoices of that month and the two before, divided by 3."),
    ("ARR", "12 × MRR."),
    ("New tenants", "tenants whose first subscription started in the month."),
    ("Churned tenants", "tenants whose last subscription ended in the month, with none running after it."),
    ("Net revenue retention (NRR)", "the revenue of the last 12 months from the tenants that had revenue in "
                                    "the 12 months before, divided by their revenue in those 12 months before "
                                    "(above 100 %: they pay more than a year ago, upgrades and usage growth net "
                                    "of churn)."),
]


def month_start(day: date) -> date:
    return day.replace(day=1)


def add_months(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def _at(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def _month(value) -> date:
    if isinstance(value, datetime):
        return value.astimezone(UTC).date().replace(day=1)
    return date.fromisoformat(str(value)[:10]).replace(day=1)


@dataclass
class MonthRow:
    month: date
    revenue: Decimal = Decimal(0)
    by_plan: dict[str, Decimal] = field(default_factory=dict)
    usage: Decimal = Decimal(0)
    mrr: Decimal = Decimal(0)
    new_tenants: int = 0
    churned_tenants: int = 0

    @property
    def arr(self) -> Decimal:
        return self.mrr * 12


@dataclass
class CurrencyReport:
    currency: str
    months: list[MonthRow]
    nrr: Decimal | None  # a ratio (1.05 is 105 %); None without revenue in the 12 months before

    @property
    def plans(self) -> list[str]:
        return sorted({plan for row in self.months for plan in row.by_plan})

    @property
    def current(self) -> MonthRow:
        return self.months[-1]


def revenue_report(*, today: date | None = None, months: int = MONTHS_SHOWN) -> list[CurrencyReport]:
    """The report for the `months` calendar months up to today's (included), one per currency invoiced."""
    today = today or timezone.now().date()
    last = month_start(today)
    first = add_months(last, -(months - 1))
    shown = [add_months(first, i) for i in range(months)]
    invoices = Invoice.objects.filter(status__in=REVENUE_STATUSES)
    rows: dict[str, dict[date, MonthRow]] = defaultdict(lambda: {m: MonthRow(month=m) for m in shown})
    for row in (invoices.filter(period_start__gte=_at(first), period_start__lt=_at(add_months(last, 1)))
                .values("currency", month=TruncMonth("period_start", tzinfo=UTC),
                        plan=F("subscription__plan_version__plan__code"))
                .annotate(total=Sum("total")).order_by()):
        item = rows[row["currency"]][_month(row["month"])]
        item.revenue += row["total"]
        item.by_plan[row["plan"]] = item.by_plan.get(row["plan"], Decimal(0)) + row["total"]
    # Usage charges of each month (and of the two before the first shown, for its MRR).
    usage: dict[str, dict[date, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for row in (InvoiceLine.objects.filter(invoice__status__in=REVENUE_STATUSES,
                                           type__in=(LineType.USAGE, LineType.LATE_USAGE),
                                           invoice__period_start__gte=_at(add_months(first, -2)),
                                           invoice__period_start__lt=_at(add_months(last, 1)))
                .values(currency=F("invoice__currency"), month=TruncMonth("invoice__period_start", tzinfo=UTC))
                .annotate(total=Sum("amount")).order_by()):
        usage[row["currency"]][_month(row["month"])] += row["total"]
    subscriptions = list(Subscription.objects.select_related("plan_version")
                         .values_list("tenant_id", "started_at", "trial_ends_at", "ends_at", "plan_version__currency",
                                      "plan_version__base_fee", "plan_version__interval"))
    for currency in {s[4] for s in subscriptions} | set(usage):
        rows[currency]  # a currency with subscriptions but no invoice yet has its MRR too
    for currency, by_month in rows.items():
        for month, item in by_month.items():
            end = _at(add_months(month, 1))
            base = Decimal(0)
            for _, started, trial_end, ends, cur, fee, interval in subscriptions:
                if cur == currency and started < end and (ends is None or ends >= end) and (
                        trial_end is None or trial_end < end):
                    base += fee / 12 if interval == PlanInterval.YEAR else fee
            item.usage = usage[currency].get(month, Decimal(0))
            trailing = sum((usage[currency].get(add_months(month, -k), Decimal(0)) for k in range(3)), Decimal(0))
            item.mrr = quantize_amount(base + trailing / 3, currency)
    _tenant_flows(rows, subscriptions, shown)
    return [CurrencyReport(currency=c, months=[rows[c][m] for m in shown], nrr=_nrr(c, last))
            for c in sorted(rows)]


def _tenant_flows(rows, subscriptions, shown: list[date]) -> None:
    """New and churned tenants per month, counted in the currency of the plan they started (or last ran) on."""
    firsts: dict[int, tuple[datetime, str]] = {}
    lasts: dict[int, tuple[datetime | None, str]] = {}
    for tenant, started, _, ends, currency, _, _ in sorted(subscriptions, key=lambda s: s[1]):
        firsts.setdefault(tenant, (started, currency))
        previous = lasts.get(tenant)
        # The subscription that runs latest: one without an end wins; else the latest end.
        if previous is None or previous[0] is not None and (ends is None or ends > previous[0]):
            lasts[tenant] = (ends, currency)
    for started, currency in firsts.values():
        month = _month(started)
        if month in rows[currency]:
            rows[currency][month].new_tenants += 1
    for ends, currency in lasts.values():
        if ends is not None and _month(ends) in rows[currency]:
            rows[currency][_month(ends)].churned_tenants += 1


def _nrr(currency: str, last: date) -> Decimal | None:
    recent = (_at(add_months(last, -11)), _at(add_months(last, 1)))
    before = (_at(add_months(last, -23)), recent[0])
    invoices = Invoice.objects.filter(status__in=REVENUE_STATUSES, currency=currency)
    previous = dict(invoices.filter(period_start__gte=before[0], period_start__lt=before[1])
                    .values("tenant_id").annotate(total=Sum("total")).order_by().values_list("tenant_id", "total"))
    base = sum(previous.values(), Decimal(0))
    if base <= 0:
        return None
    kept = (invoices.filter(tenant_id__in=list(previous), period_start__gte=recent[0], period_start__lt=recent[1])
            .aggregate(total=Sum("total"))["total"] or Decimal(0))
    return kept / base


def report_json(reports: list[CurrencyReport]) -> dict:
    """The report as the admin API answers it: amounts as decimal strings in their currency's minor digits."""
    def money(value, currency):
        return format_amount(quantize_amount(value, currency), currency)

    return {"definitions": dict(DEFINITIONS), "currencies": [{
        "currency": r.currency,
        "mrr": money(r.current.mrr, r.currency), "arr": money(r.current.arr, r.currency),
        "nrr": None if r.nrr is None else format(r.nrr.quantize(Decimal("0.0001")), "f"),
        "months": [{"month": f"{m.month:%Y-%m}", "revenue": money(m.revenue, r.currency),
                    "by_plan": {plan: money(total, r.currency) for plan, total in sorted(m.by_plan.items())},
                    "usage": money(m.usage, r.currency), "mrr": money(m.mrr, r.currency),
                    "arr": money(m.arr, r.currency), "new_tenants": m.new_tenants,
                    "churned_tenants": m.churned_tenants} for m in r.months],
    } for r in reports]}
