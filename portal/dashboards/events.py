"""The tenant area's Events page (/tenant/events/): the events that arrived last (filter by code, transaction
id, or the days they happened on, paged 50 at a time) and the rejections of the last days with their reasons,
for the signed-in tenant only. The provider sees the same in the admin (Event receipts, Event rejections) and
every tenant's through the API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

from django.conf import settings
from django.shortcuts import render
from django.utils import timezone

from metering.selectors.events import event_receipts, event_rejections_recent
from portal.dashboards.forms import EventsFilterForm
from tenants.views_tenant import tenant_view

SHOWN = 50
MAX_PAGE = 1000  # 50,000 events back; older ones are found by their days or transaction id


@tenant_view
def tenant_events(request):
    tenant = request.tenant_user.tenant
    form = EventsFilterForm(request.GET)
    filters = form.filters()
    since, until = filters.get("since"), filters.get("until")
    page = _page(request)
    receipts = event_receipts(
        tenant=tenant, code=filters.get("code"), transaction_id=filters.get("transaction_id"),
        since=datetime.combine(since, datetime.min.time(), UTC) if since else None,
        until=datetime.combine(until + timedelta(days=1), datetime.min.time(), UTC) if until else None,
    )
    rows = list(receipts[(page - 1) * SHOWN:page * SHOWN + 1])  # one more: whether there is an older page
    rejections = event_rejections_recent(tenant=tenant, now=timezone.now(), transaction_id=filters.get("transaction_id"))
    query = {name: value.isoformat() if hasattr(value, "isoformat") else value for name, value in filters.items()}
    return render(request, "portal/dashboards/events.html", {
        "tenant": tenant, "form": form, "filtered": bool(filters or form.errors), "page": page,
        "receipts": rows[:SHOWN], "rejections": list(rejections[:SHOWN]), "shown": SHOWN,
        "newer_url": _page_url(query, page - 1) if page > 1 else None,
        "older_url": _page_url(query, page + 1) if len(rows) > SHOWN and page < MAX_PAGE else None,
        "keep_days": settings.EVENTS_REJECTIONS_KEEP_DAYS,
    })


def _page(request) -> int:
    try:
        return min(MAX_PAGE, max(1, int(request.GET.get("page", "1"))))
    except ValueError:
        return 1


def _page_url(query: dict[str, str], page: int) -> str:
    return "?" + urlencode({**query, **({"page": page} if page > 1 else {})})
