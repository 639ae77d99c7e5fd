"""`manage.py price_preview`: price one period of a plan file's plan for given usage (docs/plans.md).

Reads only the plan file, so it works on an empty database. Prints the preview JSON object on
standard output; any problem ends with a non-zero exit and one line on standard error.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, tzinfo
from decimal import Decimal, InvalidOperation
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from metering.pricing import (
    MAX_DOCUMENT_BYTES,
    CouponTerms,
    CreditSource,
    DocumentError,
    PlanSpec,
    TaxTerms,
    add_months,
    calendar_period,
    loads_document,
    local_to_utc,
    parse_plan_file,
    preview_document,
    price_plan,
    quantize_amount,
    with_totals,
)
from tenants.models import time_zone_names, zone_named


def parse_instant(text: str, option: str, zone: tzinfo = UTC) -> datetime:
    """An ISO 8601 date or date-time; without an offset it is a local time in ``zone`` (UTC by default)."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise CommandError(f"{option} {text!r} is not an ISO 8601 date or date-time (e.g. 2026-11-01T00:00:00Z)") from None
    try:
        return local_to_utc(moment, zone) if moment.tzinfo is None else moment.astimezone(UTC)
    except (ValueError, OverflowError):
        raise CommandError(f"{option} {text!r} is outside the years 1 to 9999 in UTC") from None


def parse_zone(name: str) -> tzinfo:
    if name not in time_zone_names():
        raise CommandError(f"--time-zone {name!r} is not an IANA time zone name (e.g. America/New_York, UTC)")
    return zone_named(name)


def parse_usage(items: list[str], plan: PlanSpec) -> dict[str, Decimal]:
    quantities: dict[str, Decimal] = {}
    used = plan.metric_codes
    for item in items:
        code, sep, text = item.partition("=")
        code = code.strip()
        if not sep or not code:
            raise CommandError(f"--usage {item!r}: expected CODE=QTY, e.g. api_calls=12000")
        try:
            quantity = Decimal(text.strip())
        except InvalidOperation:
            raise CommandError(f"--usage {item!r}: the quantity {text!r} is not a decimal number") from None
        if not quantity.is_finite() or quantity < 0:
            raise CommandError(f"--usage {item!r}: the quantity must be a finite decimal, 0 or more")
        if code not in used:
            known = ", ".join(used) or "none"
            raise CommandError(f"--usage {item!r}: no charge of plan {plan.code!r} uses metric {code!r} (its metrics: {known})")
        if code in quantities:
            raise CommandError(f"--usage {item!r}: metric {code!r} is given twice")
        quantities[code] = abs(quantity)
    return quantities


def _amount(text: str, option: str, currency: str, *, positive: bool) -> Decimal:
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise CommandError(f"{option} {text!r}: not a decimal number") from None
    if not value.is_finite() or value < 0 or (positive and value == 0):
        raise CommandError(f"{option} {text!r}: must be a finite decimal {'above' if positive else 'of at least'} 0")
    if value != quantize_amount(value, currency):
        raise CommandError(f"{option} {text!r}: more digits than {currency}'s minor units")
    return value


def parse_coupons(items: list[str], currency: str) -> list[CouponTerms]:
    """--coupon percent:10 or fixed:5.00, in the order given."""
    coupons = []
    for item in items:
        kind, sep, text = item.partition(":")
        kind = kind.strip()
        if not sep or kind not in ("percent", "fixed"):
            raise CommandError(f"--coupon {item!r}: expected percent:PCT or fixed:AMOUNT, e.g. percent:10")
        if kind == "percent":
            try:
                value = Decimal(text.strip())
            except InvalidOperation:
                raise CommandError(f"--coupon {item!r}: the percentage {text!r} is not a decimal number") from None
            if not value.is_finite() or not Decimal(0) < value <= 100:
                raise CommandError(f"--coupon {item!r}: a percentage is above 0 and at most 100")
        else:
            value = _amount(text, f"--coupon {item}", currency, positive=True)
        coupons.append(CouponTerms(kind, value, f"coupon {item}"))
    return coupons


def parse_tax(text: str | None, inclusive: bool) -> TaxTerms | None:
    if text is None:
        if inclusive:
            raise CommandError("--tax-inclusive needs --tax-rate")
        return None
    try:
        rate = Decimal(text.strip())
    except InvalidOperation:
        raise CommandError(f"--tax-rate {text!r}: not a decimal number (a percentage, e.g. 20)") from None
    if not rate.is_finite() or not Decimal(0) <= rate <= 100:
        raise CommandError(f"--tax-rate {text!r}: a percentage between 0 and 100")
    return TaxTerms(f"Tax {rate.normalize():f} %", rate, inclusive)


def choose_plan(plans: list[PlanSpec], code: str | None, path: str) -> PlanSpec:
    if not plans:
        raise CommandError(f"plan file {path!r} holds no plan")
    if code is not None:
        for plan in plans:
            if plan.code == code:
                return plan
        raise CommandError(f"plan file {path!r} has no plan {code!r} (its plans: {', '.join(p.code for p in plans)})")
    if len(plans) > 1:
        raise CommandError(
            f"plan file {path!r} holds {len(plans)} plans ({', '.join(p.code for p in plans)}): choose one with --plan"
        )
    return plans[0]


class Command(BaseCommand):
    help = (
        "Price one billing period of a plan for the given usage and print the invoice lines as JSON "
        "(no trial applied). Reads only the plan file."
    )
    requires_system_checks: list[str] = []  # pure computation: runs even where the project checks fail

    def add_arguments(self, parser):
        parser.add_argument("--plan-file", required=True, metavar="FILE",
                            help="a plan document, or an import file {\"metrics\": [...], \"plans\": [...]}")
        parser.add_argument("--plan", metavar="CODE", help="the plan to price when the file holds several")
        parser.add_argument("--usage", action="extend", nargs="+", default=[], metavar="CODE=QTY",
                            help="a metric's quantity for the period (repeatable); a metric not given has 0")
        parser.add_argument("--period-start", metavar="ISO",
                            help="start of the period (default: the current calendar month, or year for yearly plans)")
        parser.add_argument("--period-end", metavar="ISO",
                            help="end of the period (default: one plan interval after --period-start)")
        parser.add_argument("--subscription-start", metavar="ISO",
                            help="prorate the base fee and the commitment as for a subscription starting then")
        parser.add_argument("--time-zone", default="UTC", metavar="NAME",
                            help="the tenant's IANA time zone (default UTC): the default period is its calendar "
                                 "month, times without an offset are its local times, and the output has its offsets")
        parser.add_argument("--coupon", action="append", default=[], metavar="percent:PCT|fixed:AMOUNT",
                            help="a discount on the subtotal (repeatable, applied in the order given)")
        parser.add_argument("--tax-rate", metavar="PCT", help="the tax rate, a percentage (exclusive by default)")
        parser.add_argument("--tax-inclusive", action="store_true", help="the tax rate is inclusive")
        parser.add_argument("--credit", metavar="AMOUNT", help="the prepaid credit balance available")

    def handle(self, *args, **options):
        path = options["plan_file"]
        try:
            with Path(path).open("rb") as fh:
                text = fh.read(MAX_DOCUMENT_BYTES + 1)  # past the limit loads_document refuses it
        except OSError as exc:
            raise CommandError(f"cannot read plan file {path!r}: {exc.strerror or exc}") from None
        try:
            _metrics, plans = parse_plan_file(loads_document(text))
        except DocumentError as exc:
            raise CommandError(f"plan file {path!r} does not validate: {exc}") from None
        plan = choose_plan(plans, options["plan"], path)
        quantities = parse_usage(options["usage"], plan)

        zone = parse_zone(options["time_zone"])
        try:
            period_start, period_end = self.period(options, plan, zone)
        except (ValueError, OverflowError):  # a bound beyond year 9999 (or before year 1) on some clock
            raise CommandError("the period must lie between the years 1 and 9999") from None

        active_start = None
        if options["subscription_start"] is not None:
            active_start = parse_instant(options["subscription_start"], "--subscription-start", zone)
            if active_start >= period_end:
                raise CommandError(
                    f"--subscription-start ({options['subscription_start']}) is not before the period's end"
                )
        try:
            priced = price_plan(plan, quantities, period_start=period_start, period_end=period_end,
                                active_start=active_start)
        except (ValueError, ArithmeticError) as exc:  # e.g. a custom rule refusing its input
            raise CommandError(f"cannot price plan {plan.code!r}: {exc}") from None
        coupons = parse_coupons(options["coupon"], plan.currency)
        tax = parse_tax(options["tax_rate"], options["tax_inclusive"])
        credit = options["credit"]
        # The plan's included credit expires at the period's end: drawn before a balance that lasts longer.
        credits = [CreditSource(plan.included_credit)] if plan.included_credit > 0 else []
        if credit is not None:
            credits.append(CreditSource(_amount(credit, "--credit", plan.currency, positive=False)))
        if coupons or tax is not None or credits:
            priced = with_totals(priced, coupons=coupons, tax=tax, credits=credits)
        self.stdout.write(json.dumps(preview_document(priced, zone), indent=2))

    @staticmethod
    def period(options, plan: PlanSpec, zone: tzinfo) -> tuple[datetime, datetime]:
        """The period to price: the options', or the zone's current calendar month (year)."""
        start_text, end_text = options["period_start"], options["period_end"]
        if start_text is None and end_text is None:
            period_start, period_end = calendar_period(datetime.now(UTC), plan.interval, zone)
        elif start_text is None:
            raise CommandError("--period-end needs --period-start")
        else:
            period_start = parse_instant(start_text, "--period-start", zone)
            if end_text is None:  # one interval later on the zone's clock
                local_start = period_start.astimezone(zone).replace(tzinfo=None)
                period_end = local_to_utc(add_months(local_start, 12 if plan.interval == "year" else 1), zone)
            else:
                period_end = parse_instant(end_text, "--period-end", zone)
            if period_end <= period_start:
                raise CommandError(f"--period-end ({end_text}) must be after --period-start ({start_text})")
        return period_start, period_end
