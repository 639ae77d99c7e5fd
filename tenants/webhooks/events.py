"""Emitting an event: the outbox row and its deliveries, written in the caller's transaction.

``webhook_emit`` is called by the service that makes the change, inside its transaction: the event exists
if and only if the change commits. The workers are told after commit (``transaction.on_commit``); if that
message is lost (broker down, process killed right after the commit), the periodic sweep finds the pending
deliveries. An event no enabled endpoint subscribes to is not recorded.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime

from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from tenants.models import Tenant, WebhookDelivery, WebhookEndpoint, WebhookEvent
from tenants.webhooks.registry import EVENT_TYPES, serialize_resource
from tenants.webhooks.signing import new_event_id, new_message_id

logger = logging.getLogger(__name__)


def iso_timestamp(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


# Inside endpoints_read_once(): the enabled endpoints, read at the first event of the block (None until then).
_snapshot: ContextVar[list | None] = ContextVar("webhook_endpoints_snapshot", default=None)


@contextmanager
def endpoints_read_once() -> Iterator[None]:
    """Within the block, the enabled endpoints are read once, at its first event, instead of once per event:
    for a batch that emits many events in one transaction (a billing batch of 200 invoices). An endpoint
    added or changed during the block counts from the next block on."""
    token = _snapshot.set([None])
    try:
        yield
    finally:
        _snapshot.reset(token)


def subscribed_endpoints(*, type: str, tenant: Tenant | None) -> list[WebhookEndpoint]:
    """Enabled endpoints that take `type` for `tenant`: the provider's, and the tenant's own."""
    snapshot = _snapshot.get()
    if snapshot is not None:
        if snapshot[0] is None:
            snapshot[0] = list(WebhookEndpoint.objects.filter(enabled=True).order_by("pk"))
        owner_ids = {None} if tenant is None else {None, tenant.pk}
        return [endpoint for endpoint in snapshot[0]
                if endpoint.tenant_id in owner_ids and type in endpoint.event_types]
    owners = Q(tenant__isnull=True) if tenant is None else Q(tenant__isnull=True) | Q(tenant=tenant)
    endpoints = WebhookEndpoint.objects.filter(owners, enabled=True).order_by("pk")
    # The lists are short and JSON containment is not portable to SQLite: filtered here.
    return [endpoint for endpoint in endpoints if type in endpoint.event_types]


def webhook_emit(*, type: str, resource, tenant: Tenant | None, at: datetime | None = None) -> WebhookEvent | None:
    """Record event `type` about `resource` (a model instance, or the data dict) in the caller's transaction,
    with one delivery (its own msg_ id) per subscribed endpoint; None when no endpoint wants it."""
    event_type = EVENT_TYPES.get(type)
    if event_type is None:
        raise ValueError(f"Unknown webhook event type {type!r} (tenants/webhooks/registry.py).")
    endpoints = subscribed_endpoints(type=type, tenant=tenant)
    if not endpoints:
        return None
    at = at or timezone.now()
    document = {"type": type, "timestamp": iso_timestamp(at), "data": serialize_resource(event_type.resource, resource)}
    with transaction.atomic():
        event = WebhookEvent.objects.create(
            public_id=new_event_id(), type=type, tenant=tenant, created_at=at,
            payload=json.dumps(document, cls=DjangoJSONEncoder, separators=(",", ":")),
        )
        deliveries = WebhookDelivery.objects.bulk_create(
            WebhookDelivery(event=event, endpoint=endpoint, webhook_id=new_message_id(), next_attempt_at=at)
            for endpoint in endpoints
        )
        _enqueue_on_commit([delivery.pk for delivery in deliveries])
    return event


class _Outgoing:
    """The deliveries written in the current transaction, handed to the workers in one go when it commits."""

    def __init__(self, hooks: list):
        self.hooks = hooks  # the connection's list of commit hooks this one was registered in
        self.ids: list[int] = []
        self.flushed = False

    def flush(self) -> None:
        self.flushed = True
        # A savepoint rolled back after some of these were written took their rows with it: enqueue hands over
        # only the deliveries that exist (a database that reuses ids may make one a duplicate, which costs
        # nothing: an attempt's claim is exclusive).
        enqueue(list(dict.fromkeys(self.ids)))


def _enqueue_on_commit(ids: list[int]) -> None:
    """One commit hook per transaction for all its events: a billing batch of 200 invoices makes a few
    messages of BATCH deliveries, not 400 of one. Django replaces its list of hooks whenever it runs them or
    drops some (a commit, a rollback, a rolled-back savepoint), so a hook is known to be still pending while
    that list is the one it was registered in (this reads Django's ``run_on_commit``, a private attribute)."""
    connection = transaction.get_connection()
    outgoing = getattr(connection, "_webhook_outgoing", None)
    if outgoing is None or outgoing.flushed or outgoing.hooks is not connection.run_on_commit:
        outgoing = _Outgoing(connection.run_on_commit)
        connection._webhook_outgoing = outgoing
        outgoing.ids.extend(ids)
        transaction.on_commit(outgoing.flush)
        return
    outgoing.ids.extend(ids)


BATCH = 20  # deliveries per task: one broker message per delivery capped delivery near 120/s on 2 cores


def enqueue(delivery_ids: list[int]) -> None:
    """Hand deliveries to the workers (after commit), BATCH to a task. A broker outage loses nothing: the rows
    are committed and the sweep queues them later, so it is logged, not raised to the change that caused them."""
    from tenants.tasks import deliver_webhook, deliver_webhooks

    if not delivery_ids:
        return
    # Batches per endpoint: a receiver that hangs delays its own deliveries only.
    by_endpoint: dict[int, list[int]] = {}
    for pk, endpoint_id in WebhookDelivery.objects.filter(pk__in=delivery_ids).values_list("pk", "endpoint_id"):
        by_endpoint.setdefault(endpoint_id, []).append(pk)
    try:
        for ids in by_endpoint.values():
            ids.sort()
            for start in range(0, len(ids), BATCH):
                chunk = ids[start:start + BATCH]
                if len(chunk) == 1:
                    deliver_webhook.delay(chunk[0])
                else:
                    deliver_webhooks.delay(chunk)
    except Exception:
        logger.warning("could not queue webhook deliveries %s (the sweep will): broker unavailable", delivery_ids,
                       exc_info=True)
