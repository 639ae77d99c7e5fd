"""Moments on a tenant's clock, for invoices and dashboards (docs/plans.md, "Time zones").

``{{ invoice.period_start|local_moment:invoice.tenant.time_zone }}`` prints
``<time datetime="2026-11-01T00:00:00-04:00">2026-11-01 00:00 UTC-04:00</time>``: the local time with its
offset for people, ISO 8601 with the offset for machines. ``local_date`` prints the local date alone.
"""

from django import template
from django.utils.html import format_html

from metering.pricing import isoformat_local, local_label
from tenants.models import zone_named

register = template.Library()


@register.filter
def local_moment(value, time_zone="UTC"):
    if value is None or value == "":
        return ""
    zone = zone_named(str(time_zone))
    return format_html('<time datetime="{}">{}</time>', isoformat_local(value, zone), local_label(value, zone))


@register.filter
def local_date(value, time_zone="UTC"):
    if value is None or value == "":
        return ""
    return f"{value.astimezone(zone_named(str(time_zone))):%Y-%m-%d}"
