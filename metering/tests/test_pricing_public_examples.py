"""Worked examples from Stripe's and Lago's public documentation, priced by our engine.

The pricing follows Stripe's and Lago's semantics, so that a provider moving from either gets the
same totals; each test names the page its numbers come from.
"""

from decimal import Decimal

import pytest

from metering.pricing import parse_plan, price_charge

D = Decimal


def charge(currency="USD", **fields):
    return parse_plan({"code": "p", "currency": currency, "interval": "month",
                       "charges": [{"metric": "m", **fields}]}).charges[0]


# Stripe's tiers: 1-5 fonts at 7 USD, 6-10 at 6.50 USD, 11+ at 6 USD.
STRIPE_FONT_TIERS = [
    {"up_to": 5, "unit_amount": "7"},
    {"up_to": 10, "unit_amount": "6.5"},
    {"up_to": None, "unit_amount": "6"},
]


@pytest.mark.parametrize(("fonts", "total"), [(1, "7"), (5, "35"), (6, "39"), (20, "120"), (25, "150")])
def test_stripe_volume_based_pricing(fonts, total):
    """Stripe, "Set up tiered pricing", volume-based table.

    https://docs.stripe.com/subscriptions/pricing-models/tiered-pricing
    "a customer with 5 fonts is charged 35 USD (5 × 7 USD) ... If they use 6 fonts ... 39 USD (6 × 6.5 USD)";
    the table continues 20 → 120 USD, 25 → 150 USD.
    """
    assert price_charge(charge(model="volume", tiers=STRIPE_FONT_TIERS), D(fonts), "USD") == D(total)


@pytest.mark.parametrize(("fonts", "total"), [(1, "7"), (5, "35"), (6, "41.50"), (20, "127.50"), (25, "157.50")])
def test_stripe_graduated_pricing(fonts, total):
    """Stripe, "Set up tiered pricing", graduated pricing with the same tiers.

    https://docs.stripe.com/subscriptions/pricing-models/tiered-pricing
    "5 fonts result in the same charge as volume-based pricing: 35 USD total at 7 USD per font"; past
    the first tier each tier's units are charged at that tier's price and summed (6 fonts: 5 × 7 + 1 × 6.50).
    """
    assert price_charge(charge(model="graduated", tiers=STRIPE_FONT_TIERS), D(fonts), "USD") == D(total)


def test_stripe_transform_quantity_car_rental():
    """Stripe, "Transform quantities": 10 USD per hour, usage reported in minutes, rounded up.

    https://docs.stripe.com/billing/subscriptions/usage-based/transform-quantities
    "If a customer rents the car for 150 minutes, that customer is charged 30 USD for 3 hours of rental".
    """
    per_hour = charge(model="per_unit", unit_amount="10", transform={"divide_by": 60, "round": "up"})
    assert price_charge(per_hour, D(150), "USD") == D("30.00")


@pytest.mark.parametrize(("users", "total"), [(1, "10"), (3, "10"), (5, "10"), (6, "20"), (7, "20")])
def test_stripe_quantity_transformation_per_five_users(users, total):
    """Stripe, "Quantity transformation": 10 USD for every 5 users (or portion thereof).

    https://stripe.com/docs/billing/subscriptions/quantity-transformation
    table: 1, 3, 5 users → $10; 6, 7 users → $20 (transform_quantity[divide_by]=5, [round]=up).
    """
    per_five = charge(model="per_unit", unit_amount="10.00", transform={"divide_by": 5, "round": "up"})
    assert price_charge(per_five, D(users), "USD") == D(total)


def test_stripe_quantity_transformation_rounding_down():
    """Stripe, "Quantity transformation": round down to charge "for every full gigabyte".

    https://stripe.com/docs/billing/subscriptions/quantity-transformation
    (the page gives no figures; 1,999 MB is one full gigabyte, 2,000 MB two.)
    """
    per_gb = charge(model="per_unit", unit_amount="1.00", transform={"divide_by": 1000, "round": "down"})
    assert price_charge(per_gb, D(1999), "USD") == D("1.00")
    assert price_charge(per_gb, D(2000), "USD") == D("2.00")


def test_lago_package_with_free_units():
    """Lago, "Package" charge model: 5 USD per 100 units, the first 100 units free.

    https://getlago.com/docs/guide/plans/charges/charge-models/package
    "201 units would cost $0 (first 100 units) + $5 (next 100 units) + $5 (last unit) = $10".
    """
    package = charge(model="package", package_size=100, package_amount="5", free_units=100)
    assert price_charge(package, D(201), "USD") == D("10.00")


def test_lago_volume_with_a_flat_fee():
    """Lago, "Volume" charge model.

    https://getlago.com/docs/guide/plans/charges/charge-models/volume
    tiers 0-10,000 at $0.0010, 10,001-50,000 at $0.0008, 50,001-100,000 at $0.0006, 100,001+ at $0.0004,
    each with a $10 flat fee: "65,000 API calls would cost 65,000 x $0.0006 + $10 = $49".
    """
    volume = charge(model="volume", tiers=[
        {"up_to": 10000, "unit_amount": "0.0010", "flat_amount": "10"},
        {"up_to": 50000, "unit_amount": "0.0008", "flat_amount": "10"},
        {"up_to": 100000, "unit_amount": "0.0006", "flat_amount": "10"},
        {"up_to": None, "unit_amount": "0.0004", "flat_amount": "10"},
    ])
    assert price_charge(volume, D(65000), "USD") == D("49.00")


def test_lago_graduated():
    """Lago, "Graduated" charge model: $1 per unit for the first 100, $0.50 for the next 100, then $0.10.

    https://getlago.com/docs/guide/plans/charges/charge-models/graduated
    (the page states the tiers without a total; 250 units are 100 × 1 + 100 × 0.50 + 50 × 0.10.)
    """
    graduated = charge(model="graduated", tiers=[
        {"up_to": 100, "unit_amount": "1"}, {"up_to": 200, "unit_amount": "0.50"}, {"up_to": None, "unit_amount": "0.10"}])
    assert price_charge(graduated, D(100), "USD") == D("100.00")
    assert price_charge(graduated, D(250), "USD") == D("155.00")
