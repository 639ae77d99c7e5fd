"""Currencies: ISO 4217 minor units, half-up rounding and printing."""

from decimal import Decimal

import pytest

from metering.pricing import (
    MINOR_UNITS,
    UnknownCurrencyError,
    format_amount,
    is_known_currency,
    minor_units,
    quantize_amount,
)


@pytest.mark.parametrize(
    ("currency", "digits"),
    [("USD", 2), ("EUR", 2), ("GBP", 2), ("JPY", 0), ("KRW", 0), ("CLP", 0), ("ISK", 0), ("VND", 0),
     ("BHD", 3), ("KWD", 3), ("TND", 3), ("CLF", 4), ("HUF", 2), ("IDR", 2), ("CHF", 2)],
)
def test_minor_units_follow_iso_4217(currency, digits):
    assert minor_units(currency) == digits


def test_the_list_is_broad():
    assert len(MINOR_UNITS) > 150
    assert all(len(code) == 3 and code.isupper() for code in MINOR_UNITS)


def test_unknown_currency_is_refused():
    assert not is_known_currency("XYZ")
    assert not is_known_currency("usd")  # codes are upper case; documents normalize before this
    with pytest.raises(UnknownCurrencyError, match="unknown currency 'XYZ'"):
        quantize_amount(Decimal("1"), "XYZ")
    with pytest.raises(UnknownCurrencyError):
        minor_units("XYZ")


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        ("0.005", "USD", "0.01"),  # half-up, not half-even
        ("0.125", "USD", "0.13"),  # half-even would give 0.12
        ("2.675", "USD", "2.68"),  # exact in Decimal (a float would round it down)
        ("0.004999", "USD", "0.00"),
        ("49", "USD", "49.00"),
        ("0.5", "JPY", "1"),
        ("1.5", "JPY", "2"),
        ("2.5", "JPY", "3"),
        ("1000.49", "JPY", "1000"),
        ("1.0005", "BHD", "1.001"),
        ("0.00005", "CLF", "0.0001"),
    ],
)
def test_quantize_amount_rounds_half_up_to_the_minor_unit(amount, currency, expected):
    result = quantize_amount(Decimal(amount), currency)
    assert result == Decimal(expected)
    assert str(result) == expected


def test_quantize_refuses_floats():
    with pytest.raises(TypeError):
        quantize_amount(0.1, "USD")


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [("49", "USD", "49.00"), ("1000", "JPY", "1000"), ("1E+3", "USD", "1000.00"), ("0.125", "EUR", "0.13"),
     ("-0.001", "USD", "0.00"), ("12.3456", "KWD", "12.346")],
)
def test_format_amount_prints_exactly_the_minor_digits(amount, currency, expected):
    assert format_amount(Decimal(amount), currency) == expected
