"""ISO 4217 currencies: minor units, half-up rounding of amounts and their printed form."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Context, Decimal

# Minor units per ISO 4217 (the list maintained by SIX). Currencies with two minor digits are the
# rule; the exceptions are listed apart so that a reader can check them against the standard.
_ZERO_DIGITS = (
    "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF"
).split()
_THREE_DIGITS = "BHD IQD JOD KWD LYD OMR TND".split()
_FOUR_DIGITS = "CLF UYW".split()
_TWO_DIGITS = (
    "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BOV BRL BSD BTN BWP "
    "BYN BZD CAD CDF CHE CHF CHW CNY COP COU CRC CUC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR "
    "FJD FKP GBP GEL GHS GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW "
    "KYD KZT LAK LBP LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN "
    "NAD NGN NIO NOK NPR NZD PAB PEN PGK PHP PKR PLN QAR RON RSD RUB SAR SBD SCR SDG SEK SGD "
    "SHP SLE SLL SOS SRD SSP STN SVC SYP SZL THB TJS TMT TOP TRY TTD TWD TZS UAH USD USN UYU "
    "UZS VED VES WST XCD XCG YER ZAR ZMW ZWG ZWL"
).split()

MINOR_UNITS: dict[str, int] = {
    **dict.fromkeys(_TWO_DIGITS, 2),
    **dict.fromkeys(_ZERO_DIGITS, 0),
    **dict.fromkeys(_THREE_DIGITS, 3),
    **dict.fromkeys(_FOUR_DIGITS, 4),
}

# One quantum per currency, built once: quantize() is then a dict lookup and one call.
_QUANTUM: dict[str, Decimal] = {code: Decimal(1).scaleb(-digits) for code, digits in MINOR_UNITS.items()}


class UnknownCurrencyError(ValueError):
    def __init__(self, currency: object) -> None:
        super().__init__(f"unknown currency {currency!r} (expected an ISO 4217 code such as 'USD')")
        self.currency = currency


def is_known_currency(currency: object) -> bool:
    return isinstance(currency, str) and currency in MINOR_UNITS


def minor_units(currency: str) -> int:
    """How many digits follow the decimal point in the currency (2 for USD, 0 for JPY)."""
    try:
        return MINOR_UNITS[currency]
    except (KeyError, TypeError):
        raise UnknownCurrencyError(currency) from None


def quantum(currency: str) -> Decimal:
    """The currency's minor unit as a Decimal exponent: Decimal("0.01") for USD, Decimal("1") for JPY."""
    try:
        return _QUANTUM[currency]
    except (KeyError, TypeError):
        raise UnknownCurrencyError(currency) from None


def quantize_amount(amount: Decimal, currency: str) -> Decimal:
    """Round an exact amount half-up to the currency's minor unit."""
    if isinstance(amount, float):
        raise TypeError("amounts are Decimals, never floats")
    return Decimal(amount).quantize(quantum(currency), rounding=ROUND_HALF_UP, context=ARITHMETIC_CONTEXT)


def format_amount(amount: Decimal, currency: str) -> str:
    """The amount rounded to the currency and printed with exactly its minor digits ("49.00", "1200")."""
    rounded = quantize_amount(Decimal(amount), currency)
    if not rounded:
        rounded = abs(rounded)  # never print "-0.00"
    return format(rounded, "f")


def format_unit_amount(amount: Decimal, currency: str) -> str:
    """A unit price as printed: never rounded, at least the currency's minor digits, more only where the
    price has them ("0.09", "0.0005", "1.00"; "3" for JPY), never an exponent."""
    if isinstance(amount, float):
        raise TypeError("amounts are Decimals, never floats")
    value = Decimal(amount)
    digits = minor_units(currency)
    value = value.normalize(ARITHMETIC_CONTEXT)
    if -value.as_tuple().exponent < digits:
        value = value.quantize(quantum(currency), context=ARITHMETIC_CONTEXT)
    if not value:
        value = abs(value)
    return format(value, "f")


# The context for pricing arithmetic: wide enough that products and sums of quantities and unit
# prices are exact (the default 28 digits can round a 20-digit quantity times a 12-place price).
ARITHMETIC_CONTEXT = Context(prec=60, rounding=ROUND_HALF_EVEN, Emax=999_999, Emin=-999_999)
