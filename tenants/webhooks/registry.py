"""The event types endpoints subscribe to, and how each resource is shown in a payload.

A type names its resource; the resource's serializer (its REST API form) is registered by the layer that
owns the API (metering registers tenant, subscription and invoice when its app is ready), since this layer
may not import it. New types (the alerts) are one ``EventType`` each here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django.core.exceptions import ImproperlyConfigured


@dataclass(frozen=True)
class EventType:
    name: str
    resource: str  # the key of the serializer that renders `data`
    description: str
    provider_only: bool = False  # only provider endpoints (no tenant) may subscribe


EVENT_TYPES: dict[str, EventType] = {}


def register_event_type(event_type: EventType) -> EventType:
    EVENT_TYPES[event_type.name] = event_type
    return event_type


for _type in [
    EventType("invoice.created", "invoice", "A draft invoice was written for a closed period."),
    EventType("invoice.finalized", "invoice", "An invoice was numbered, priced for good and sent to the tenant."),
    EventType("invoice.paid", "invoice", "An invoice was marked paid."),
    EventType("invoice.voided", "invoice", "An invoice was voided (also when it is reissued)."),
    EventType("invoice.credited", "invoice", "A credit note was issued on an invoice (its credit_notes list it)."),
    EventType("tenant.created", "tenant", "A tenant was created (by staff, or by a self-service signup)."),
    EventType("tenant.suspended", "tenant", "A tenant was suspended: its users and keys are refused."),
    EventType("tenant.reactivated", "tenant", "A tenant became active again (after a suspension or its trial)."),
    EventType("tenant.cancelled", "tenant", "A tenant was cancelled: its subscriptions ended."),
    EventType("subscription.started", "subscription", "A tenant subscribed to a plan."),
    EventType("subscription.plan_changed", "subscription", "A subscription moved to another plan version."),
    EventType("subscription.ended", "subscription", "A subscription ended."),
    # Alerts (issue 16, "Alerts"): registered so endpoints can subscribe; emitted once thresholds exist.
    EventType("usage.threshold_reached", "threshold", "A metric's quantity in the period crossed a threshold."),
    EventType("spend.threshold_reached", "threshold", "The projected bill crossed a threshold."),
    EventType("sync.failed", "sync_run", "A usage sync failed.", provider_only=True),
    EventType("pipeline.late", "pipeline", "The pipeline is late beyond its setting.", provider_only=True),
]:
    register_event_type(_type)


def event_type_names(*, provider: bool) -> list[str]:
    """The types an endpoint may subscribe to: all for a provider endpoint, the tenant ones otherwise."""
    return [name for name, t in EVENT_TYPES.items() if provider or not t.provider_only]


# resource name -> function(instance) -> dict (the resource as the REST API shows it)
RESOURCE_SERIALIZERS: dict[str, Callable[[object], dict]] = {}


def register_resource(name: str, serialize: Callable[[object], dict]) -> None:
    RESOURCE_SERIALIZERS[name] = serialize


def serialize_resource(name: str, instance) -> dict:
    if isinstance(instance, dict):
        return instance
    try:
        serialize = RESOURCE_SERIALIZERS[name]
    except KeyError:
        raise ImproperlyConfigured(f"No webhook serializer registered for {name!r} resources.") from None
    return serialize(instance)
