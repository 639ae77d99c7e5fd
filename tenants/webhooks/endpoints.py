"""Webhook endpoints: create (the secret is returned once), update, enable, delete, rotate the secret."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from portal.kernel import ApplicationError
from tenants.models import Tenant, WebhookEndpoint
from tenants.webhooks.registry import EVENT_TYPES, event_type_names
from tenants.webhooks.signing import encrypt_secret, new_secret
from tenants.webhooks.transport import check_url

MAX_ENDPOINTS_PER_OWNER = 20


def _clean_types(event_types, *, provider: bool) -> list[str]:
    if not isinstance(event_types, (list, tuple)) or not event_types or not all(isinstance(t, str) for t in event_types):
        raise ApplicationError("Name the event types to send: a non-empty list, e.g. [\"invoice.finalized\"].")
    allowed = set(event_type_names(provider=provider))
    unknown = [t for t in event_types if t not in EVENT_TYPES]
    if unknown:
        raise ApplicationError(f"Unknown event types: {', '.join(unknown)}.", extra={"known": sorted(EVENT_TYPES)})
    refused = [t for t in event_types if t not in allowed]
    if refused:
        raise ApplicationError(f"Only provider endpoints receive {', '.join(refused)}.")
    return [t for t in EVENT_TYPES if t in set(event_types)]  # each once, in the registry's order


def webhook_endpoint_create(*, tenant: Tenant | None, url: str, event_types, description: str = "",
                            created_by=None) -> tuple[WebhookEndpoint, str]:
    """A new endpoint and its signing secret (whsec_…), which is never shown again."""
    types = _clean_types(event_types, provider=tenant is None)
    check_url(url)
    secret = new_secret()
    with transaction.atomic():
        if tenant is not None:  # the tenant's row serializes its owner's concurrent additions
            Tenant.objects.select_for_update().filter(pk=tenant.pk).first()
        owned = WebhookEndpoint.objects.filter(tenant=tenant) if tenant else WebhookEndpoint.objects.filter(
            tenant__isnull=True)
        if owned.count() >= MAX_ENDPOINTS_PER_OWNER:
            raise ApplicationError(f"At most {MAX_ENDPOINTS_PER_OWNER} webhook endpoints each.")
        endpoint = WebhookEndpoint(tenant=tenant, url=url, description=description[:200], event_types=types,
                                   secret_encrypted=encrypt_secret(secret),
                                   created_by=created_by if created_by is not None and created_by.is_authenticated else None)
        endpoint.full_clean(exclude=["secret_encrypted"])
        endpoint.save()
    return endpoint, secret


def webhook_endpoint_update(*, endpoint: WebhookEndpoint, url: str | None = None, event_types=None,
                            description: str | None = None) -> WebhookEndpoint:
    with transaction.atomic():
        locked = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
        if url is not None and url != locked.url:
            check_url(url)
            locked.url = url
        if event_types is not None:
            locked.event_types = _clean_types(event_types, provider=locked.tenant_id is None)
        if description is not None:
            locked.description = description[:200]
        locked.full_clean(exclude=["secret_encrypted"])
        locked.save()
    return locked


def webhook_endpoint_enable(*, endpoint: WebhookEndpoint) -> WebhookEndpoint:
    """Send to it again (events from now on; what it missed is resent by hand)."""
    with transaction.atomic():
        locked = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
        if locked.enabled:
            return locked
        check_url(locked.url)
        locked.enabled, locked.disabled_at, locked.disabled_reason, locked.failing_since = True, None, "", None
        locked.save(update_fields=["enabled", "disabled_at", "disabled_reason", "failing_since", "updated_at"])
    return locked


def webhook_endpoint_delete(*, endpoint: WebhookEndpoint) -> None:
    """Delete an endpoint with its deliveries and their attempts."""
    endpoint.delete()


def webhook_endpoint_rotate_secret(*, endpoint: WebhookEndpoint) -> tuple[WebhookEndpoint, str]:
    """A new secret, returned once; the old one keeps signing too (a second signature) for
    WEBHOOKS_SECRET_OVERLAP_HOURS, so receivers can switch without rejecting events."""
    secret = new_secret()
    now = timezone.now()
    with transaction.atomic():
        locked = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
        overlap = timedelta(hours=settings.WEBHOOKS_SECRET_OVERLAP_HOURS)
        if overlap:
            locked.previous_secret_encrypted = locked.secret_encrypted
            locked.previous_secret_expires_at = now + overlap
        else:
            locked.previous_secret_encrypted, locked.previous_secret_expires_at = "", None
        locked.secret_encrypted = encrypt_secret(secret)
        locked.save()
    return locked, secret
