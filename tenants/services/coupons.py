"""Coupons and tax rates: staff create coupons and tax rates; a coupon is applied to a subscription by staff
(admin, API) or by its code at signup, within its redemption limit and expiry (docs/plans.md, "After the lines").

A redemption counts on the coupon's row, locked while it is checked and incremented, and a check constraint
keeps the count within the limit, so two concurrent signups cannot both take a coupon's last redemption.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation

from django.db import IntegrityError, transaction
from django.utils import timezone

from metering.pricing import is_known_currency, quantize_amount
from portal.kernel import ApplicationError
from tenants.models import (
    Coupon,
    CouponDuration,
    CouponKind,
    CouponVia,
    Subscription,
    SubscriptionCoupon,
    TaxRate,
)


def _decimal(value, what: str) -> Decimal:
    try:
        number = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise ApplicationError(f"{what} is a decimal number, not {str(value)[:40]!r}.", {"field": what}) from None
    if not number.is_finite():
        raise ApplicationError(f"{what} is a finite decimal number.", {"field": what})
    return number


def coupon_create(
    *, code: str, name: str = "", kind: str, percent_off=None, amount_off=None, currency: str = "",
    duration: str = CouponDuration.ONCE, duration_periods: int | None = None, max_redemptions: int | None = None,
    redeem_by: datetime | None = None,
) -> Coupon:
    """A new coupon; every mistake is an ApplicationError naming its field."""
    code = (code or "").strip().upper()
    coupon = Coupon(code=code, name=(name or code).strip(), kind=kind, duration=duration,
                    duration_periods=duration_periods, max_redemptions=max_redemptions, redeem_by=redeem_by)
    if kind == CouponKind.PERCENT:
        if percent_off in (None, ""):
            raise ApplicationError("A percentage coupon needs its percentage.", {"field": "percent_off"})
        percent = _decimal(percent_off, "percent_off")
        if not Decimal(0) < percent <= 100 or percent != percent.quantize(Decimal("0.0001")):
            raise ApplicationError("The percentage is above 0 and at most 100, with at most 4 decimals.",
                                   {"field": "percent_off"})
        if amount_off not in (None, "") or currency:
            raise ApplicationError("A percentage coupon has no amount and no currency.", {"field": "amount_off"})
        coupon.percent_off = percent
    elif kind == CouponKind.FIXED:
        currency = (currency or "").strip().upper()
        if not is_known_currency(currency):
            raise ApplicationError("A fixed coupon needs its currency (an ISO 4217 code such as USD).",
                                   {"field": "currency"})
        if amount_off in (None, ""):
            raise ApplicationError("A fixed coupon needs its amount.", {"field": "amount_off"})
        amount = _decimal(amount_off, "amount_off")
        if amount <= 0 or amount != quantize_amount(amount, currency) or amount >= Decimal(10) ** 14:
            raise ApplicationError(f"The amount is above 0, in {currency}'s minor units.", {"field": "amount_off"})
        if percent_off not in (None, ""):
            raise ApplicationError("A fixed coupon has no percentage.", {"field": "percent_off"})
        coupon.amount_off, coupon.currency = amount, currency
    else:
        raise ApplicationError(f"A coupon is a percentage or a fixed amount, not {kind!r}.", {"field": "kind"})
    if duration not in CouponDuration.values:
        raise ApplicationError(f"Unknown duration {duration!r}.", {"field": "duration"})
    if duration == CouponDuration.REPEATING and not duration_periods:
        raise ApplicationError("An N periods coupon says how many periods (1 or more).", {"field": "duration_periods"})
    if duration != CouponDuration.REPEATING and duration_periods:
        raise ApplicationError("Only an N periods coupon takes a number of periods.", {"field": "duration_periods"})
    if max_redemptions is not None and max_redemptions < 1:
        raise ApplicationError("The redemption limit is 1 or more (or empty).", {"field": "max_redemptions"})
    coupon.full_clean(exclude=["times_redeemed"], validate_constraints=False)
    try:
        with transaction.atomic():
            coupon.save()
    except IntegrityError:
        raise ApplicationError(f"A coupon with code {code!r} exists already.", {"field": "code"}) from None
    return coupon


def coupon_check_redeemable(*, coupon: Coupon, currency: str, at: datetime | None = None) -> None:
    """Refuse (ApplicationError) a coupon that cannot be redeemed now for a plan in `currency`."""
    at = at or timezone.now()
    if not coupon.active:
        raise ApplicationError(f"Coupon {coupon.code} is no longer offered.", {"field": "coupon"})
    if coupon.redeem_by is not None and at > coupon.redeem_by:
        raise ApplicationError(f"Coupon {coupon.code} expired on {coupon.redeem_by:%Y-%m-%d}.", {"field": "coupon"})
    if coupon.max_redemptions is not None and coupon.times_redeemed >= coupon.max_redemptions:
        raise ApplicationError(f"Coupon {coupon.code} has been used up.", {"field": "coupon"})
    if coupon.kind == CouponKind.FIXED and coupon.currency != currency:
        raise ApplicationError(f"Coupon {coupon.code} is in {coupon.currency}; the plan bills in {currency}.",
                               {"field": "coupon"})


def coupon_for_code(*, code: str, currency: str) -> Coupon:
    """The coupon a customer's code names, if it can be redeemed now for a plan in `currency`."""
    coupon = Coupon.objects.filter(code=(code or "").strip().upper()).first()
    if coupon is None:
        raise ApplicationError("No coupon has this code.", {"field": "coupon"})
    coupon_check_redeemable(coupon=coupon, currency=currency)
    return coupon


def coupon_apply(*, subscription: Subscription, coupon: Coupon, via: str = CouponVia.STAFF, by=None,
                 at: datetime | None = None) -> SubscriptionCoupon:
    """Apply a coupon to a subscription: it discounts the periods that end after now, in the order applied."""
    at = at or timezone.now()
    with transaction.atomic():
        locked = Coupon.objects.select_for_update().get(pk=coupon.pk)
        existing = SubscriptionCoupon.objects.filter(subscription=subscription, coupon=locked).first()
        if existing is not None:
            return existing  # applied already: applying again changes nothing
        if subscription.status != "active":
            raise ApplicationError("Coupons apply to an active subscription.", {"field": "subscription"})
        coupon_check_redeemable(coupon=locked, currency=subscription.plan_version.currency, at=at)
        redemption = SubscriptionCoupon.objects.create(subscription=subscription, coupon=locked, applied_at=at,
                                                       via=via, applied_by=by)
        locked.times_redeemed += 1
        locked.save(update_fields=["times_redeemed"])
    coupon.times_redeemed = locked.times_redeemed
    return redemption


def tax_rate_save(*, tax_rate: TaxRate) -> TaxRate:
    """Save a tax rate; making it the default takes the mark from the previous default in the same transaction."""
    if tax_rate.percentage is None or not Decimal(0) <= tax_rate.percentage <= 100:
        raise ApplicationError("A tax rate is between 0 and 100 %.", {"field": "percentage"})
    tax_rate.country = (tax_rate.country or "").strip().upper()
    if tax_rate.country and (len(tax_rate.country) != 2 or not tax_rate.country.isalpha()):
        raise ApplicationError("The country is a two-letter ISO 3166-1 code (e.g. FR).", {"field": "country"})
    with transaction.atomic():
        if tax_rate.is_default:
            TaxRate.objects.select_for_update().filter(is_default=True).exclude(pk=tax_rate.pk).update(is_default=False)
        tax_rate.save()
    return tax_rate
