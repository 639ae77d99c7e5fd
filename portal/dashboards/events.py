"""The tenant area's Events page (/tenant/events/): the events that arrived last (filter by code or
transaction id) and the rejections of the last days with their reasons, for the signed-in tenant only.
The provider sees the same in the admin (Event receipts, Event rejections) and every tenant's through the API."""

from __future__ import annotations

from django.conf import settings
from django.shortcuts import render
from django.utils import timezone

from metering.selectors.events import event_receipts, event_rejections_recent
from tenants.views_tenant import tenant_view

SHOWN = 50


@tenant_view
def tenant_events(request):
    tenant = request.tenant_user.tenant
    code = request.GET.get("code", "").replace("\x00", "").strip()[:100]
    transaction_id = request.GET.get("transaction_id", "").replace("\x00", "").strip()[:255]
    receipts = event_receipts(tenant=tenant, code=code or None, transaction_id=transaction_id or None)
    rejections = event_rejections_recent(tenant=tenant, now=timezone.now(), transaction_id=transaction_id or None)
    return render(request, "portal/dashboards/events.html", {
        "tenant": tenant, "code": code, "transaction_id": transaction_id,
        "receipts": list(receipts[:SHOWN]), "rejections": list(rejections[:SHOWN]), "shown": SHOWN,
        "keep_days": settings.EVENTS_REJECTIONS_KEEP_DAYS,
    })
