"""The pricing engine: a period's invoice lines from parsed plans and quantities (docs/plans.md).

Pure arithmetic on :mod:`decimal` values; no database and no Django. The specs come from
:mod:`metering.pricing.documents`, parsed once; pricing a charge is then a few Decimal operations.

The rules, to the cent:

- A charge's amount is computed exactly, then rounded half-up to the currency's minor unit; the
  total is the sum of the rounded lines.
- Lines, per segment (one plan over one part of the period) in order: ``base_fee`` (when the plan has
  one), one ``usage`` line per charge (even at quantity 0); then one ``minimum_commitment`` true-up
  line for the whole period when it applies.
- The base fee is prorated: ``base_fee × active seconds / period seconds`` (to the microsecond).
  Usage is never prorated: each segment's quantities are priced under that segment's plan.
- The minimum commitment is prorated like the base fee, per segment, with each segment's own plan's
  commitment (none counts as 0); the sum, rounded, is the period's commitment. When the sum of all
  other rounded lines is below it, one true-up line brings the total up to it. It is attributed to
  the last segment's plan.
- Nothing is billed before ``trial_end``: the part of a segment before it has no base fee and no
  commitment, and a segment wholly inside the trial prices its usage at 0 (not even a first tier's
  flat amount). The quantities given for a segment that ends after the trial are priced as they are:
  the caller passes quantities that already exclude usage recorded during the trial.
- Late usage (usage of a period that reached the portal after its invoice was sent) is priced at the
  margin by ``price_added_usage``: the charge at the period's whole quantity less the charge at the
  quantity already billed, both rounded as usage lines are, never below 0.
- Metric divisors are applied by the usage side; the engine receives the final quantity.
"""

from __future__ import annotations

import calendar
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta, tzinfo
from decimal import ROUND_HALF_UP, Decimal, localcontext
from functools import lru_cache

from .currency import ARITHMETIC_CONTEXT, format_amount, format_unit_amount, quantum
from .documents import ChargeSpec, PlanSpec
from .rules import get_rule
from .totals import CouponTerms, CreditSource, InvoiceTotals, TaxTerms, invoice_totals

ZERO = Decimal(0)


# --- one charge ---------------------------------------------------------------------------------------


def _exact_amount(charge: ChargeSpec, quantity: Decimal, currency: str) -> Decimal:
    """The charge's amount before rounding. Runs inside ARITHMETIC_CONTEXT."""
    if quantity < 0:
        raise ValueError(f"quantity of {charge.metric!r} is negative ({quantity})")
    model = charge.model
    if model == "graduated":
        _up_to, lower, unit_amount, flat_amount, below = charge.tier_table[_tier_index(charge, quantity)]
        return below + (quantity - lower) * unit_amount + flat_amount
    if model == "volume":
        _up_to, _lower, unit_amount, flat_amount, _below = charge.tier_table[_tier_index(charge, quantity)]
        return quantity * unit_amount + flat_amount
    if model == "per_unit":
        transform = charge.transform
        if transform is not None:
            whole, rest = divmod(quantity, transform.divide_by)
            quantity = whole + 1 if rest and transform.round == "up" else whole
        return quantity * charge.unit_amount
    if model == "package":
        paid = quantity - charge.free_units
        if paid <= 0:
            return ZERO
        packages, rest = divmod(paid, charge.package_size)
        if rest:
            packages += 1
        return packages * charge.package_amount
    if model == "custom":
        amount = get_rule(charge.rule)(quantity, charge.params, currency)
        if isinstance(amount, int) and not isinstance(amount, bool):
            amount = Decimal(amount)
        if not isinstance(amount, Decimal) or not amount.is_finite() or amount < 0:
            raise ValueError(f"custom rule {charge.rule!r} returned {amount!r}, not a non-negative Decimal")
        return amount
    raise ValueError(f"unknown charge model {model!r}")


def _tier_index(charge: ChargeSpec, quantity: Decimal) -> int:
    """The index of the tier that contains ``quantity``: the first whose ``up_to`` is at least it, else the last."""
    for index, row in enumerate(charge.tier_table):
        up_to = row[0]
        if up_to is None or quantity <= up_to:
            return index
    raise ValueError(f"quantity {quantity} of {charge.metric!r} is past the last tier")


def tier_index(charge: ChargeSpec, quantity: Decimal) -> int:
    """The position (from 0) of the tier of a graduated or volume charge that ``quantity`` falls in.

    Tier i covers (up_to of tier i-1, up_to of tier i], the first from 0 (docs/plans.md): a quantity on a
    boundary is in the lower tier, and 0 is in the first, for graduated and volume alike. Each tier's lower
    bound is ``charge.tier_table[i][1]``.
    """
    if not charge.tier_table:
        raise ValueError(f"the charge of {charge.metric!r} ({charge.model}) has no tiers")
    return _tier_index(charge, quantity)


def price_charge(charge: ChargeSpec, quantity: Decimal, currency: str) -> Decimal:
    """One usage line's amount: the charge priced at ``quantity``, rounded half-up to the currency."""
    step = quantum(currency)
    with localcontext(ARITHMETIC_CONTEXT):
        return _exact_amount(charge, quantity, currency).quantize(step, rounding=ROUND_HALF_UP)


def price_added_usage(charge: ChargeSpec, *, billed: Decimal, quantity: Decimal, currency: str) -> Decimal:
    """What usage added after ``billed`` was invoiced costs (a late-usage line): the charge priced at the
    whole ``quantity`` less the charge priced at ``billed``, each rounded as ``price_charge`` rounds a usage
    line, so that the lines of a period add up to the price of its final quantity. Never below 0: a volume
    tier or a custom rule can price more usage lower, and a sent invoice is not credited."""
    added = price_charge(charge, quantity, currency) - price_charge(charge, billed, currency)
    return added if added > 0 else ZERO.quantize(quantum(currency))


@dataclass(frozen=True, slots=True)
class TierAmount:
    """One tier of a graduated or volume line: the range it covers, what fell in it and what it costs."""

    lower: Decimal  # the tier covers (lower, up_to]; the first tier starts at 0
    up_to: Decimal | None  # None: unbounded
    units: Decimal  # the part of the quantity priced in this tier
    unit_amount: Decimal
    flat_amount: Decimal  # charged with the tier (0 when the tier has none)
    amount: Decimal  # in the currency's minor unit; the tiers of a line add up to the line's amount exactly


def tier_breakdown(charge: ChargeSpec, quantity: Decimal, currency: str) -> tuple[TierAmount, ...]:
    """How a graduated or volume charge priced ``quantity``, tier by tier (empty for the other models).

    Graduated: every tier the quantity reaches (the first always, as its flat amount is charged even at
    0); volume: the one tier that prices all of it. The amounts come from the charge's own figures (the
    tier table's full-tier sums and ``price_charge``'s exact amount), never from a second computation.
    Each tier shows the rounded running total less the rounded total before it, so the tiers add up to
    the line's amount to the minor unit, and no tier is more than one minor unit from its exact amount.
    """
    if charge.model not in ("graduated", "volume"):
        return ()
    step = quantum(currency)
    with localcontext(ARITHMETIC_CONTEXT):
        if quantity < 0:
            raise ValueError(f"quantity of {charge.metric!r} is negative ({quantity})")
        table = charge.tier_table
        last = _tier_index(charge, quantity)
        exact = _exact_amount(charge, quantity, currency)
        if charge.model == "volume":
            up_to, lower, unit_amount, flat_amount, _below = table[last]
            return (TierAmount(lower, up_to, quantity, unit_amount, flat_amount,
                               exact.quantize(step, rounding=ROUND_HALF_UP)),)
        tiers = []
        shown = ZERO.quantize(step)
        for index in range(last + 1):
            up_to, lower, unit_amount, flat_amount, _below = table[index]
            # Up to the containing tier each tier is full: the running total is the next row's "below".
            running = exact if index == last else table[index + 1][4]
            units = quantity - lower if index == last else up_to - lower
            rounded = running.quantize(step, rounding=ROUND_HALF_UP)
            tiers.append(TierAmount(lower, up_to, units, unit_amount, flat_amount, rounded - shown))
            shown = rounded
        return tuple(tiers)


def unit_amount_shown(charge: ChargeSpec) -> Decimal | None:
    """The unit price worth printing on a line: per_unit only (tiers and packages have none)."""
    return charge.unit_amount if charge.model == "per_unit" else None


# --- a period -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InvoiceLine:
    type: str  # "base_fee" | "usage" | "minimum_commitment"
    description: str
    amount: Decimal  # rounded to the currency
    metric: str | None = None
    model: str | None = None
    quantity: Decimal | None = None
    unit_amount: Decimal | None = None  # per_unit's price; None for tiered, package and custom
    plan: str = ""
    period_start: datetime | None = None  # the part of the period the line covers
    period_end: datetime | None = None
    # A usage line's charge, when its quantity was priced (None for a part of the period that is all
    # trial, billed 0): tier_breakdown(line.charge, line.quantity, currency) details a tiered line.
    charge: ChargeSpec | None = None


@dataclass(frozen=True, slots=True)
class PricedPeriod:
    plans: tuple[str, ...]  # plan codes in segment order, each once
    currency: str
    period_start: datetime
    period_end: datetime
    lines: tuple[InvoiceLine, ...]
    total: Decimal  # the lines' sum: the subtotal of the order after the lines
    # Discounts, tax and credits (metering.pricing.totals), when the caller applied them (with_totals).
    totals: InvoiceTotals | None = None

    @property
    def plan(self) -> str:
        """The plan in force at the end of the period."""
        return self.plans[-1]


def with_totals(priced: PricedPeriod, *, coupons: Sequence[CouponTerms] = (), tax: TaxTerms | None = None,
                credits: Sequence[CreditSource] = ()) -> PricedPeriod:
    """The priced period with its discounts, tax and credits applied to its lines' sum, in the invoice's order."""
    return replace(priced, totals=invoice_totals(priced.total, priced.currency, coupons=coupons, tax=tax,
                                                 credits=credits))


@dataclass(frozen=True, slots=True)
class Segment:
    """One plan over one part of the period, with the quantities used in that part."""

    plan: PlanSpec
    start: datetime
    end: datetime
    quantities: Mapping[str, Decimal] = field(default_factory=dict, hash=False)


def _require_aware(name: str, value: datetime) -> None:
    try:
        aware = value.utcoffset() is not None and isinstance(value, datetime)
    except (AttributeError, TypeError):
        aware = False
    if not aware:
        raise ValueError(f"{name} must be a timezone-aware datetime, got {value!r}")


def _micros(delta: timedelta) -> int:
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def price_period(
    segments: Sequence[Segment],
    *,
    period_start: datetime,
    period_end: datetime,
    trial_end: datetime | None = None,
) -> PricedPeriod:
    """Price a billing period made of one or more segments (a plan change splits the period).

    Segments must be in time order and must not overlap; each is clipped to the period. All plans
    must share one currency.
    """
    _require_aware("period_start", period_start)
    _require_aware("period_end", period_end)
    if period_end <= period_start:
        raise ValueError(f"the period ends ({period_end}) before it starts ({period_start})")
    if not segments:
        raise ValueError("a period needs at least one segment")
    if trial_end is not None:
        _require_aware("trial_end", trial_end)
    currency = segments[0].plan.currency
    step = quantum(currency)
    zero_amount = ZERO.quantize(step)
    period_us = _micros(period_end - period_start)

    lines: list[InvoiceLine] = []
    plans: list[str] = []
    commitment = ZERO
    commitment_plan = None
    previous_end = None
    first_start = None
    with localcontext(ARITHMETIC_CONTEXT):
        for segment in segments:
            plan = segment.plan
            if plan.currency != currency:
                raise ValueError(
                    f"plan {plan.code!r} is priced in {plan.currency}, the period in {currency}: "
                    "a plan change must keep the currency"
                )
            try:  # comparing a naive datetime with the (checked) aware bounds raises TypeError
                start = segment.start if segment.start > period_start else period_start
                end = segment.end if segment.end < period_end else period_end
            except TypeError:
                raise ValueError(
                    f"segment start and end must be timezone-aware datetimes, got {segment.start!r}, {segment.end!r}"
                ) from None
            if end <= start:
                raise ValueError(f"the segment of plan {plan.code!r} ({segment.start} to {segment.end}) is outside the period")
            if previous_end is not None and start < previous_end:
                raise ValueError("segments must be in time order and must not overlap")
            previous_end = end
            if plan.code not in plans:
                plans.append(plan.code)

            billable_start = start
            if trial_end is not None and trial_end > start:
                billable_start = trial_end if trial_end < end else end
            if first_start is None:
                first_start = billable_start
            active_us = _micros(end - billable_start)

            if plan.base_fee:
                if active_us == period_us:
                    fee = plan.base_fee
                else:
                    fee = plan.base_fee * active_us / period_us
                lines.append(InvoiceLine(
                    "base_fee", f"{plan.name} base fee", fee.quantize(step, rounding=ROUND_HALF_UP),
                    None, None, None, None, plan.code, billable_start, end,
                ))

            quantities = segment.quantities
            for charge in plan.charges:
                quantity = quantities.get(charge.metric, ZERO)
                if active_us:
                    amount = _exact_amount(charge, quantity, currency).quantize(step, rounding=ROUND_HALF_UP)
                else:
                    amount = zero_amount
                lines.append(InvoiceLine(
                    "usage", f"{charge.metric} usage", amount, charge.metric, charge.model, quantity,
                    unit_amount_shown(charge), plan.code, start, end,
                    charge if active_us else None,
                ))

            if plan.minimum_commitment is not None:
                commitment_plan = plan.code
                if plan.minimum_commitment and active_us:
                    commitment += plan.minimum_commitment * active_us / period_us

        subtotal = sum([line.amount for line in lines], zero_amount)
        total = subtotal
        if commitment_plan is not None:
            committed = commitment.quantize(step, rounding=ROUND_HALF_UP)
            if subtotal < committed:
                lines.append(InvoiceLine(
                    "minimum_commitment", "Minimum commitment true-up", committed - subtotal,
                    None, None, None, None, commitment_plan, first_start, previous_end,
                ))
                total = committed

    return PricedPeriod(tuple(plans), currency, period_start, period_end, tuple(lines), total)


def price_plan(
    plan: PlanSpec,
    quantities: Mapping[str, Decimal],
    *,
    period_start: datetime,
    period_end: datetime,
    active_start: datetime | None = None,
    active_end: datetime | None = None,
    trial_end: datetime | None = None,
) -> PricedPeriod:
    """One plan over a period; ``active_start``/``active_end`` prorate a subscription that starts or
    ends inside it."""
    start = period_start if active_start is None or active_start < period_start else active_start
    end = period_end if active_end is None or active_end > period_end else active_end
    if end <= start:
        raise ValueError("the subscription is not active during the period")
    return price_period(
        (Segment(plan, start, end, quantities),),
        period_start=period_start, period_end=period_end, trial_end=trial_end,
    )


# --- periods ------------------------------------------------------------------------------------------


def _utc(name: str, value: datetime) -> datetime:
    _require_aware(name, value)
    return value.astimezone(UTC)


def add_months(moment: datetime, months: int, *, day: int | None = None) -> datetime:
    """``moment`` moved by whole months, the day clipped to the month's length (Jan 31 + 1 = Feb 28/29)."""
    years, month_index = divmod(moment.month - 1 + months, 12)
    year = moment.year + years
    month = month_index + 1
    wanted = moment.day if day is None else day
    return moment.replace(year=year, month=month, day=min(wanted, calendar.monthrange(year, month)[1]))


def _interval_months(interval: str) -> int:
    if interval == "month":
        return 1
    if interval == "year":
        return 12
    raise ValueError(f"interval must be 'month' or 'year', got {interval!r}")


def local_to_utc(wall: datetime, zone: tzinfo) -> datetime:
    """The instant (in UTC) of the naive local time ``wall`` in ``zone``.

    One rule for the two local times a zone can get wrong: a time the clocks skip (spring forward)
    is read with the offset in force before the change, so it lands as much later as the gap is long
    (02:30 on a day that jumps from 02:00 to 03:00 is 03:30; a midnight skipped at midnight is the
    first instant of the day); a time the clocks repeat (fall back) is its first occurrence. This is
    Python's ``fold=0``, RFC 5545's rule and java.time's, so a period's bounds are reproducible by hand.
    """
    return wall.replace(tzinfo=zone, fold=0).astimezone(UTC)


def _walk(boundary, guess: int, at: datetime) -> tuple[datetime, datetime]:
    """The period [boundary(k), boundary(k + 1)) that contains ``at``, searched from k = ``guess``.

    ``boundary`` is strictly increasing in k, so the periods tile time; a step or two either way
    covers what local time does to the guess (an offset is at most a day, a period at least 28 days).
    """
    k = guess
    start = boundary(k)
    while start > at:
        k -= 1
        start = boundary(k)
    end = boundary(k + 1)
    while end <= at:
        k += 1
        start, end = end, boundary(k + 1)
    return start, end


@lru_cache(maxsize=4096)
def calendar_period(at: datetime, interval: str = "month", zone: tzinfo = UTC) -> tuple[datetime, datetime]:
    """The calendar month (or year) containing ``at``, [start, end) in UTC: each starts at midnight on
    the 1st (of January, for a year) in ``zone`` (``local_to_utc`` reads a midnight the clocks skip).

    Remembered (a function of the instant, the interval and the zone only): a billing run asks it for the
    same few months of every subscription on the calendar cycle, three times each."""
    at = _utc("at", at)
    months = _interval_months(interval)
    local = at.astimezone(zone)
    first = datetime(local.year, 1 if months == 12 else local.month, 1)
    return _walk(lambda k: local_to_utc(add_months(first, k * months), zone), 0, at)


def anniversary_period(anchor: datetime, at: datetime, interval: str = "month",
                       zone: tzinfo = UTC) -> tuple[datetime, datetime]:
    """The period containing ``at`` when periods start at ``anchor`` and recur every interval, in UTC.

    Each start is the anchor's local time (in ``zone``) on the anchor's day of the month, computed from
    the anchor (never from the previous start), so an anchor on the 31st gives Feb 28 (or 29) then
    Mar 31, not Mar 28. The first period starts at the anchor itself; the later starts read their
    local time with ``local_to_utc``, so a daylight-saving change moves none of them off the clock time.
    """
    anchor = _utc("anchor", anchor)
    at = _utc("at", at)
    step = _interval_months(interval)
    wall = anchor.astimezone(zone).replace(tzinfo=None)
    local = at.astimezone(zone)

    def boundary(k: int) -> datetime:
        return anchor if k == 0 else local_to_utc(add_months(wall, k * step), zone)

    months = (local.year - wall.year) * 12 + (local.month - wall.month)
    return _walk(boundary, months // step, at)


def period_bounds(at: datetime, interval: str = "month", *, anchor: datetime | None = None,
                  zone: tzinfo = UTC) -> tuple[datetime, datetime]:
    """The billing period containing ``at``: anniversary periods when an anchor is given, else calendar."""
    if anchor is None:
        return calendar_period(at, interval, zone)
    return anniversary_period(anchor, at, interval, zone)


def trial_ends_at(started_at: datetime, trial_days: int) -> datetime | None:
    """When a trial of ``trial_days`` days ends for a subscription started at ``started_at``, in UTC (None: no trial).

    The one place the trial end is computed: subscriptions store it when they start, and billing bills from it.
    """
    if not trial_days:
        return None
    return _utc("started_at", started_at) + timedelta(days=trial_days)


def trial_end_for(plan: PlanSpec, subscription_start: datetime) -> datetime | None:
    """When the plan's trial ends for a subscription starting then (None: the plan has no trial)."""
    return trial_ends_at(subscription_start, plan.trial_days)


# --- the preview's JSON -------------------------------------------------------------------------------


def isoformat_z(moment: datetime) -> str:
    """ISO 8601 in UTC with a trailing Z (``2026-11-01T00:00:00Z``)."""
    return _utc("moment", moment).isoformat().replace("+00:00", "Z")


def isoformat_local(moment: datetime, zone: tzinfo) -> str:
    """ISO 8601 on the clock of ``zone``, with its offset (``2026-11-01T00:00:00-04:00``; ``Z`` at UTC itself)."""
    return _utc("moment", moment).astimezone(zone).isoformat().replace("+00:00", "Z")


def local_label(moment: datetime, zone: tzinfo) -> str:
    """A moment as people read it on the clock of ``zone``: ``2026-11-01 00:00 UTC-04:00`` (``UTC`` at offset 0)."""
    local = _utc("moment", moment).astimezone(zone)
    offset = local.isoformat()[-6:] if local.utcoffset() else ""
    if local.second or local.microsecond:
        return f"{local:%Y-%m-%d %H:%M:%S} UTC{offset}"
    return f"{local:%Y-%m-%d %H:%M} UTC{offset}"


def format_quantity(quantity: Decimal) -> str:
    """A quantity as docs/plans.md prints it: plain digits, never an exponent ("12000", "1.5")."""
    quantity = Decimal(quantity)
    return format(quantity if quantity else abs(quantity), "f")


def format_plain(value: Decimal) -> str:
    """A stored decimal as people read it: no trailing zeros, never an exponent ("40" for 40.000000, "17.440363")."""
    value = Decimal(value).normalize(ARITHMETIC_CONTEXT)
    return format(value if value else abs(value), "f")


def tiers_document(tiers: Sequence[TierAmount], currency: str) -> list[dict]:
    """A tier breakdown as JSON-ready dicts of decimal strings (what an invoice line stores and the API shows):
    ``from`` and ``up_to`` (None: unbounded) bound the tier, ``units`` fell in it, priced at ``unit_amount``
    each plus ``flat_amount``, for ``amount`` in the currency's minor digits."""
    return [
        {"from": format_plain(tier.lower), "up_to": None if tier.up_to is None else format_plain(tier.up_to),
         "units": format_plain(tier.units), "unit_amount": format_unit_amount(tier.unit_amount, currency),
         "flat_amount": format_unit_amount(tier.flat_amount, currency), "amount": format_amount(tier.amount, currency)}
        for tier in tiers
    ]


def preview_document(priced: PricedPeriod, zone: tzinfo = UTC) -> dict:
    """The JSON object of the price preview (docs/plans.md, "The price preview"), its period on the clock of
    ``zone`` (ISO 8601 with the offset; ``Z`` in UTC).

    With several plans (a plan change) each line also names its ``plan`` and the object lists
    ``plans``; ``plan`` is then the plan in force at the end of the period.
    """
    currency = priced.currency
    several = len(priced.plans) > 1
    lines = []
    for line in priced.lines:
        if line.type == "usage":
            item = {
                "type": "usage", "metric": line.metric, "model": line.model,
                "quantity": format_quantity(line.quantity), "amount": format_amount(line.amount, currency),
            }
        else:
            item = {"type": line.type, "description": line.description, "amount": format_amount(line.amount, currency)}
        if several:
            item["plan"] = line.plan
        lines.append(item)
    doc = {
        "plan": priced.plan,
        "currency": currency,
        "period_start": isoformat_local(priced.period_start, zone),
        "period_end": isoformat_local(priced.period_end, zone),
        "lines": lines,
        "total": format_amount(priced.total, currency),
    }
    totals = priced.totals
    if totals is None:  # no discount, tax or credit asked for: the lines' sum is the total
        if several:
            doc["plans"] = list(priced.plans)
        return doc
    del doc["total"]  # placed after the tax, in the invoice's order
    doc["subtotal"] = format_amount(totals.subtotal, currency)
    if totals.discounts:
        doc["discounts"] = [{"description": d.label, "amount": format_amount(d.amount, currency)}
                            for d in totals.discounts]
    doc["discount"] = format_amount(totals.discount, currency)
    if totals.shows_tax:
        doc["tax_rate"] = {"name": totals.tax_terms.name, "percentage": format_plain(totals.tax_terms.percentage),
                           "inclusive": totals.tax_terms.inclusive}
    doc["tax"] = format_amount(totals.tax, currency)
    doc["total"] = format_amount(totals.total, currency)
    doc["credits_applied"] = format_amount(totals.credits_applied, currency)
    doc["amount_due"] = format_amount(totals.amount_due, currency)
    if several:
        doc["plans"] = list(priced.plans)
    return doc
