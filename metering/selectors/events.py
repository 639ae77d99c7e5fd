"""Reads of the events that arrived: a tenant's receipts (what was accepted) and its recent rejections."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import QuerySet

from metering.models import EventReceipt, EventRejection


def event_receipts(*, tenant, code: str | None = None, transaction_id: str | None = None,
                   since: datetime | None = None, until: datetime | None = None) -> QuerySet[EventReceipt]:
    """The tenant's accepted events, last arrived first; ``since``/``until`` bound the events' timestamp [since, until)."""
    receipts = EventReceipt.objects.filter(tenant=tenant).select_related("tenant").order_by("-received_at", "-id")
    if code:
        receipts = receipts.filter(code=code)
    if transaction_id:
        receipts = receipts.filter(transaction_id=transaction_id)
    if since is not None:
        receipts = receipts.filter(timestamp__gte=since)
    if until is not None:
        receipts = receipts.filter(timestamp__lt=until)
    return receipts


def event_rejections_recent(*, tenant, now: datetime, transaction_id: str | None = None) -> QuerySet[EventRejection]:
    """The tenant's rejected events of the last EVENTS_REJECTIONS_KEEP_DAYS days, last first."""
    rejections = EventRejection.objects.filter(
        tenant=tenant, received_at__gte=now - timedelta(days=settings.EVENTS_REJECTIONS_KEEP_DAYS),
    ).select_related("tenant").order_by("-received_at", "-id")
    if transaction_id:
        rejections = rejections.filter(transaction_id=transaction_id)
    return rejections
