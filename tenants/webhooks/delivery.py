"""Delivering webhooks: at least once, one webhook-id per (event, endpoint), never two workers on one attempt.

- Claiming an attempt is one conditional UPDATE on the delivery row (pending, due, and no lease in force
  -> a lease token and ``lease_until``). The database applies it to one worker only; on PostgreSQL a second
  UPDATE waits for the first and re-checks the condition on the new row, which no longer matches. The
  attempt's row (WebhookAttempt) is written in the same transaction.
- The HTTP request runs outside any transaction (a slow receiver holds no lock), with short timeouts;
  WEBHOOKS_LEASE_SECONDS must stay well above them, so a lease never ends while its worker still waits.
- The outcome is recorded only by the lease's holder. A worker killed mid-request leaves its lease, which
  ends; the sweep (every minute) then queues the delivery again and another worker sends it, with the same
  webhook-id. The receiver may have seen it already: delivery is at least once, and receivers dedupe on
  webhook-id.
- A 2xx answer is success. A timeout, a connection error, a refused address or any other status is a failed
  attempt, retried after WEBHOOKS_RETRY_SCHEDULE's waits (about a day in all), then the delivery fails.
  An endpoint whose deliveries have failed for WEBHOOKS_DISABLE_AFTER_DAYS without a success between is
  disabled, its pending deliveries failed, and staff are emailed.
- A failed or past delivery is resent by hand (``webhook_delivery_resend``): a fresh set of attempts, the
  same webhook-id.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from portal.kernel import ApplicationError
from tenants.models import (
    EmailKind,
    WebhookAttempt,
    WebhookDelivery,
    WebhookDeliveryStatus,
    WebhookEndpoint,
)
from tenants.webhooks import events, transport
from tenants.webhooks.signing import decrypt_secret, signed_headers

logger = logging.getLogger(__name__)

SWEEP_GRACE = timedelta(seconds=30)  # a delivery due this long with no lease has lost its task
SWEEP_LIMIT = 1000


def retry_schedule() -> list[float]:
    """Seconds to wait after the 1st, 2nd, … failed attempt; one more attempt than waits in all."""
    return list(settings.WEBHOOKS_RETRY_SCHEDULE)


def max_attempts() -> int:
    return len(retry_schedule()) + 1


@dataclass
class AttemptResult:
    outcome: str  # "succeeded", "retry", "failed", "skipped" (not due, leased by another worker, or done)
    retry_in: float | None = None
    status_code: int | None = None


def _without_waiting_for_the_disk() -> None:
    """In the current transaction, do not wait for the WAL flush at commit (PostgreSQL's synchronous_commit off:
    the commit is visible to every other session at once, so a claim is as exclusive as before). Only a
    database crash in the next moments could forget it: then the claim, or the outcome, is lost and the
    delivery is sent again, which at-least-once delivery allows (receivers dedupe on webhook-id); the events
    themselves are written by the change's own, durable, transaction. Each attempt commits twice: waiting
    for the disk each time capped delivery at about 100/s on this project's machine."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit TO OFF")


def _claim(pk: int, now: datetime) -> tuple[str, WebhookDelivery, WebhookAttempt] | None:
    """Take the due attempt of a delivery (three statements, one transaction), or None when another worker
    holds it, it is not due, or it is done."""
    token = secrets.token_hex(16)
    with transaction.atomic():
        _without_waiting_for_the_disk()
        # Plain columns of the one row only, so PostgreSQL re-checks the whole condition after a concurrent
        # UPDATE committed (no join or subquery in the WHERE).
        claimed = WebhookDelivery.objects.filter(
            Q(lease_until__isnull=True) | Q(lease_until__lte=now),
            pk=pk, status=WebhookDeliveryStatus.PENDING, next_attempt_at__lte=now,
        ).update(lease_token=token, lease_until=now + timedelta(seconds=settings.WEBHOOKS_LEASE_SECONDS),
                 attempts=F("attempts") + 1, attempts_ever=F("attempts_ever") + 1, updated_at=now)
        if not claimed:
            return None
        delivery = WebhookDelivery.objects.select_related("event", "endpoint").get(pk=pk)
        attempt = WebhookAttempt.objects.create(delivery=delivery, number=delivery.attempts_ever, started_at=now)
    return token, delivery, attempt


def webhook_delivery_attempt(*, delivery_id: int) -> AttemptResult:
    """Make the due attempt of one delivery, if no other worker holds it; safe to run twice or concurrently."""
    now = timezone.now()
    claim = _claim(delivery_id, now)
    if claim is None:
        return AttemptResult("skipped")
    token, delivery, attempt = claim
    endpoint, event = delivery.endpoint, delivery.event
    if not endpoint.enabled:
        answer = transport.Answer(None, "", 0, "The endpoint is disabled.")
    else:
        body = event.payload
        headers = signed_headers(secrets_=_signing_secrets(endpoint, now), msg_id=delivery.webhook_id,
                                 timestamp=timezone.now(), body=body)
        answer = transport.post(endpoint.url, body.encode(), headers)
    return _record(delivery, token, attempt, answer)


def _signing_secrets(endpoint: WebhookEndpoint, now: datetime) -> list[str]:
    secrets_ = [decrypt_secret(endpoint.secret_encrypted)]
    if endpoint.previous_secret_encrypted and endpoint.previous_secret_expires_at and \
            endpoint.previous_secret_expires_at > now:
        secrets_.append(decrypt_secret(endpoint.previous_secret_encrypted))
    return secrets_


def _record(delivery: WebhookDelivery, token: str, attempt: WebhookAttempt, answer: transport.Answer) -> AttemptResult:
    """Record the attempt, and the delivery's outcome if the lease is still ours (a conditional UPDATE: after a
    resend, or a lease that ended and was taken over, the outcome is the other holder's to record)."""
    now = timezone.now()
    endpoint = delivery.endpoint
    last_error = "" if answer.ok else (answer.error or f"HTTP {answer.status_code}: {answer.excerpt[:200]}")[:500]
    if answer.ok:
        outcome = AttemptResult("succeeded", status_code=answer.status_code)
        change = {"status": WebhookDeliveryStatus.SUCCEEDED, "delivered_at": now, "next_attempt_at": None}
    elif endpoint.enabled and delivery.attempts <= len(retry_schedule()):
        wait = retry_schedule()[delivery.attempts - 1]
        outcome = AttemptResult("retry", retry_in=wait, status_code=answer.status_code)
        change = {"next_attempt_at": now + timedelta(seconds=wait)}
    else:
        outcome = AttemptResult("failed", status_code=answer.status_code)
        change = {"status": WebhookDeliveryStatus.FAILED, "next_attempt_at": None}
    with transaction.atomic():
        _without_waiting_for_the_disk()
        WebhookAttempt.objects.filter(pk=attempt.pk).update(
            finished_at=max(now, attempt.started_at), succeeded=answer.ok, status_code=answer.status_code,
            latency_ms=answer.latency_ms, response_excerpt=answer.excerpt, error=answer.error[:500])
        recorded = WebhookDelivery.objects.filter(
            pk=delivery.pk, lease_token=token, status=WebhookDeliveryStatus.PENDING,
        ).update(lease_token="", lease_until=None, last_status_code=answer.status_code, last_error=last_error,
                 updated_at=now, **change)
        if not recorded:
            return AttemptResult("skipped", status_code=answer.status_code)
        endpoints = WebhookEndpoint.objects.filter(pk=endpoint.pk)
        if answer.ok:
            if endpoint.failing_since is not None:  # (as read at the claim: the no-op UPDATE is skipped)
                endpoints.filter(failing_since__isnull=False).update(failing_since=None, updated_at=now)
            return outcome
        endpoints.filter(failing_since__isnull=True).update(failing_since=now, updated_at=now)
        logger.warning("webhook %s to %s: attempt %s failed (%s)", delivery.webhook_id, endpoint.url,
                       delivery.attempts, last_error)
        _disable_if_failing_too_long(endpoint.pk, now)
    return outcome


def _disable_if_failing_too_long(endpoint_id: int, now: datetime) -> None:
    limit = now - timedelta(days=settings.WEBHOOKS_DISABLE_AFTER_DAYS)
    endpoint = WebhookEndpoint.objects.select_for_update().filter(
        pk=endpoint_id, enabled=True, failing_since__lte=limit).first()
    if endpoint is None:
        return
    days = settings.WEBHOOKS_DISABLE_AFTER_DAYS
    webhook_endpoint_disable(endpoint=endpoint, reason=f"Every delivery failed for {days:g} days.", at=now)
    _email_staff_disabled(endpoint)


def _email_staff_disabled(endpoint: WebhookEndpoint) -> None:
    from tenants.services.email import EmailDraft, email_queue_many

    owner = f"tenant {endpoint.tenant.slug}" if endpoint.tenant_id else "the provider"
    body = (f"The webhook endpoint {endpoint.url} of {owner} was disabled: {endpoint.disabled_reason}\n\n"
            f"Its pending deliveries were marked failed. Fix the receiver, enable the endpoint again and resend "
            f"what it missed: {settings.PORTAL_BASE_URL.rstrip('/')}/admin/tenants/webhookendpoint/{endpoint.pk}/change/\n")
    # The staff the alerts tell (ALERTS_STAFF_EMAILS), else every active staff login with an address.
    recipients = list(getattr(settings, "ALERTS_STAFF_EMAILS", None) or []) or sorted(set(
        get_user_model().objects.filter(is_staff=True, is_active=True).exclude(email="")
        .values_list("email", flat=True)))
    email_queue_many(drafts=[EmailDraft(kind=EmailKind.WEBHOOK_DISABLED, recipient=email, about=endpoint,
                                        tenant=endpoint.tenant, subject=f"Webhook endpoint disabled: {endpoint.url}",
                                        body=body) for email in recipients])


def webhook_endpoint_disable(*, endpoint: WebhookEndpoint, reason: str = "Disabled by its owner.",
                             at: datetime | None = None) -> WebhookEndpoint:
    """Stop sending to an endpoint: its pending deliveries fail (they can be resent once it is enabled)."""
    at = at or timezone.now()
    with transaction.atomic():
        locked = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
        if not locked.enabled:
            return locked
        locked.enabled, locked.disabled_at, locked.disabled_reason = False, at, reason[:300]
        locked.save(update_fields=["enabled", "disabled_at", "disabled_reason", "updated_at"])
        WebhookDelivery.objects.filter(endpoint=locked, status=WebhookDeliveryStatus.PENDING).update(
            status=WebhookDeliveryStatus.FAILED, next_attempt_at=None, lease_token="", lease_until=None,
            last_error=f"The endpoint was disabled: {reason}"[:500], updated_at=at)
    endpoint.enabled, endpoint.disabled_at, endpoint.disabled_reason = locked.enabled, at, locked.disabled_reason
    return locked


def webhook_delivery_resend(*, delivery: WebhookDelivery) -> WebhookDelivery:
    """Send a delivery again now with a fresh set of attempts and the same webhook-id (also a succeeded one,
    when its receiver lost it)."""
    now = timezone.now()
    with transaction.atomic():
        locked = WebhookDelivery.objects.select_for_update(of=("self",)).select_related("endpoint").get(pk=delivery.pk)
        if not locked.endpoint.enabled:
            raise ApplicationError("Its endpoint is disabled: enable it first.")
        if locked.status == WebhookDeliveryStatus.PENDING and locked.lease_until and locked.lease_until > now:
            raise ApplicationError("It is being sent right now.")
        locked.status, locked.attempts, locked.next_attempt_at = WebhookDeliveryStatus.PENDING, 0, now
        locked.lease_token, locked.lease_until, locked.delivered_at = "", None, None
        locked.resends += 1
        locked.save()
        transaction.on_commit(lambda: events.enqueue([locked.pk]))
    return locked


def webhook_deliveries_sweep(*, now: datetime | None = None, grace: timedelta = SWEEP_GRACE) -> dict:
    """The periodic safety net: queue again every pending delivery due for longer than `grace` whose lease
    (if any) has ended: its task was lost, or its worker died mid-attempt. Safe to run twice: a claim is
    exclusive, so a duplicate task sends nothing."""
    now = now or timezone.now()
    # Never attempted since due (its task may still be on its way: `grace`), or attempted by a worker whose
    # lease has ended without an outcome (it died: at once).
    lost = Q(lease_until__isnull=True, next_attempt_at__lte=now - grace) | Q(lease_until__lte=now)
    due = list(
        WebhookDelivery.objects.filter(lost, status=WebhookDeliveryStatus.PENDING, next_attempt_at__lte=now)
        .order_by("next_attempt_at", "pk").values_list("pk", flat=True)[:SWEEP_LIMIT]
    )
    events.enqueue(due)
    return {"requeued": len(due)}
