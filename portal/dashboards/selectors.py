"""Reads for the dashboards: every figure is grouped in the database, in a fixed number of queries.

The provider's dashboard issues the same number of queries whether there are 3 tenants or 3,000
(portal/tests/test_dashboards.py checks it): tenants are never looped over with a query each. Usage
is read from DailyUsage, the usage sync's rollup by UTC day: the ranges are whole days, and a month
of 200 tenants is 18,000 daily rows where it was 432,000 hourly ones. Every figure is what an invoice
of its period bills: a day's row is its exact figure, and a unique_count metric's figure over the
range is its distinct count over the whole range (metering.selectors.whole_period_figures: the
month's rollup for a calendar month, else one lake query for all tenants, cached with the rest).
"""

from __future__ import annotations

import decimal
import hashlib
import heapq
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, localcontext

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.db.models import (
    Case,
    Count,
    F,
    Max,
    Q,
    Sum,
    When,
    Window,
)
from django.db.models.functions import RowNumber, TruncMonth
from django.utils import timezone

from metering.lake import LakeError
from metering.models import (
    DailyTotal,
    DailyUsage,
    Invoice,
    InvoicePayment,
    InvoiceStatus,
    MonthlyUsage,
    SyncCursor,
    SyncOutcome,
    SyncRun,
    UnattributedUsage,
)
from metering.pricing import UnknownCurrencyError, format_amount, quantize_amount
from metering.selectors import ADDITIVE, start_whole_period_figures
from metering.selectors.revenue import add_months, month_start
from portal.dashboards.charts import OTHER_COLOUR, Chart, Series
from tenants.models import Aggregation, DeliveryStatus, EmailDelivery, Metric, Tenant

logger = logging.getLogger(__name__)

TOP_TENANTS = 5  # stacked in the usage charts; the rest is "Other tenants"
TOP_TABLE = 10  # rows in the top-tenants table
REVENUE_STATUSES = (InvoiceStatus.FINALIZED, InvoiceStatus.PAID)


def day_bounds(start: date, end: date) -> tuple[datetime, datetime]:
    """[start 00:00 UTC, the day after end 00:00 UTC): the end date is included."""
    return (datetime.combine(start, time.min, tzinfo=UTC),
            datetime.combine(end + timedelta(days=1), time.min, tzinfo=UTC))


def days_between(start: date, end: date) -> list[date]:
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


def _as_date(value) -> date:
    # SQLite may hand back text, PostgreSQL a date, TruncMonth a (UTC) datetime: the same day each way.
    if isinstance(value, datetime):
        return value.astimezone(UTC).date() if value.tzinfo else value.date()
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


def display_quantity(raw: Decimal | None, metric: Metric) -> Decimal:
    """A raw hourly aggregate in the metric's unit (after its divisor), rounded for display."""
    raw = Decimal(raw or 0)
    if metric.divisor == 1:
        return raw.quantize(Decimal(1)) if raw == raw.to_integral_value() else raw.quantize(Decimal("0.001"))
    with localcontext() as ctx:
        ctx.prec = 40
        return (raw / metric.divisor).quantize(Decimal("0.001"))


def metric_label(metric: Metric) -> str:
    unit = f" ({metric.unit})" if metric.unit else ""
    how = {Aggregation.MAX: ", largest value per day", Aggregation.UNIQUE_COUNT: ", distinct per day",
           Aggregation.LATEST: ", last value per day"}.get(metric.aggregation, "")
    return f"{metric.name}{unit}{how}"


def day_note(metric: Metric, *, tenants: bool) -> str:
    """What a day of a metric that does not add up shows, in words (empty for count and sum)."""
    who = "each of the top tenants" if tenants else "the day"
    if metric.aggregation == Aggregation.UNIQUE_COUNT:
        return (f"Each day shows the distinct values of {who} over that whole day. A value seen on several "
                "days (or by several tenants) counts in each, so days do not add up to a month or a range"
                + (", and there is no 'other tenants' line." if tenants else "."))
    if metric.aggregation == Aggregation.MAX:
        return (f"Each day shows the largest value of {who} that day; a range's figure is the largest of its "
                "days" + (", and there is no 'other tenants' line." if tenants else "."))
    if metric.aggregation == Aggregation.LATEST:
        whose = "each of the top tenants' " if tenants else "the "
        return (f"Each day shows {whose}last value reported that day (a day without a report shows 0); a "
                "range's figure is the last value reported in it" + (", and there is no 'other tenants' line."
                                                                       if tenants else "."))
    return ""


# --- usage ---------------------------------------------------------------------------------------


@dataclass
class MetricUsage:
    metric: Metric
    chart: Chart
    total: Decimal | None  # None: the lake could not answer
    top: list[tuple[Tenant, Decimal]] = field(default_factory=list)
    # The figure of every tenant named on the page (a top TOP_TABLE of any metric), by tenant id.
    by_tenant: dict[int, Decimal] = field(default_factory=dict)
    total_label: str = "Total in range"
    unavailable: bool = False  # the range's distinct counts could not be asked of the lake


def total_label(metric: Metric) -> str:
    """What the figure under a metric's chart is, in words."""
    if metric.aggregation == Aggregation.UNIQUE_COUNT:
        return "Distinct values in range, each tenant's added up (what their invoices for the range would bill)"
    if metric.aggregation == Aggregation.MAX:
        return "Largest value of any tenant in range"
    if metric.aggregation == Aggregation.LATEST:
        return "Last values in range, each tenant's added up (what their invoices for the range would bill)"
    return "Total in range"


def usage_by_metric(*, start: date, end: date, tenant: Tenant | None = None,
                    metrics: list[Metric] | None = None) -> list[MetricUsage]:
    """Per metric: daily usage stacked by its top tenants (the rest as one series), and the ranking.

    Five queries whatever the number of tenants or days, each answering with what the page shows rather
    than with a row per tenant: the top TOP_TABLE tenants of each count, sum and max metric, ranked in SQL
    from the monthly rollup where it gives the figure (_ranked_from_rollups), and from the days for the
    metrics it cannot rank; the tenants named; the daily totals of the metrics that add up (and from them
    their totals: DailyTotal, the sync's sum of every tenant's day, or the tenant's days); and the daily rows of the named tenants (the chart's top series and the figures of the
    top-tenants table). A day is its DailyUsage.value (its exact figure); a tenant's figure over the range
    is the sum of its days for count and sum metrics, the largest day for max, and for unique_count the
    distinct count over the whole range (one more read: the month's rollup, or one lake query for all
    tenants, ranked here), for latest its last value."""
    metrics = list(Metric.objects.order_by("code")) if metrics is None else metrics
    if not metrics:
        return []
    rows = DailyUsage.objects.filter(day__gte=start, day__lte=end)
    if tenant is not None:
        rows = rows.filter(tenant=tenant)
    by_id = {m.pk: m for m in metrics}
    peak_ids = [m.pk for m in metrics if m.aggregation == Aggregation.MAX]
    in_db = [m.pk for m in metrics if m.aggregation in ADDITIVE or m.aggregation == Aggregation.MAX]

    # ranking: each metric's first TOP_TABLE (tenant id, raw figure), largest first (ties: lower id).
    ranking: dict[int, list[tuple[int, Decimal]]] = defaultdict(list)
    totals: dict[int, Decimal] = {}
    # Range figures read from whole_period_figures: distinct counts (the lake for a range that is no
    # whole day or month) and last values (the last hour's row): every tenant's, ranked here. The lake's
    # query is started first, in a thread of its own, and waited for after the ranking's queries.
    unique = [m for m in metrics if m.aggregation in (Aggregation.UNIQUE_COUNT, Aggregation.LATEST)]
    unavailable = False
    pending = None
    if unique:
        start_dt, end_dt = day_bounds(start, end)
        try:
            pending = start_whole_period_figures(metrics=unique, start=start_dt, end=end_dt,
                                                 tenants=None if tenant is None else [tenant])
        except LakeError:
            logger.exception("dashboard: the lake did not answer for the distinct counts of %s to %s", start, end)
            unavailable = True
    if in_db:
        ranked, done = _ranked_from_rollups(start=start, end=end, tenant=tenant, peaks=peak_ids,
                                            additive=[m.pk for m in metrics if m.aggregation in ADDITIVE])
        # The metrics the rollups could not rank, from the days themselves (exact for any data; none: a query
        # that matches no row, so that the page's number of queries is the same whatever the data).
        left = sorted(set(in_db) - done) or [0]
        figure = Case(When(metric_id__in=peak_ids, then=F("top")), default=F("total"))
        # order_by(): no join for DailyUsage's default ordering in a GROUP BY.
        ranked += [(row["metric_id"], row["tenant_id"], row["top"] if row["metric_id"] in peak_ids
                    else row["total"], row["rank"])
                   for row in (rows.filter(metric_id__in=left).values("metric_id", "tenant_id")
                               .annotate(total=Sum("value"), top=Max("value")).order_by()
                               .annotate(rank=Window(RowNumber(), partition_by=[F("metric_id")],
                                                     order_by=[figure.desc(), F("tenant_id").asc()]))
                               .filter(rank__lte=TOP_TABLE))]
        for metric_id, tenant_id, value, _ in sorted(ranked, key=lambda row: (row[0], row[3])):
            ranking[metric_id].append((tenant_id, value))
    by_tenant: dict[int, dict[int, Decimal]] = defaultdict(dict)  # figures of the named tenants, by metric
    figures: dict[int, dict[int, Decimal]] = {}
    if unique:
        try:
            figures = pending() if pending is not None else {}
        except LakeError:
            logger.exception("dashboard: the lake did not answer for the distinct counts of %s to %s", start, end)
            figures, unavailable = {}, True
        per_metric: dict[int, list[tuple[int, Decimal]]] = defaultdict(list)
        for tenant_id, values in figures.items():
            for metric_id, value in values.items():
                per_metric[metric_id].append((tenant_id, value))
        for metric_id, items in per_metric.items():
            ranking[metric_id] = heapq.nsmallest(TOP_TABLE, items, key=lambda item: (-item[1], item[0]))
            totals[metric_id] = sum((v for _, v in items), Decimal(0))
    top_ids = {metric_id: [tid for tid, _ in items[:TOP_TENANTS]] for metric_id, items in ranking.items()}
    named_ids = {tid for items in ranking.values() for tid, _ in items[:TOP_TABLE]}
    tenants = {t.pk: t for t in Tenant.objects.filter(pk__in=named_ids).only("id", "slug", "name")}

    # Daily figures: all tenants together per metric that adds up (and from them its total), and the named
    # tenants alone (one row per tenant, metric and day); "other tenants" is the difference.
    daily: dict[tuple[int, int], dict[date, Decimal]] = defaultdict(dict)
    all_days: dict[int, dict[date, Decimal]] = defaultdict(dict)
    additive_ids = [m.pk for m in metrics if m.aggregation in ADDITIVE] or [0]  # [0]: the same queries
    if tenant is None:  # every tenant's days added up by the sync: a row a day, whatever the tenants
        day_totals = (DailyTotal.objects.filter(day__gte=start, day__lte=end, metric_id__in=additive_ids)
                      .values_list("metric_id", "day", "value"))
    else:
        day_totals = (rows.filter(metric_id__in=additive_ids).values("metric_id", "day")
                      .annotate(total=Sum("value")).order_by().values_list("metric_id", "day", "total"))
    for metric_id, day, total in day_totals.order_by():
        all_days[metric_id][_as_date(day)] = total
        totals[metric_id] = totals.get(metric_id, Decimal(0)) + total
    for metric_id in peak_ids:  # a largest value's total: the first of its ranking, every tenant's largest
        if ranking.get(metric_id):
            totals[metric_id] = ranking[metric_id][0][1]
    if named_ids:
        for row in (rows.filter(tenant_id__in=named_ids)
                    .values("metric_id", "tenant_id", "day", "value").order_by()):
            metric = by_id.get(row["metric_id"])
            if metric is not None:
                daily[(metric.pk, row["tenant_id"])][_as_date(row["day"])] = row["value"]
    for (metric_id, tenant_id), per_day in daily.items():
        if metric_id not in in_db:
            continue  # a distinct count or a last value over the range is not had from its days
        values = list(per_day.values())
        by_tenant[metric_id][tenant_id] = (max(values) if by_id[metric_id].aggregation == Aggregation.MAX
                                           else sum(values, Decimal(0)))
    for tenant_id in named_ids:
        for metric_id, value in figures.get(tenant_id, {}).items():
            by_tenant[metric_id][tenant_id] = value
    for metric_id, per_day in all_days.items():  # only metrics that add up: a largest value (or a distinct
        for day, total in per_day.items():          # count) minus those of the top tenants means nothing
            rest = total - sum((daily[(metric_id, tid)].get(day, 0) for tid in top_ids.get(metric_id, [])),
                               Decimal(0))
            if rest:
                daily[(metric_id, 0)][day] = rest

    days = days_between(start, end)
    labels = [d.isoformat() for d in days]
    result = []
    for metric in metrics:
        series = []
        for tenant_id in top_ids.get(metric.pk, []):
            values = daily.get((metric.pk, tenant_id), {})
            series.append(Series(tenants[tenant_id].slug, [display_quantity(values.get(d), metric) for d in days]))
        other = daily.get((metric.pk, 0))
        if other:
            series.append(Series("Other tenants", [display_quantity(other.get(d), metric) for d in days],
                                 colour=OTHER_COLOUR))
        if not series:
            series.append(Series("Usage", [display_quantity(0, metric) for _ in days]))
        chart = Chart(id=f"usage-{metric.code}", title=metric_label(metric), kind="bar", labels=labels,
                      series=series, stacked=metric.aggregation in ADDITIVE, unit=metric.unit)
        if metric.aggregation not in ADDITIVE:
            chart.stacked = False
            chart.kind = "line"  # figures that do not add up read better side by side as lines than stacked
            chart.note = day_note(metric, tenants=True)
        missing = unavailable and metric.aggregation == Aggregation.UNIQUE_COUNT
        top = [(tenants[tid], display_quantity(v, metric)) for tid, v in ranking.get(metric.pk, [])[:TOP_TABLE]]
        named = {tid: display_quantity(v, metric) for tid, v in by_tenant.get(metric.pk, {}).items()}
        result.append(MetricUsage(metric=metric, chart=chart, top=top, by_tenant=named,
                                  total=None if missing else display_quantity(totals.get(metric.pk), metric),
                                  total_label=total_label(metric), unavailable=missing))
    return result


def _month_parts(start: date, end: date, today: date) -> list[tuple[date, tuple[date, date], list[tuple[date, date]]]]:
    """How a sum over [start, end] (inclusive days) is read from the rollups, month by month: (month, its
    days in the range, the days to subtract from its monthly row). A month the range covers is its monthly
    row (nothing to subtract); a month the range cuts is either its days in the range (None: no monthly
    row) or its monthly row less its days out of the range, whichever reads fewer days that can have
    usage (none after today): the last 30 days are one month's row less a day or two, not 30 days of every
    tenant."""
    parts = []
    month = month_start(start)
    while month <= end:
        following = add_months(month, 1)
        last = following - timedelta(days=1)
        inside = (max(start, month), min(end, last))
        out = [(a, b) for a, b in ((month, inside[0] - timedelta(days=1)), (inside[1] + timedelta(days=1), last))
               if a <= b]

        def cost(spans):
            return sum(max(0, (min(b, today) - a).days + 1) for a, b in spans)

        # A single day is read as such: one row per tenant, its figure with no grouping (this month so far
        # on its first day).
        parts.append((month, inside, out if not out or (cost(out) < cost([inside]) and inside[0] < inside[1])
                      else None))
        month = following
    return parts


def _ranked_from_rollups(*, start: date, end: date, tenant: Tenant | None, additive: list[int],
                         peaks: list[int]) -> tuple[list[tuple[int, int, Decimal, int]], set[int]]:
    """(rows, metric ids): the first TOP_TABLE (metric id, tenant id, raw figure, rank) of each count, sum
    and max metric over [start, end], ranked in the database from the monthly rollup where it gives the
    figure (a sum: a month's row less its days out of the range; a largest value: a whole month's row),
    so that a month of 10,000 tenants is read as 10,000 rows a metric rather than 300,000; and the metrics
    whose ranking that is.

    A metric is left out (for the caller to rank from the days) unless all its first TOP_TABLE figures
    are above 0: a tenant whose only rows are outside the range counts 0 here (a month's row less those
    days) where the days leave it out, which can change who is listed only when fewer than TOP_TABLE
    tenants have a figure above 0. The monthly rollup is written with the daily one, in the same
    transaction (metering.services.sync.daily_usage_refresh)."""
    parts = _month_parts(start, end, timezone.now().date())
    daily, monthly = DailyUsage._meta.db_table, MonthlyUsage._meta.db_table
    # Each metric's reads: (SQL, params), every row one tenant's figure of a month or a day (its sign
    # given); a metric of a single read of a single month is that month's rows, one per tenant.
    reads: dict[int, list[tuple[str, list]]] = defaultdict(list)
    single: set[int] = set()

    def marks(values) -> str:
        return ", ".join(["%s"] * len(values))

    def read(table, metric_ids, *, months=(), spans=(), sign=""):
        if not metric_ids or not (months or spans):
            return
        # A span of days is a read of its own: a range of the daily index, read from the index alone
        # (several spans OR-ed together were a bitmap scan of the table's pages).
        wheres = ([(f"month IN ({marks(months)})", [connection.ops.adapt_datefield_value(m) for m in months])]
                  if months else [("day >= %s AND day <= %s", [connection.ops.adapt_datefield_value(d) for d in span])
                                  for span in spans])
        scope = " AND tenant_id = %s" if tenant is not None else ""
        for metric_id in metric_ids:
            for where, where_params in wheres:
                reads[metric_id].append((f"SELECT tenant_id, {sign}value AS value FROM {table} "
                                         f"WHERE metric_id = %s AND {where}{scope}",
                                         [metric_id, *where_params, *([tenant.pk] if tenant is not None else [])]))
            if not sign and (len(months) == 1 if months else len(spans) == 1 and spans[0][0] == spans[0][1]):
                single.add(metric_id)

    covered = [month for month, _, out in parts if out == []]
    read(monthly, additive + peaks, months=covered)
    read(monthly, additive, months=[month for month, _, out in parts if out])
    read(daily, additive, spans=[span for _, _, out in parts if out for span in out], sign="-")
    read(daily, additive, spans=[inside for _, inside, out in parts if out is None])
    read(daily, peaks, spans=[inside for _, inside, out in parts if out != []])
    # Each metric's first TOP_TABLE on its own (a top-N sort of its tenants' figures, grouped over its own
    # rows only), rather than a window over every metric's: at 10,000 tenants the window sorted 20,000
    # figures and the one grouping of 60,000 rows outgrew work_mem (spilled to disk). A single month's
    # rows need no grouping at all.
    selects: list[str] = []
    params: list = []
    for metric_id, items in sorted(reads.items()):
        if metric_id in single and len(items) == 1:
            sql, item_params = items[0]
            figures = sql.replace("value AS value", "value AS figure", 1)
        else:
            how = "MAX" if metric_id in peaks else "SUM"
            figures = (f"SELECT tenant_id, {how}(value) AS figure FROM ("
                       f"{' UNION ALL '.join(sql for sql, _ in items)}) AS usage GROUP BY tenant_id")
            item_params = [p for _, item in items for p in item]
        selects.append(f"SELECT * FROM (SELECT %s AS metric_id, tenant_id, figure FROM ({figures}) AS figures "
                       f"ORDER BY figure DESC, tenant_id LIMIT %s) AS top_{len(selects)}")
        params.extend([metric_id, *item_params, TOP_TABLE])
    if not selects:  # the same queries whatever the metrics
        selects.append(f"SELECT metric_id, tenant_id, value AS figure FROM {monthly} WHERE 1 = 0")
    with connection.cursor() as cursor:
        cursor.execute(" UNION ALL ".join(selects), params)
        found = sorted(((metric_id, tenant_id, _decimal(figure)) for metric_id, tenant_id, figure in cursor.fetchall()),
                       key=lambda row: (row[0], -row[2], row[1]))
    rows = []
    for metric_id, tenant_id, figure in found:
        position = 1 if not rows or rows[-1][0] != metric_id else rows[-1][3] + 1
        rows.append((metric_id, tenant_id, figure, position))
    above_zero: dict[int, int] = defaultdict(int)
    for metric_id, _, figure, _ in rows:
        above_zero[metric_id] += figure > 0
    ranked = {metric_id for metric_id, count in above_zero.items() if count == TOP_TABLE}
    return [row for row in rows if row[0] in ranked], ranked

def _money(value) -> Decimal:
    """A sum of amounts as the ORM gives it: PostgreSQL's numeric as is, SQLite's number as its DecimalField
    converter reads an aggregate's (15 significant digits)."""
    if isinstance(value, Decimal):
        return value
    return decimal.Context(prec=15).create_decimal_from_float(value)


def _decimal(value) -> Decimal:
    """A figure as the ORM gives it: PostgreSQL's numeric as is, SQLite's float at the field's 6 places."""
    if isinstance(value, float):
        return Decimal(repr(value)).quantize(Decimal("0.000001"))
    return Decimal(value)


def top_tenants_table(usage: list[MetricUsage]) -> tuple[list[Metric], list[dict]]:
    """The ten busiest tenants by the first metric that adds up (calls rather than distinct IPs), with
    their figure for every metric."""
    metrics = [u.metric for u in usage]
    if not usage:
        return metrics, []
    primary = next((u for u in usage if u.metric.aggregation in ADDITIVE), usage[0])
    rows = [{"tenant": tenant, "values": [u.by_tenant.get(tenant.pk) for u in usage]} for tenant, _ in primary.top]
    return metrics, rows


# --- revenue and invoices ------------------------------------------------------------------------


def revenue_by_month(*, start: date, end: date, tenant: Tenant | None = None) -> tuple[Chart, list[dict]]:
    """Finalized and paid invoice totals by billed month (the period's start): one series per currency, never
    added across currencies, each on its own axis when there are several; and the totals per plan and currency.

    The chart spans at least the twelve months up to `end`, so a 30-day range still shows a trend."""
    first = min(month_start(start), add_months(month_start(end), -11))
    last = add_months(month_start(end), 1)
    invoices = Invoice.objects.filter(
        status__in=REVENUE_STATUSES,
        period_start__gte=datetime.combine(first, time.min, tzinfo=UTC),
        period_start__lt=datetime.combine(last, time.min, tzinfo=UTC),
    )
    if tenant is not None:
        invoices = invoices.filter(tenant=tenant)
    rows = list(
        invoices.values("currency", month=TruncMonth("period_start", tzinfo=UTC),
                        plan=F("subscription__plan_version__plan__code"))
        .annotate(total=Sum("total"), count=Count("id")).order_by("month", "plan")
    )
    months = []
    cursor = first
    while cursor < last:
        months.append(cursor)
        cursor = add_months(cursor, 1)
    by_currency: dict[str, dict[date, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for row in rows:
        by_currency[row["currency"]][_as_date(row["month"]).replace(day=1)] += row["total"]
    several = len(by_currency) > 1
    series = [Series(currency, [money(values.get(m, Decimal(0)), currency) for m in months],
                     axis=currency if several else "")
              for currency, values in sorted(by_currency.items())]
    if not series:
        series = [Series("Revenue", [Decimal("0.00") for _ in months])]
    unit = next(iter(by_currency)) if len(by_currency) == 1 else ""
    title = "Revenue by month (finalized and paid invoices)" + (", each currency on its own axis" if several else "")
    chart = Chart(id="revenue", title=title, kind="bar", labels=[m.strftime("%Y-%m") for m in months],
                  series=series, unit=unit)
    by_plan: dict[tuple[str, str], dict] = {}
    for row in rows:
        item = by_plan.setdefault((row["plan"], row["currency"]), {"plan": row["plan"], "currency": row["currency"],
                                                                   "total": Decimal(0), "count": 0})
        item["total"] += row["total"]
        item["count"] += row["count"]
    plans = sorted(by_plan.values(), key=lambda r: (r["currency"], -r["total"], r["plan"]))
    for item in plans:
        item["total"] = money(item["total"], item["currency"])
    return chart, plans


def money(amount: Decimal, currency: str) -> Decimal:
    """An amount rounded to the currency's minor unit (2 digits for USD, none for JPY), for display."""
    try:
        return quantize_amount(amount, currency)
    except UnknownCurrencyError:  # a currency this portal does not price in: shown as stored, never guessed
        return Decimal(amount)


def invoices_by_state(*, start: date, end: date, tenant: Tenant | None = None) -> tuple[Chart, list[dict]]:
    """Invoices whose period overlaps the range, counted by status (and summed per status and currency)."""
    start_dt, end_dt = day_bounds(start, end)
    invoices = Invoice.objects.filter(period_start__lt=end_dt, period_end__gt=start_dt)
    if tenant is not None:
        invoices = invoices.filter(tenant=tenant)
    rows = list(invoices.values("status", "currency").annotate(count=Count("id"), total=Sum("total"))
                .order_by("status", "currency"))
    counts = {status: 0 for status in InvoiceStatus.values}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + row["count"]
    colours = {"draft": "#9AA5B1", "finalized": "#0072B2", "paid": "#009E73", "void": "#D55E00"}
    chart = Chart(id="invoices", title="Invoices by state", kind="doughnut",
                  labels=[InvoiceStatus(s).label for s in counts],
                  series=[Series("Invoices", [Decimal(c) for c in counts.values()])])
    chart.series[0].colour = ",".join(colours.get(s, "#000000") for s in counts)
    for row in rows:
        row["label"] = InvoiceStatus(row["status"]).label
        row["total"] = money(row["total"] or Decimal(0), row["currency"])
    return chart, rows


# --- unattributed usage and the pipeline ---------------------------------------------------------


def unattributed_usage(*, start: date, end: date, metrics: list[Metric]) -> dict:
    """Usage no tenant could be given: totals per metric and the largest sources (tenant_id, user)."""
    start_dt, end_dt = day_bounds(start, end)
    rows = UnattributedUsage.objects.filter(hour__gte=start_dt, hour__lt=end_dt)
    by_id = {m.pk: m for m in metrics}
    totals = []
    for row in rows.values("metric_id").annotate(total=Sum("value"), peak=Max("value")).order_by("metric_id"):
        metric = by_id.get(row["metric_id"])
        if metric is not None:
            # Unattributed rows are kept per hour and source only: a unique_count metric's range figure
            # cannot be had from them, so its busiest hour is shown, and said to be.
            figure = row["total"] if metric.aggregation in ADDITIVE else row["peak"]
            how = {Aggregation.UNIQUE_COUNT: "busiest hour", Aggregation.MAX: "largest value",
                   Aggregation.LATEST: "largest hour"}.get(metric.aggregation, "")
            totals.append({"metric": metric, "value": display_quantity(figure, metric), "how": how})
    sources = []
    for row in (rows.values("tenant_key", "user_key", "metric_id").annotate(total=Sum("value"), hours=Count("id"))
                .order_by("-hours", "-total", "tenant_key", "user_key")[:TOP_TABLE]):
        metric = by_id.get(row["metric_id"])
        if metric is not None:
            sources.append({"tenant_key": row["tenant_key"], "user_key": row["user_key"], "metric": metric,
                            "value": display_quantity(row["total"], metric), "hours": row["hours"]})
    return {"totals": totals, "sources": sources}


@dataclass
class PipelineHealth:
    now: datetime
    last_run: SyncRun | None
    last_success: SyncRun | None
    cursors: list[SyncCursor]
    failures: list[SyncRun]
    failures_in_range: int

    @property
    def synced_until(self) -> datetime | None:
        values = [c.synced_until for c in self.cursors if c.synced_until]
        return max(values) if values else None

    @property
    def lag(self) -> timedelta | None:
        return self.now - self.synced_until if self.synced_until else None

    @property
    def lag_text(self) -> str:
        lag = self.lag
        if lag is None:
            return "never synced"
        minutes = max(0, int(lag.total_seconds() // 60))
        if minutes < 120:
            return f"{minutes} min"
        hours = minutes // 60
        return f"{hours} h {minutes % 60} min" if hours < 48 else f"{hours // 24} days {hours % 24} h"

    @property
    def state(self) -> str:
        """ok, late (more than two hours behind) or failing (the last run failed)."""
        if self.last_run is None:
            return "never run"
        if self.last_run.outcome == SyncOutcome.FAILED:
            return "failing"
        lag = self.lag
        return "late" if lag is None or lag > timedelta(hours=2) else "ok"


def pipeline_health(*, start: date, end: date, now: datetime | None = None) -> PipelineHealth:
    start_dt, end_dt = day_bounds(start, end)
    failed = SyncRun.objects.filter(outcome=SyncOutcome.FAILED)
    return PipelineHealth(
        now=now or timezone.now(),
        last_run=SyncRun.objects.order_by("-started_at").first(),
        last_success=SyncRun.objects.filter(outcome=SyncOutcome.SUCCEEDED).order_by("-started_at").first(),
        cursors=list(SyncCursor.objects.order_by("name")),
        failures=list(failed.order_by("-started_at")[:5]),
        failures_in_range=failed.filter(started_at__gte=start_dt, started_at__lt=end_dt).count(),
    )


# --- the whole page ------------------------------------------------------------------------------


def cached_usage_by_metric(*, start: date, end: date, tenant: Tenant | None, metrics: list[Metric],
                           last_run: SyncRun | None) -> list[MetricUsage]:
    """usage_by_metric, kept until the usage can have changed: new daily rows (the newest id: the usage
    sync replaces the daily rows of the days it touched, so every rollup gives new ids) or a new or
    finished sync run. Grouping a month of daily rows of every tenant is the page's one costly read;
    the usage sync is the only writer of those rows in production. DASHBOARD_CACHE_SECONDS (0: no
    cache) bounds how long a figure written some other way can lag."""
    seconds = settings.DASHBOARD_CACHE_SECONDS
    if seconds <= 0:
        return usage_by_metric(start=start, end=end, tenant=tenant, metrics=metrics)
    newest = DailyUsage.objects.aggregate(newest=Max("id"))["newest"] or 0  # the primary key's index: cheap
    version = (newest, last_run.pk if last_run else 0, last_run.finished_at.isoformat()
               if last_run and last_run.finished_at else "", tuple((m.pk, m.code, str(m.divisor), m.aggregation)
                                                                   for m in metrics))
    key = "dashboards:usage:" + hashlib.sha256(
        repr((start, end, tenant.pk if tenant else 0, version)).encode()).hexdigest()
    usage = cache.get(key)
    if usage is None:
        usage = usage_by_metric(start=start, end=end, tenant=tenant, metrics=metrics)
        if not any(item.unavailable for item in usage):  # a lake that did not answer is asked again
            cache.set(key, usage, seconds)
    return usage


# --- email --------------------------------------------------------------------------------------


@dataclass
class EmailHealth:
    failed: int  # gave up: each needs an operator (fix the address or the server, then Resend)
    retrying: int  # pending after a failed attempt: the worker tries again with backoff

    @property
    def state(self) -> str:
        return "failing" if self.failed else "late" if self.retrying else "ok"


def email_health() -> EmailHealth:
    """Email deliveries that failed or are being retried, all tenants and all time (one query)."""
    counts = EmailDelivery.objects.aggregate(
        failed=Count("pk", filter=Q(status=DeliveryStatus.FAILED)),
        retrying=Count("pk", filter=Q(status=DeliveryStatus.PENDING, attempts__gt=0)),
    )
    return EmailHealth(failed=counts["failed"], retrying=counts["retrying"])


# Receivables' ages: days past the due date, (label, first day, last day or None).
AGE_BUCKETS = (("Not due yet", None, 0), ("1–30 days late", 1, 30), ("31–60 days late", 31, 60),
               ("61–90 days late", 61, 90), ("Over 90 days late", 91, None))


def receivables_by_age(*, today: date | None = None, tenant: Tenant | None = None) -> list[dict]:
    """What tenants owe (finalized invoices less the prepaid credits they drew, their payments and what credit notes took off them), per currency, by days past the due date:
    [{currency, buckets: [{label, count, amount}], count, total}]. Whatever the date range: what is owed now.

    One query, grouped by currency and age in the database: at 10,000 tenants the finalized invoices are
    tens of thousands, too many to read one by one (0.6 s)."""
    today = today or timezone.now().date()
    invoices, payments = Invoice._meta.db_table, InvoicePayment._meta.db_table
    # The bucket's index from the due date (days late = today - due date): comparing dates rather than
    # subtracting them reads the same on every database. The last bucket takes the rest.
    highs = [high for _, _, high in AGE_BUCKETS if high is not None]
    age = ("CASE " + " ".join(f"WHEN i.due_date >= %s THEN {i}" for i in range(len(highs)))
           + f" ELSE {len(AGE_BUCKETS) - 1} END")
    scope_params = [tenant.pk] if tenant is not None else []
    scope = " AND {}.tenant_id = %s" if tenant is not None else ""
    # The payments of the finalized invoices, grouped once and joined (a correlated subquery was run
    # twice per invoice: in the filter and in the sum, 30,000 runs at 10,000 tenants).
    sql = (f"SELECT currency, age, COUNT(*), SUM(owed) FROM ("
           f"SELECT i.currency AS currency, {age} AS age, "
           f"i.total - i.credits_applied - i.credited_against_due - COALESCE(p.paid, 0) AS owed "
           f"FROM {invoices} i LEFT JOIN (SELECT u.invoice_id AS invoice_id, SUM(u.amount) AS paid FROM {payments} u "
           f"INNER JOIN {invoices} f ON f.id = u.invoice_id WHERE f.status = %s{scope.format('f')} "
           f"GROUP BY u.invoice_id) p ON p.invoice_id = i.id WHERE i.status = %s{scope.format('i')}) owed "
           f"WHERE owed > 0 GROUP BY currency, age")
    params = ([connection.ops.adapt_datefield_value(today - timedelta(days=high)) for high in highs]
              + [InvoiceStatus.FINALIZED, *scope_params, InvoiceStatus.FINALIZED, *scope_params])
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = [(currency, index, count, _money(amount)) for currency, index, count, amount in cursor.fetchall()]
    by_currency: dict[str, list[list]] = defaultdict(lambda: [[0, Decimal(0)] for _ in AGE_BUCKETS])
    for currency, index, count, owed_amount in rows:
        by_currency[currency][index][0] += count
        by_currency[currency][index][1] += owed_amount
    return [{"currency": currency,
             "buckets": [{"label": label, "count": count, "amount": format_amount(amount, currency)}
                         for (label, _, _), (count, amount) in zip(AGE_BUCKETS, buckets, strict=True)],
             "count": sum(count for count, _ in buckets),
             "total": format_amount(sum((amount for _, amount in buckets), Decimal(0)), currency)}
            for currency, buckets in sorted(by_currency.items())]


def provider_dashboard(*, start: date, end: date, tenant: Tenant | None = None) -> dict:
    """Everything the provider's dashboard shows, for [start, end] (dates, inclusive) and an optional tenant."""
    metrics = list(Metric.objects.order_by("code"))
    pipeline = pipeline_health(start=start, end=end)
    usage = cached_usage_by_metric(start=start, end=end, tenant=tenant, metrics=metrics, last_run=pipeline.last_run)
    top_metrics, top_rows = top_tenants_table(usage)
    revenue_chart, revenue_plans = revenue_by_month(start=start, end=end, tenant=tenant)
    invoices_chart, invoice_rows = invoices_by_state(start=start, end=end, tenant=tenant)
    return {
        "usage": usage,
        "top_metrics": top_metrics,
        "top_rows": top_rows,
        "top_primary": next((m for m in top_metrics if m.aggregation in ADDITIVE), top_metrics[0] if top_metrics else None),
        "revenue_chart": revenue_chart,
        "revenue_plans": revenue_plans,
        "invoices_chart": invoices_chart,
        "invoice_rows": invoice_rows,
        "receivables": receivables_by_age(tenant=tenant),
        "unattributed": unattributed_usage(start=start, end=end, metrics=metrics),
        "pipeline": pipeline,
        "email": email_health(),
    }


# --- the tenant's dashboard ------------------------------------------------------------------------


def tenant_usage_charts(*, tenant: Tenant, metrics: list[Metric], end: date, days: int) -> list[Chart]:
    """Daily usage of each metric for the `days` days to `end`, one line chart per metric (units differ); one
    query on the daily rollup (each day's exact figure: for metrics that do not add up, the chart says so)."""
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


def tenant_invoices_issued(*, tenant: Tenant, limit: int) -> list[Invoice]:
    """The tenant's latest invoices past draft (what it was sent), newest period first."""
    return list(Invoice.objects.filter(tenant=tenant).exclude(status=InvoiceStatus.DRAFT)
                .order_by("-period_start", "-created_at")[:limit])
