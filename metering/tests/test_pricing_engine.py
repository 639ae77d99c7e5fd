"""The pricing engine against docs/plans.md: each charge model at its boundaries, and whole periods."""

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from metering.pricing import (
    ChargeSpec,
    Segment,
    Tier,
    anniversary_period,
    calendar_period,
    parse_plan,
    period_bounds,
    preview_document,
    price_added_usage,
    price_charge,
    price_period,
    price_plan,
    tier_breakdown,
    trial_end_for,
)
from metering.tests.plans_md import PLANS_MD_OUTPUT, PRO

D = Decimal
NOV_1 = datetime(2026, 11, 1, tzinfo=UTC)
DEC_1 = datetime(2026, 12, 1, tzinfo=UTC)



def charge(model, currency="USD", **fields):
    """A charge parsed from its document, as the import would."""
    plan = parse_plan({"code": "p", "currency": currency, "interval": "month",
                       "charges": [{"metric": "m", "model": model, **fields}]})
    return plan.charges[0]


def price(charge_spec, quantity, currency="USD"):
    return price_charge(charge_spec, D(quantity), currency)


# --- per_unit -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("quantity", "expected"),
    [("0", "0.00"), ("1", "0.09"), ("2.5", "0.23"), ("0.05", "0.00"), ("0.0556", "0.01"), ("1000000", "90000.00")],
)
def test_per_unit(quantity, expected):
    assert price(charge("per_unit", unit_amount="0.09"), quantity) == D(expected)


@pytest.mark.parametrize(
    ("quantity", "up", "down"),
    [("0", "0.00", "0.00"), ("1", "2.00", "0.00"), ("999.5", "2.00", "0.00"), ("1000", "2.00", "2.00"),
     ("1001", "4.00", "2.00"), ("1999.9", "4.00", "2.00"), ("2000", "4.00", "4.00")],
)
def test_per_unit_divide_by_rounds_up_or_down(quantity, up, down):
    rounded_up = charge("per_unit", unit_amount="2.00", transform={"divide_by": 1000, "round": "up"})
    rounded_down = charge("per_unit", unit_amount="2.00", transform={"divide_by": 1000, "round": "down"})
    assert price(rounded_up, quantity) == D(up)
    assert price(rounded_down, quantity) == D(down)


def test_per_unit_divide_by_a_fraction():
    spec = charge("per_unit", unit_amount="1.00", transform={"divide_by": "0.5", "round": "up"})
    assert price(spec, "1.2") == D("3.00")  # ceil(2.4) = 3


# --- package ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("quantity", "expected"),
    [("0", "0.00"), ("10", "0.00"), ("10.5", "2.00"), ("11", "2.00"), ("60", "2.00"), ("61", "4.00"),
     ("110", "4.00"), ("111", "6.00")],
)
def test_package_with_free_units(quantity, expected):
    spec = charge("package", package_size=50, package_amount="2.00", free_units=10)
    assert price(spec, quantity) == D(expected)


def test_package_without_free_units():
    spec = charge("package", package_size=1000, package_amount="5.00")
    assert [price(spec, q) for q in ("0", "1", "1000", "1001")] == [D("0.00"), D("5.00"), D("5.00"), D("10.00")]


# --- graduated and volume -----------------------------------------------------------------------------

THREE_TIERS = [
    {"up_to": 10, "unit_amount": "1.00", "flat_amount": "2.00"},
    {"up_to": 20, "unit_amount": "0.50", "flat_amount": "3.00"},
    {"up_to": None, "unit_amount": "0.25", "flat_amount": "4.00"},
]


@pytest.mark.parametrize(
    ("quantity", "expected"),
    [
        ("0", "2.00"),  # the first tier's flat amount at zero
        ("0.5", "2.50"),
        ("10", "12.00"),  # exactly the first up_to: nothing of tier 2
        ("11", "15.50"),  # one past: tier 2's first unit and its flat amount
        ("15.5", "17.75"),  # fractional, inside tier 2
        ("20", "20.00"),
        ("21", "24.25"),
        ("1000", "269.00"),
    ],
)
def test_graduated_boundaries(quantity, expected):
    assert price(charge("graduated", tiers=THREE_TIERS), quantity) == D(expected)


@pytest.mark.parametrize(
    ("quantity", "expected"),
    [
        ("0", "2.00"),  # q = 0 is in the first tier
        ("0.5", "2.50"),
        ("10", "12.00"),
        ("11", "8.50"),  # all 11 units at tier 2's price, plus its flat amount
        ("15.5", "10.75"),
        ("20", "13.00"),
        ("21", "9.25"),
        ("1000", "254.00"),
    ],
)
def test_volume_boundaries(quantity, expected):
    assert price(charge("volume", tiers=THREE_TIERS), quantity) == D(expected)


def test_added_usage_is_priced_at_the_margin_and_never_below_zero():
    graduated = charge("graduated", tiers=THREE_TIERS)
    volume = charge("volume", tiers=THREE_TIERS)
    # 10 -> 11 units: tier 2's first unit and its flat amount (15.50 - 12.00), not 1 unit priced alone.
    assert price_added_usage(graduated, billed=D(10), quantity=D(11), currency="USD") == D("3.50")
    assert price_added_usage(volume, billed=D(5), quantity=D(10), currency="USD") == D("5.00")
    # Volume: 11 units cost less than 10 (8.50 < 12.00); a sent invoice is not credited.
    added = price_added_usage(volume, billed=D(10), quantity=D(11), currency="USD")
    assert added == D(0) and str(added) == "0.00"


PLANS_TIERS = [{"up_to": 100, "unit_amount": "1.00", "flat_amount": "5.00"}, {"up_to": None, "unit_amount": "0.50"}]


def test_plans_md_examples():
    """Small examples of each charge model (docs/plans.md, "Charges")."""
    graduated = charge("graduated", tiers=PLANS_TIERS)
    volume = charge("volume", tiers=PLANS_TIERS)
    assert price(graduated, 0) == D("5.00")
    assert price(volume, 0) == D("5.00")
    assert price(graduated, 150) == D("130.00")
    assert price(volume, 150) == D("75.00")
    package = charge("package", package_size=50, package_amount="2.00", free_units=10)
    assert price(package, 61) == D("4.00")


def _rows(charge_spec, quantity, currency="USD"):
    return [(row.lower, row.up_to, row.units, row.unit_amount, row.flat_amount, row.amount)
            for row in tier_breakdown(charge_spec, D(quantity), currency)]


def test_tier_breakdown_of_the_plans_md_examples():
    graduated = charge("graduated", tiers=PLANS_TIERS)
    volume = charge("volume", tiers=PLANS_TIERS)
    assert _rows(graduated, 150) == [(0, 100, 100, D("1.00"), D("5.00"), D("105.00")),
                                     (100, None, 50, D("0.50"), 0, D("25.00"))]
    assert _rows(volume, 150) == [(100, None, 150, D("0.50"), 0, D("75.00"))]
    # At 0 the first tier's flat amount is charged, in both models.
    assert _rows(graduated, 0) == [(0, 100, 0, D("1.00"), D("5.00"), D("5.00"))]
    assert _rows(volume, 0) == [(0, 100, 0, D("1.00"), D("5.00"), D("5.00"))]
    assert _rows(graduated, 100) == [(0, 100, 100, D("1.00"), D("5.00"), D("105.00"))]  # a boundary is in the lower tier
    assert tier_breakdown(charge("per_unit", unit_amount="1"), D(3), "USD") == ()


def test_tier_breakdown_adds_up_to_the_rounded_line_not_to_rounded_tiers():
    # Each tier is 0.015 exactly: rounded alone, two tiers would show 0.02 + 0.02 for a 0.03 line.
    tiers = charge("graduated", tiers=[{"up_to": 3, "unit_amount": "0.005"}, {"up_to": None, "unit_amount": "0.005"}])
    assert price(tiers, 6) == D("0.03")
    assert [row.amount for row in tier_breakdown(tiers, D(6), "USD")] == [D("0.02"), D("0.01")]
    pro = parse_plan(PRO).charges[0]
    assert [row.amount for row in tier_breakdown(pro, D(12000), "USD")] == [D("0.00"), D("1.00")]
    assert [row.amount for row in tier_breakdown(pro, D(1000001), "USD")] == [D("0.00"), D("495.00"), D("25.00")]


def test_usage_lines_carry_their_charge_unless_the_trial_priced_them_at_zero():
    plan = parse_plan(PRO)
    priced = price_plan(plan, {"api_calls": D(12000)}, period_start=NOV_1, period_end=DEC_1)
    api = next(line for line in priced.lines if line.metric == "api_calls")
    assert api.charge == plan.charges[0]
    assert sum(row.amount for row in tier_breakdown(api.charge, api.quantity, "USD")) == api.amount
    in_trial = price_plan(plan, {"api_calls": D(12000)}, period_start=NOV_1, period_end=DEC_1,
                          trial_end=datetime(2026, 12, 5, tzinfo=UTC))
    assert all(line.charge is None for line in in_trial.lines)


def test_pro_plan_api_calls_at_12000():
    pro = parse_plan(PRO)
    assert price_charge(pro.charges[0], D(12000), "USD") == D("1.00")
    assert price_charge(pro.charges[0], D(10000), "USD") == D("0.00")
    assert price_charge(pro.charges[0], D(1000000), "USD") == D("495.00")
    assert price_charge(pro.charges[0], D(1000001), "USD") == D("520.00")  # 495 + 0.0002 + 25 flat


def test_charge_built_without_a_document():
    spec = ChargeSpec(metric="m", model="graduated", tiers=(Tier(D(10), D(1)), Tier(None, D("0.5"), D(2))))
    assert price_charge(spec, D(12), "USD") == D("13.00")


def test_negative_quantity_is_refused():
    with pytest.raises(ValueError, match="negative"):
        price(charge("per_unit", unit_amount="1"), "-1")


# --- rounding in a zero-decimal currency --------------------------------------------------------------


def test_zero_decimal_currency_rounds_to_whole_yen():
    per_unit = charge("per_unit", currency="JPY", unit_amount="0.5")
    assert price(per_unit, 1, "JPY") == D("1")  # 0.5 rounds half-up
    assert price(per_unit, 3, "JPY") == D("2")  # 1.5
    assert price(per_unit, "0.9", "JPY") == D("0")  # 0.45
    graduated = charge("graduated", currency="JPY", tiers=[
        {"up_to": 1000, "unit_amount": "0", "flat_amount": "100"}, {"up_to": None, "unit_amount": "0.35"}])
    assert price(graduated, 1001, "JPY") == D("100")  # 100.35
    assert price(graduated, 1002, "JPY") == D("101")  # 100.70
    assert str(price(graduated, 1002, "JPY")) == "101"


def test_zero_decimal_period_total_is_the_sum_of_rounded_lines():
    plan = parse_plan({"code": "tokyo", "name": "Tokyo", "currency": "JPY", "interval": "month",
                       "base_fee": "1000", "charges": [
                           {"metric": "a", "model": "per_unit", "unit_amount": "0.5"},
                           {"metric": "b", "model": "per_unit", "unit_amount": "0.5"}]})
    priced = price_plan(plan, {"a": D(1), "b": D(1)}, period_start=NOV_1, period_end=DEC_1,
                        active_start=datetime(2026, 11, 16, tzinfo=UTC))
    amounts = [line.amount for line in priced.lines]
    assert amounts == [D(500), D(1), D(1)]  # each 0.5 rounds up on its own line
    assert priced.total == D(502)
    assert preview_document(priced)["total"] == "502"


# --- a period: base fee, proration, commitment --------------------------------------------------------


def test_plans_md_preview_example_exactly():
    priced = price_plan(parse_plan(PRO), {"api_calls": D(12000)}, period_start=NOV_1, period_end=DEC_1)
    assert preview_document(priced) == PLANS_MD_OUTPUT
    assert priced.total == D("100.00")
    assert priced.plan == "pro"


def test_lines_carry_what_the_invoice_shows():
    priced = price_plan(parse_plan(PRO), {"api_calls": D(12000), "data_out_mb": D("2.5")},
                        period_start=NOV_1, period_end=DEC_1)
    base, api, data, true_up = priced.lines
    assert (base.type, base.plan, base.period_start, base.period_end) == ("base_fee", "pro", NOV_1, DEC_1)
    assert (api.metric, api.model, api.quantity, api.unit_amount) == ("api_calls", "graduated", D(12000), None)
    assert (data.metric, data.model, data.quantity, data.unit_amount) == ("data_out_mb", "per_unit", D("2.5"), D("0.09"))
    assert data.amount == D("0.23")
    assert true_up.type == "minimum_commitment"
    assert true_up.amount == D("100.00") - D("49.00") - D("1.00") - D("0.23")
    assert priced.total == sum(line.amount for line in priced.lines)


def test_subscription_starting_mid_month_prorates_base_fee_and_commitment():
    start = datetime(2026, 11, 16, tzinfo=UTC)  # 15 of November's 30 days
    priced = price_plan(parse_plan(PRO), {"api_calls": D(12000)}, period_start=NOV_1, period_end=DEC_1,
                        active_start=start)
    base, api, data, true_up = priced.lines
    assert base.amount == D("24.50")
    assert (base.period_start, base.period_end) == (start, DEC_1)
    assert api.amount == D("1.00")  # usage is never prorated
    assert true_up.amount == D("24.50")  # commitment 50.00 - 24.50 - 1.00
    assert priced.total == D("50.00")


def test_proration_to_the_second():
    start = datetime(2026, 11, 10, 12, tzinfo=UTC)  # 20.5 days of 30
    priced = price_plan(parse_plan(PRO), {}, period_start=NOV_1, period_end=DEC_1, active_start=start)
    base, _api, _data, true_up = priced.lines
    assert base.amount == D("33.48")  # 49 × 20.5 / 30 = 33.4833…
    assert true_up.amount == D("68.33") - D("33.48")  # commitment 100 × 20.5 / 30 = 68.333…
    assert priced.total == D("68.33")


def test_subscription_ending_mid_month():
    end = datetime(2026, 11, 11, tzinfo=UTC)
    priced = price_plan(parse_plan(PRO), {}, period_start=NOV_1, period_end=DEC_1, active_end=end)
    assert priced.lines[0].amount == D("16.33")  # 49 / 3
    assert priced.total == D("33.33")


def test_no_true_up_when_usage_reaches_the_commitment():
    priced = price_plan(parse_plan(PRO), {"api_calls": D(1000000)}, period_start=NOV_1, period_end=DEC_1)
    assert [line.type for line in priced.lines] == ["base_fee", "usage", "usage"]
    assert priced.total == D("544.00")


def test_no_true_up_when_the_lines_equal_the_commitment_exactly():
    # 49 + (q - 10000) × 0.0005 = 100  =>  q = 112000
    priced = price_plan(parse_plan(PRO), {"api_calls": D(112000)}, period_start=NOV_1, period_end=DEC_1)
    assert [line.type for line in priced.lines] == ["base_fee", "usage", "usage"]
    assert priced.total == D("100.00")


def test_plan_without_base_fee_or_commitment_has_usage_lines_only():
    plan = parse_plan({"code": "payg", "currency": "EUR", "interval": "month",
                       "charges": [{"metric": "m", "model": "per_unit", "unit_amount": "1"}]})
    priced = price_plan(plan, {}, period_start=NOV_1, period_end=DEC_1)
    assert [(line.type, line.amount) for line in priced.lines] == [("usage", D("0.00"))]
    assert priced.total == D("0.00")


def test_zero_commitment_adds_no_line():
    plan = parse_plan({**PRO, "minimum_commitment": "0"})
    priced = price_plan(plan, {}, period_start=NOV_1, period_end=DEC_1)
    assert [line.type for line in priced.lines] == ["base_fee", "usage", "usage"]


# --- trials -------------------------------------------------------------------------------------------


def test_trial_ending_mid_period_bills_only_after_it():
    trial_end = datetime(2026, 11, 15, tzinfo=UTC)  # 16 days billable
    priced = price_plan(parse_plan(PRO), {"api_calls": D(12000)}, period_start=NOV_1, period_end=DEC_1,
                        trial_end=trial_end)
    base, api, _data, true_up = priced.lines
    assert base.amount == D("26.13")  # 49 × 16/30
    assert base.period_start == trial_end
    assert api.amount == D("1.00")  # quantities given already exclude trial-time usage
    assert true_up.amount == D("53.33") - D("26.13") - D("1.00")
    assert priced.total == D("53.33")


def test_period_inside_the_trial_bills_nothing():
    tiers = [{"up_to": 10, "unit_amount": "1", "flat_amount": "5"}, {"up_to": None, "unit_amount": "1"}]
    plan = parse_plan({**PRO, "charges": [{"metric": "m", "model": "graduated", "tiers": tiers}]})
    priced = price_plan(plan, {"m": D(0)}, period_start=NOV_1, period_end=DEC_1,
                        trial_end=datetime(2026, 12, 5, tzinfo=UTC))
    assert [(line.type, line.amount) for line in priced.lines] == [("base_fee", D("0.00")), ("usage", D("0.00"))]
    assert priced.total == D("0.00")


def test_trial_end_for():
    start = datetime(2026, 11, 3, 8, tzinfo=UTC)
    assert trial_end_for(parse_plan(PRO), start) == datetime(2026, 11, 17, 8, tzinfo=UTC)
    assert trial_end_for(parse_plan({**PRO, "trial_days": 0}), start) is None


# --- a plan change mid-period -------------------------------------------------------------------------

BASIC = {
    "code": "basic", "name": "Basic", "currency": "USD", "interval": "month",
    "base_fee": "10.00", "minimum_commitment": "20.00",
    "charges": [{"metric": "api_calls", "model": "per_unit", "unit_amount": "0.001"}],
}


def test_plan_change_prices_each_part_under_its_own_plan():
    change = datetime(2026, 11, 16, tzinfo=UTC)
    priced = price_period(
        [Segment(parse_plan(BASIC), NOV_1, change, {"api_calls": D(3000)}),
         Segment(parse_plan(PRO), change, DEC_1, {"api_calls": D(12000)})],
        period_start=NOV_1, period_end=DEC_1,
    )
    assert priced.plans == ("basic", "pro")
    assert priced.plan == "pro"
    summary = [(line.plan, line.type, line.metric, line.amount) for line in priced.lines]
    assert summary == [
        ("basic", "base_fee", None, D("5.00")),
        ("basic", "usage", "api_calls", D("3.00")),
        ("pro", "base_fee", None, D("24.50")),
        ("pro", "usage", "api_calls", D("1.00")),  # pro's tiers start again from 0 in its part
        ("pro", "usage", "data_out_mb", D("0.00")),
        # commitment: basic 20 × 15/30 + pro 100 × 15/30 = 60.00; lines so far 33.50
        ("pro", "minimum_commitment", None, D("26.50")),
    ]
    assert priced.total == D("60.00")
    assert priced.lines[1].period_end == change and priced.lines[3].period_start == change
    doc = preview_document(priced)
    assert doc["plans"] == ["basic", "pro"]
    assert [line["plan"] for line in doc["lines"]] == ["basic", "basic", "pro", "pro", "pro", "pro"]


def test_plan_change_with_a_trial_running_into_the_second_part():
    change = datetime(2026, 11, 11, tzinfo=UTC)
    priced = price_period(
        [Segment(parse_plan(BASIC), NOV_1, change, {}), Segment(parse_plan(PRO), change, DEC_1, {})],
        period_start=NOV_1, period_end=DEC_1, trial_end=datetime(2026, 11, 16, tzinfo=UTC),
    )
    amounts = {(line.plan, line.type): line.amount for line in priced.lines}
    assert amounts[("basic", "base_fee")] == D("0.00")
    assert amounts[("basic", "usage")] == D("0.00")
    assert amounts[("pro", "base_fee")] == D("24.50")
    assert priced.total == D("50.00")  # only pro's 15 billable days carry a commitment


def test_segments_must_not_overlap_or_change_currency():
    change = datetime(2026, 11, 16, tzinfo=UTC)
    with pytest.raises(ValueError, match="overlap"):
        price_period([Segment(parse_plan(PRO), NOV_1, DEC_1, {}), Segment(parse_plan(BASIC), change, DEC_1, {})],
                     period_start=NOV_1, period_end=DEC_1)
    euro = parse_plan({**BASIC, "currency": "EUR"})
    with pytest.raises(ValueError, match="currency"):
        price_period([Segment(parse_plan(PRO), NOV_1, change, {}), Segment(euro, change, DEC_1, {})],
                     period_start=NOV_1, period_end=DEC_1)
    with pytest.raises(ValueError, match="outside the period"):
        price_period([Segment(parse_plan(PRO), DEC_1, DEC_1 + timedelta(days=2), {})],
                     period_start=NOV_1, period_end=DEC_1)
    with pytest.raises(ValueError, match="timezone-aware"):
        price_period([Segment(parse_plan(PRO), datetime(2026, 11, 1), DEC_1, {})], period_start=NOV_1, period_end=DEC_1)


def test_segments_are_clipped_to_the_period():
    priced = price_period([Segment(parse_plan(PRO), NOV_1 - timedelta(days=40), DEC_1 + timedelta(days=3), {})],
                          period_start=NOV_1, period_end=DEC_1)
    assert priced.lines[0].amount == D("49.00")


# --- periods ------------------------------------------------------------------------------------------


def test_calendar_period():
    assert calendar_period(datetime(2026, 11, 17, 5, tzinfo=UTC)) == (NOV_1, DEC_1)
    assert calendar_period(datetime(2026, 12, 31, 23, 59, tzinfo=UTC)) == (DEC_1, datetime(2027, 1, 1, tzinfo=UTC))
    # 00:30 on Dec 1 at UTC+2 is still November in UTC
    assert calendar_period(datetime(2026, 12, 1, 0, 30, tzinfo=timezone(timedelta(hours=2)))) == (NOV_1, DEC_1)
    assert calendar_period(datetime(2026, 6, 1, tzinfo=UTC), "year") == (
        datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))
    with pytest.raises(ValueError):
        calendar_period(datetime(2026, 6, 1))


def test_anniversary_period_clips_the_day_without_drifting():
    anchor = datetime(2026, 1, 31, 10, tzinfo=UTC)
    feb_28 = datetime(2026, 2, 28, 10, tzinfo=UTC)
    mar_31 = datetime(2026, 3, 31, 10, tzinfo=UTC)
    assert anniversary_period(anchor, anchor) == (anchor, feb_28)
    assert anniversary_period(anchor, datetime(2026, 2, 15, tzinfo=UTC)) == (anchor, feb_28)
    assert anniversary_period(anchor, feb_28) == (feb_28, mar_31)
    assert anniversary_period(anchor, datetime(2026, 3, 31, 9, 59, tzinfo=UTC)) == (feb_28, mar_31)
    assert anniversary_period(anchor, datetime(2026, 1, 31, 9, tzinfo=UTC)) == (
        datetime(2025, 12, 31, 10, tzinfo=UTC), anchor)


def test_anniversary_period_yearly_from_a_leap_day():
    anchor = datetime(2024, 2, 29, tzinfo=UTC)
    assert anniversary_period(anchor, datetime(2025, 3, 1, tzinfo=UTC), "year") == (
        datetime(2025, 2, 28, tzinfo=UTC), datetime(2026, 2, 28, tzinfo=UTC))
    assert anniversary_period(anchor, datetime(2028, 2, 29, tzinfo=UTC), "year") == (
        datetime(2028, 2, 29, tzinfo=UTC), datetime(2029, 2, 28, tzinfo=UTC))
    assert period_bounds(datetime(2025, 3, 1, tzinfo=UTC), "year", anchor=anchor)[0] == datetime(2025, 2, 28, tzinfo=UTC)
    assert period_bounds(datetime(2025, 3, 1, tzinfo=UTC), "year") == (
        datetime(2025, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC))
