"""Template filters for money: amounts with exactly their currency's minor digits, unit prices never rounded."""

from decimal import Decimal, InvalidOperation

from django import template

from metering.pricing import UnknownCurrencyError, format_amount, format_unit_amount

register = template.Library()


def _decimal(value):
    try:
        return Decimal(value)
    except (InvalidOperation, TypeError, ValueError):
        return None


@register.filter
def money(value, currency):
    """{{ invoice.total|money:invoice.currency }}: Decimal("100.0000") -> "100.00" (USD), "1200" (JPY)."""
    amount = _decimal(value)
    if amount is None:
        return value
    try:
        return format_amount(amount, currency)
    except UnknownCurrencyError:
        return format(amount, "f")


@register.filter
def unit_price(value, currency):
    """{{ charge.unit_amount|unit_price:plan.currency }}: "0.09", "0.0005", "0.00"; never rounded."""
    amount = _decimal(value)
    if amount is None:
        return value
    try:
        return format_unit_amount(amount, currency)
    except UnknownCurrencyError:
        return format(amount, "f")
