"""The pricing rules other layers ask the engine for instead of writing them again: the tier a quantity falls
in, the trial's end, the unit price a line shows."""

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from metering.pricing import (
    ChargeSpec,
    Segment,
    Tier,
    parse_plan,
    price_period,
    tier_breakdown,
    tier_index,
    trial_end_for,
    trial_ends_at,
    unit_amount_shown,
)
from metering.tests.plans_md import PRO

D = Decimal
GRADUATED = ChargeSpec(metric="m", model="graduated", tiers=(
    Tier(up_to=D(100), unit_amount=D("1")), Tier(up_to=D(1000), unit_amount=D("0.5")),
    Tier(up_to=None, unit_amount=D("0.1"))))


@pytest.mark.parametrize(("quantity", "index"), [
    (D(0), 0),
    (D(100), 0),  # tiers are (previous up_to, up_to]: 100 is still in the first
    (D("100.000001"), 1),
    (D(1000), 1),
    (D(5000), 2),
])
def test_tier_index_for_graduated_and_volume(quantity, index):
    volume = ChargeSpec(metric="m", model="volume", tiers=GRADUATED.tiers)
    assert tier_index(GRADUATED, quantity) == index
    assert tier_index(volume, quantity) == index
    assert [row[1] for row in GRADUATED.tier_table] == [D(0), D(100), D(1000)]  # each tier's lower bound


def test_tier_index_is_the_tier_the_engine_prices_in():
    """The last tier of a graduated line's breakdown, the one tier of a volume line: the one tier_index names."""
    volume = ChargeSpec(metric="m", model="volume", tiers=GRADUATED.tiers)
    for quantity in (D(0), D(1), D(100), D("100.5"), D(999), D(1000), D(1001), D(10**9)):
        last = tier_breakdown(GRADUATED, quantity, "USD")[-1]
        assert GRADUATED.tier_table[tier_index(GRADUATED, quantity)][1] == last.lower
        assert volume.tier_table[tier_index(volume, quantity)][1] == tier_breakdown(volume, quantity, "USD")[0].lower


def test_tier_index_of_a_charge_without_tiers_is_an_error():
    with pytest.raises(ValueError, match="has no tiers"):
        tier_index(ChargeSpec(metric="m", model="per_unit", unit_amount=D("0.01")), D(5))


def test_trial_ends_at():
    start = datetime(2026, 11, 3, 8, tzinfo=UTC)
    assert trial_ends_at(start, 14) == datetime(2026, 11, 17, 8, tzinfo=UTC)
    assert trial_ends_at(start, 0) is None
    # Another offset, the same instant, told in UTC.
    paris = start.astimezone(timezone(timedelta(hours=1)))
    assert trial_ends_at(paris, 14) == datetime(2026, 11, 17, 8, tzinfo=UTC)
    assert trial_ends_at(paris, 14).utcoffset() == timedelta(0)
    with pytest.raises(ValueError):
        trial_ends_at(datetime(2026, 11, 3, 8), 14)  # naive: no instant
    assert trial_end_for(parse_plan(PRO), start) == trial_ends_at(start, parse_plan(PRO).trial_days)


def test_unit_amount_shown_is_what_a_priced_line_carries():
    plan = parse_plan({"code": "p", "currency": "USD", "interval": "month", "charges": [
        {"metric": "a", "model": "per_unit", "unit_amount": "0.002"},
        {"metric": "b", "model": "package", "package_size": "1000", "package_amount": "5"},
        {"metric": "c", "model": "graduated", "tiers": [{"up_to": None, "unit_amount": "0.1"}]},
    ]})
    assert [unit_amount_shown(c) for c in plan.charges] == [D("0.002"), None, None]
    start, end = datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)
    priced = price_period([Segment(plan, start, end, {"a": D(10), "b": D(10), "c": D(10)})],
                          period_start=start, period_end=end)
    assert [line.unit_amount for line in priced.lines if line.type == "usage"] == [D("0.002"), None, None]
