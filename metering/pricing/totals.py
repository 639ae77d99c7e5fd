"""The order of an invoice after its lines: subtotal, discounts, tax, total, credits, amount due (docs/plans.md,
"After the lines: discounts, tax, credits").

One pure function, ``invoice_totals``, used by the billing run, the projected bill and the price preview, so
that the three can never disagree. Each step is rounded half-up to the currency's minor unit as it is computed:

1. discounts, in the order given (the order the coupons were applied), from ``remaining = subtotal``: a
   percentage takes ``round(remaining × percent / 100)``, a fixed amount ``min(amount, remaining)``;
2. tax on ``taxable = subtotal − discount``: exclusive ``tax = round(taxable × r / 100)``, ``total = taxable +
   tax``; inclusive ``total = taxable``, ``tax = taxable − round(taxable × 100 / (100 + r))``;
3. credits, drawn from the sources in the order given (the caller sorts them: soonest expiry first, never
   expiring last, then oldest), never more than the total: ``amount_due = total − credits_applied``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, localcontext

from .currency import ARITHMETIC_CONTEXT, quantum

ZERO = Decimal(0)
HUNDRED = Decimal(100)

PERCENT = "percent"
FIXED = "fixed"


@dataclass(frozen=True, slots=True)
class CouponTerms:
    """One coupon as a period's invoice sees it: a percentage (0 < value ≤ 100) or a fixed amount."""

    kind: str  # PERCENT | FIXED
    value: Decimal
    label: str = ""
    key: object = None  # the caller's reference (a redemption's id), handed back on its Discount


@dataclass(frozen=True, slots=True)
class TaxTerms:
    name: str
    percentage: Decimal
    inclusive: bool = False


@dataclass(frozen=True, slots=True)
class CreditSource:
    """A prepaid balance the invoice may draw from (a grant's remaining amount)."""

    available: Decimal
    key: object = None


@dataclass(frozen=True, slots=True)
class Discount:
    amount: Decimal
    label: str = ""
    key: object = None


@dataclass(frozen=True, slots=True)
class CreditDraw:
    amount: Decimal
    key: object = None


@dataclass(frozen=True, slots=True)
class InvoiceTotals:
    currency: str
    subtotal: Decimal
    discounts: tuple[Discount, ...]
    discount: Decimal
    taxable: Decimal
    tax: Decimal
    tax_terms: TaxTerms | None
    total: Decimal
    draws: tuple[CreditDraw, ...]
    credits_applied: Decimal
    amount_due: Decimal

    @property
    def shows_tax(self) -> bool:
        """A tax line is shown for a rate above 0 % (never at 0 %)."""
        return self.tax_terms is not None and self.tax_terms.percentage > 0


def _round(value: Decimal, step: Decimal) -> Decimal:
    return value.quantize(step, rounding=ROUND_HALF_UP)


def draw_credits(total: Decimal, currency: str, credits: Sequence[CreditSource]) -> tuple[tuple[CreditDraw, ...], Decimal, Decimal]:
    """Step 3 alone, for an invoice whose total is known: (draws, credits applied, amount due)."""
    with localcontext(ARITHMETIC_CONTEXT):
        return _draw(Decimal(total), quantum(currency), credits)


def _draw(total: Decimal, step: Decimal, credits: Sequence[CreditSource]) -> tuple[tuple[CreditDraw, ...], Decimal, Decimal]:
    left = total
    draws = []
    for source in credits:
        if left <= 0:
            break
        amount = min(_round(source.available, step), left)
        if amount <= 0:
            continue
        left -= amount
        draws.append(CreditDraw(amount=amount, key=source.key))
    return tuple(draws), total - left, left


def invoice_totals(
    subtotal: Decimal, currency: str, *, coupons: Sequence[CouponTerms] = (), tax: TaxTerms | None = None,
    credits: Sequence[CreditSource] = (),
) -> InvoiceTotals:
    """The figures of an invoice from its subtotal (the sum of its rounded lines), in the documented order."""
    step = quantum(currency)
    with localcontext(ARITHMETIC_CONTEXT):
        subtotal = _round(Decimal(subtotal), step)
        if subtotal < 0:
            raise ValueError(f"a subtotal is 0 or more, got {subtotal}")
        remaining = subtotal
        discounts = []
        for coupon in coupons:
            if coupon.kind == PERCENT:
                if not ZERO < coupon.value <= HUNDRED:
                    raise ValueError(f"a percentage coupon is above 0 and at most 100, got {coupon.value}")
                amount = _round(remaining * coupon.value / HUNDRED, step)
            elif coupon.kind == FIXED:
                if coupon.value <= 0:
                    raise ValueError(f"a fixed coupon is above 0, got {coupon.value}")
                amount = min(_round(coupon.value, step), remaining)
            else:
                raise ValueError(f"unknown coupon kind {coupon.kind!r}")
            remaining -= amount
            discounts.append(Discount(amount=amount, label=coupon.label, key=coupon.key))
        discount = subtotal - remaining
        taxable = remaining
        tax_amount = _round(ZERO, step)
        total = taxable
        if tax is not None and tax.percentage != 0:
            if tax.percentage < 0:
                raise ValueError(f"a tax rate is 0 % or more, got {tax.percentage}")
            if tax.inclusive:
                tax_amount = taxable - _round(taxable * HUNDRED / (HUNDRED + tax.percentage), step)
            else:
                tax_amount = _round(taxable * tax.percentage / HUNDRED, step)
                total = taxable + tax_amount
        draws, credits_applied, left = _draw(total, step, credits)
    return InvoiceTotals(
        currency=currency, subtotal=subtotal, discounts=tuple(discounts), discount=discount, taxable=taxable,
        tax=tax_amount, tax_terms=tax, total=total, draws=draws, credits_applied=credits_applied,
        amount_due=left,
    )
