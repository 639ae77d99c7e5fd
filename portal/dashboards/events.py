"""The tenant area's Events page (/tenant/events/): the events that arrived last (filter by code, transaction
id, or the days they happened on, paged 50 at a time) and the rejections of the last days with their reasons,
for the signed-in tenant only. The provider sees the same in the admin (Event receipts, Event rejections) and
every tenant's through the API."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from urllib.parse import urlencode

from django.conf import settings
from django.shortcuts import render
from django.utils import timezone

from metering.selectors.events import event_receipts, event_rejections_recent
from tenants.views_tenant import tenant_view

SHOWN = 50
MAX_PAGE = 1000  # 50,000 events back; older ones are found by their days or transaction id


@tenant_view
def tenant_events(request):
    tenant = request.tenant_user.tenant
    code = _text(request, "code", 100)
    transaction_id = _text(request, "transaction_id", 255)
    errors = []
    since, since_day = _day(request, "since", errors, "From")
    until, until_day = _day(request, "until", errors, "To")
    if since and until and until < since:
        errors.append("“To” is before “From”: no day is in between.")
    page = _page(request)
    receipts = event_receipts(
        tenant=tenant, code=code or None, transaction_id=transaction_id or None,
        since=datetime.combine(since, datetime.min.time(), UTC) if since else None,
        until=datetime.combine(until + timedelta(days=1), datetime.min.time(), UTC) if until else None,
    )
    rows = list(receipts[(page - 1) * SHOWN:page * SHOWN + 1])  # one more: whether there is an older page
    rejections = event_rejections_recent(tenant=tenant, now=timezone.now(), transaction_id=transaction_id or None)
    filters = {key: value for key, value in (("code", code), ("transaction_id", transaction_id),
                                             ("since", since_day), ("until", until_day)) if value}
    return render(request, "portal/dashboards/events.html", {
        "tenant": tenant, "code": code, "transaction_id": transaction_id, "since": since_day, "until": until_day,
        "errors": errors, "filtered": bool(filters), "page": page,
        "receipts": rows[:SHOWN], "rejections": list(rejections[:SHOWN]), "shown": SHOWN,
        "newer_url": _page_url(filters, page - 1) if page > 1 else None,
        "older_url": _page_url(filters, page + 1) if len(rows) > SHOWN and page < MAX_PAGE else None,
        "keep_days": settings.EVENTS_REJECTIONS_KEEP_DAYS,
    })


def _text(request, name: str, limit: int) -> str:
    return request.GET.get(name, "").replace("\x00", "").strip()[:limit]


def _day(request, name: str, errors: list[str], label: str) -> tuple[date | None, str]:
    """The day a date field names (YYYY-MM-DD, as the browser's date picker sends it) and the text to show
    back; an unreadable one is reported in ``errors`` and not applied."""
    text = _text(request, name, 32)
    if not text:
        return None, ""
    try:
        return date.fromisoformat(text), text
    except ValueError:
        errors.append(f"“{label}” is not a date (YYYY-MM-DD): {text!r}; it was left out of the filter.")
        return None, text


def _page(request) -> int:
    try:
        return min(MAX_PAGE, max(1, int(request.GET.get("page", "1"))))
    except ValueError:
        return 1


def _page_url(filters: dict[str, str], page: int) -> str:
    return "?" + urlencode({**filters, **({"page": page} if page > 1 else {})})
