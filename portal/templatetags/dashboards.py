"""Template filters for the dashboards: quantities as plain decimals, no exponent, no trailing zeros."""

from decimal import Decimal, InvalidOperation

from django import template

from portal.dashboards.charts import format_number

register = template.Library()


@register.filter
def number(value, places=3):
    """12345 -> '12345', Decimal('2.500000') -> '2.5', rounded half-up to `places` decimals first."""
    if value is None or value == "":
        return ""
    try:
        value = Decimal(value)
    except (InvalidOperation, TypeError, ValueError):
        return value
    return format_number(value.quantize(Decimal(1).scaleb(-int(places))))
