"""The order after the lines (metering.pricing.totals) against a small independent reference: integers of minor
units and exact fractions instead of Decimal quantize, written from docs/plans.md alone. Hypothesis draws the
subtotal, the coupons, the tax rate and the credit balances in currencies of 0, 2 and 3 minor digits."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from metering.pricing import CouponTerms, CreditSource, TaxTerms, invoice_totals, minor_units

currencies = st.sampled_from(["USD", "EUR", "JPY", "KWD"])


def half_up(value: Fraction) -> int:
    """Round a non-negative fraction to the nearest integer, halves up."""
    floor = value.numerator // value.denominator
    return floor + 1 if value - floor >= Fraction(1, 2) else floor


def reference(subtotal: int, coupons, tax, credits):
    """docs/plans.md's steps on integers of minor units: (discounts, tax, total, draws, amount due)."""
    remaining, discounts = subtotal, []
    for kind, value in coupons:  # value: a Fraction percentage, or an int of minor units
        taken = half_up(remaining * value / 100) if kind == "percent" else min(value, remaining)
        discounts.append(taken)
        remaining -= taken
    taxable, tax_amount, total = remaining, 0, remaining
    if tax is not None and tax[0] != 0:
        rate, inclusive = tax
        if inclusive:
            tax_amount = taxable - half_up(Fraction(taxable) * 100 / (100 + rate))
        else:
            tax_amount = half_up(taxable * rate / 100)
            total = taxable + tax_amount
    left, draws = total, []
    for available in credits:
        if left == 0:
            break
        taken = min(available, left)
        if taken:
            draws.append(taken)
            left -= taken
    return discounts, tax_amount, total, draws, left


@st.composite
def cases(draw):
    currency = draw(currencies)
    digits = minor_units(currency)
    subtotal = draw(st.integers(min_value=0, max_value=10**9))
    coupons = draw(st.lists(st.one_of(
        st.tuples(st.just("percent"), st.integers(min_value=1, max_value=1_000_000).map(lambda n: Fraction(n, 10_000))),
        st.tuples(st.just("fixed"), st.integers(min_value=1, max_value=10**8)),
    ), max_size=4))
    tax = draw(st.none() | st.tuples(st.integers(min_value=0, max_value=1_000_000).map(lambda n: Fraction(n, 10_000)),
                                     st.booleans()))
    credits = draw(st.lists(st.integers(min_value=0, max_value=10**8), max_size=4))
    return currency, digits, subtotal, coupons, tax, credits


def money(minor: int, digits: int) -> Decimal:
    return Decimal(minor).scaleb(-digits)


def decimal_of(fraction: Fraction) -> Decimal:
    return Decimal(fraction.numerator) / Decimal(fraction.denominator)  # exact: denominators are powers of 10


@settings(max_examples=400, deadline=None)
@given(cases())
def test_the_order_matches_the_reference(case):
    currency, digits, subtotal, coupons, tax, credits = case
    got = invoice_totals(
        money(subtotal, digits), currency,
        coupons=[CouponTerms(kind, decimal_of(v) if kind == "percent" else money(v, digits)) for kind, v in coupons],
        tax=None if tax is None else TaxTerms("tax", decimal_of(tax[0]), tax[1]),
        credits=[CreditSource(money(c, digits)) for c in credits],
    )
    discounts, tax_amount, total, draws, due = reference(subtotal, coupons, tax, credits)
    assert [d.amount for d in got.discounts] == [money(d, digits) for d in discounts]
    assert got.discount == money(sum(discounts), digits)
    assert (got.tax, got.total, got.amount_due) == (money(tax_amount, digits), money(total, digits), money(due, digits))
    assert [d.amount for d in got.draws] == [money(d, digits) for d in draws]
    # The invariants the invoice's check constraints hold.
    assert 0 <= got.discount <= got.subtotal and got.tax >= 0
    exclusive_tax = 0 if (tax is None or tax[1]) else got.tax
    assert got.total == got.subtotal - got.discount + exclusive_tax
    assert 0 <= got.credits_applied <= got.total and got.credits_applied + got.amount_due == got.total
    assert got.credits_applied <= sum((money(c, digits) for c in credits), Decimal(0))
    if tax is not None and tax[1]:
        assert got.tax <= got.total
    assert got.shows_tax == (tax is not None and tax[0] > 0)
    for amount in (got.discount, got.tax, got.total, got.credits_applied, got.amount_due):
        assert amount == amount.quantize(Decimal(1).scaleb(-digits))


@settings(max_examples=200, deadline=None)
@given(cases())
def test_a_percentage_coupon_of_100_leaves_nothing_to_tax_or_draw(case):
    currency, digits, subtotal, _coupons, tax, credits = case
    got = invoice_totals(money(subtotal, digits), currency, coupons=[CouponTerms("percent", Decimal(100))],
                         tax=None if tax is None else TaxTerms("tax", decimal_of(tax[0]), tax[1]),
                         credits=[CreditSource(money(c, digits)) for c in credits])
    assert got.discount == got.subtotal and got.total == got.tax == got.credits_applied == got.amount_due == 0
