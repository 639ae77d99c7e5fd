"""Properties of the pricing engine, checked with hypothesis over generated plans and quantities."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from metering.pricing import (
    parse_plan,
    plan_to_document,
    price_charge,
    price_plan,
    quantum,
    tier_breakdown,
)

amounts = st.decimals(min_value=0, max_value=1000, places=4, allow_nan=False, allow_infinity=False)
quantities = st.decimals(min_value=0, max_value=10**7, places=3, allow_nan=False, allow_infinity=False)
currencies = st.sampled_from(["USD", "EUR", "JPY", "KWD"])


@st.composite
def tier_lists(draw, max_tiers=6):
    bounds = sorted(draw(st.sets(st.decimals(min_value=Decimal("0.5"), max_value=10**6, places=2,
                                             allow_nan=False, allow_infinity=False),
                                 max_size=max_tiers - 1)))
    tiers = []
    for up_to in [*bounds, None]:
        tier = {"up_to": None if up_to is None else str(up_to), "unit_amount": str(draw(amounts))}
        if draw(st.booleans()):
            tier["flat_amount"] = str(draw(amounts))
        tiers.append(tier)
    return tiers


def charge_of(model, tiers, currency="USD"):
    return parse_plan({"code": "p", "currency": currency, "interval": "month",
                       "charges": [{"metric": "m", "model": model, "tiers": tiers}]}).charges[0]


@given(tiers=tier_lists(), a=quantities, b=quantities, currency=currencies)
def test_graduated_never_decreases_as_quantity_grows(tiers, a, b, currency):
    spec = charge_of("graduated", tiers, currency)
    low, high = sorted((a, b))
    assert price_charge(spec, low, currency) <= price_charge(spec, high, currency)


@given(unit=amounts, flat=amounts, q=quantities, currency=currencies)
def test_single_tier_graduated_equals_volume(unit, flat, q, currency):
    tiers = [{"up_to": None, "unit_amount": str(unit), "flat_amount": str(flat)}]
    assert price_charge(charge_of("graduated", tiers, currency), q, currency) == price_charge(
        charge_of("volume", tiers, currency), q, currency)


@given(tiers=tier_lists(), q=quantities)
def test_graduated_is_the_sum_of_its_tiers(tiers, q):
    """A reference computation straight from the words of docs/plans.md, tier by tier."""
    expected = Decimal(0)
    lower = Decimal(0)
    for index, tier in enumerate(tiers):
        up_to = None if tier["up_to"] is None else Decimal(tier["up_to"])
        top = q if up_to is None else min(q, up_to)
        units = max(top - lower, Decimal(0))
        if units > 0 or (index == 0):
            expected += units * Decimal(tier["unit_amount"]) + Decimal(tier.get("flat_amount", "0"))
        if up_to is None or q <= up_to:
            break
        lower = up_to
    assert price_charge(charge_of("graduated", tiers), q, "USD") == expected.quantize(Decimal("0.01"), "ROUND_HALF_UP")


@given(tiers=tier_lists(), q=quantities, currency=currencies)
def test_graduated_breakdown_adds_up_to_the_line_and_follows_the_tiers(tiers, q, currency):
    """The invoice's tier rows: consecutive ranges from 0, units adding up to q, amounts adding up to the
    line's amount exactly, each within one minor unit of its tier's exact amount (computed from docs/plans.md's
    words here, not by the engine)."""
    spec = charge_of("graduated", tiers, currency)
    rows = tier_breakdown(spec, q, currency)
    assert sum(row.amount for row in rows) == price_charge(spec, q, currency)
    assert sum(row.units for row in rows) == q
    assert rows[0].lower == 0 and all(a.up_to == b.lower for a, b in zip(rows, rows[1:], strict=False))
    assert rows[-1].up_to is None or q <= rows[-1].up_to
    for row, tier in zip(rows, tiers, strict=False):
        exact = row.units * Decimal(tier["unit_amount"]) + Decimal(tier.get("flat_amount", "0"))
        assert abs(row.amount - exact) < quantum(currency)
        assert row.amount == row.amount.quantize(quantum(currency))


@given(tiers=tier_lists(), q=quantities, currency=currencies)
def test_volume_breakdown_is_the_one_tier_that_prices_all_of_q(tiers, q, currency):
    spec = charge_of("volume", tiers, currency)
    (row,) = tier_breakdown(spec, q, currency)
    assert row.units == q and row.amount == price_charge(spec, q, currency)
    assert row.up_to is None or q <= row.up_to
    assert row.lower < q or row.lower == q == 0


@given(tiers=tier_lists())
def test_plan_documents_round_trip(tiers):
    plan = parse_plan({"code": "p", "currency": "USD", "interval": "month", "base_fee": "10",
                       "charges": [{"metric": "g", "model": "graduated", "tiers": tiers},
                                   {"metric": "v", "model": "volume", "tiers": tiers}]})
    assert parse_plan(plan_to_document(plan)) == plan


@settings(max_examples=50)
@given(base=amounts, commitment=amounts, q=quantities, offset=st.integers(min_value=0, max_value=30 * 86400 - 1))
def test_total_is_the_sum_of_rounded_lines_and_meets_the_commitment(base, commitment, q, offset):
    plan = parse_plan({"code": "p", "currency": "USD", "interval": "month", "base_fee": str(base),
                       "minimum_commitment": str(commitment),
                       "charges": [{"metric": "m", "model": "per_unit", "unit_amount": "0.013"}]})
    start = datetime(2026, 11, 1, tzinfo=UTC)
    end = datetime(2026, 12, 1, tzinfo=UTC)
    priced = price_plan(plan, {"m": q}, period_start=start, period_end=end, active_start=start + timedelta(seconds=offset))
    assert priced.total == sum(line.amount for line in priced.lines)
    assert all(line.amount == line.amount.quantize(Decimal("0.01")) for line in priced.lines)
    prorated = (commitment * (30 * 86400 - offset) / (30 * 86400)).quantize(Decimal("0.01"), "ROUND_HALF_UP")
    assert priced.total >= prorated
    assert priced.total == max(prorated, sum(line.amount for line in priced.lines if line.type != "minimum_commitment"))
