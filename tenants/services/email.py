"""Outgoing email: recorded in the caller's transaction, sent by a Celery worker after commit, retried with backoff.

What it guarantees:
- The EmailDelivery row is written in the same transaction as what causes the email (a finalized
  invoice, a signup request): when that commits, the email exists; a crash, a mail server outage or a
  lost broker message delays it, never loses it. The worker is told on commit (``deliver_emails``);
  the periodic sweep re-queues a pending email whose task went missing.
- A transient failure (server unreachable, timeout, 4xx reply) is retried by the task with exponential
  backoff, ``EMAIL_RETRY_DELAY`` seconds after the first attempt and doubling, ``EMAIL_MAX_ATTEMPTS``
  attempts in all; a permanent refusal (5xx for that recipient or message) or the last attempt marks
  it failed, with its error. Each attempt is recorded (attempts, last_error, next_attempt_at).
- No double sending by a duplicate task: a worker locks the row (``skip_locked``) and sends it only
  while it is pending, recording "sent" in the same transaction, so a second task finds it sent (or
  being sent) and does nothing. Email itself is at-least-once: if the database fails right after the
  server accepted a message, the row stays pending and the message goes out again later.
- Secrets (signup codes, temporary passwords) are not kept readable: the body is Fernet-encrypted with a
  key derived from SECRET_KEY (it must be sent as is: the code is only stored hashed, the password not
  at all), and wiped as soon as it is sent, superseded by a newer one, or past its expiry.
"""

from __future__ import annotations

import base64
import logging
import smtplib
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.core.mail import EmailMessage, get_connection
from django.db import models, transaction
from django.utils import timezone
from django.utils.crypto import salted_hmac

from portal.kernel import ApplicationError
from tenants.bulk import insert_objects
from tenants.models import DeliveryStatus, EmailDelivery, Tenant
from tenants.models.email import SECRET_KINDS

logger = logging.getLogger(__name__)

# A pending email due this long ago has lost its task (the broker dropped it): the sweep queues it again.
SWEEP_GRACE = timedelta(minutes=5)
SWEEP_CHUNK = 100  # emails per re-queued task
ERROR_MAX_CHARS = 2000


@dataclass(frozen=True)
class EmailDraft:
    kind: str
    recipient: str
    subject: str
    body: str
    about: models.Model | None = None
    tenant: Tenant | None = None
    expires_at: datetime | None = None


# --- attachments -----------------------------------------------------------------------------------

# kind -> function(delivery) -> [(filename, content, mimetype)]: what an email of that kind carries, made when
# it is sent (an invoice's PDF). Registered by the app that knows the object (metering registers invoices).
_ATTACHMENTS: dict[str, object] = {}


def register_attachments(kind: str, make) -> None:
    _ATTACHMENTS[kind] = make


def _attachments(delivery: EmailDelivery) -> list[tuple[str, bytes, str]]:
    """The delivery's attachments; none (the email still goes, its link still works) when they cannot be made."""
    make = _ATTACHMENTS.get(delivery.kind)
    if make is None or delivery.about is None:
        return []
    try:
        return list(make(delivery))
    except Exception:
        logger.exception("email %s: its attachments could not be made; sent without them", delivery.pk)
        return []


# --- secrets ---------------------------------------------------------------------------------------


def _fernet() -> Fernet:
    key = salted_hmac("tenants.email.body", "fernet-key", algorithm="sha256").digest()
    return Fernet(base64.urlsafe_b64encode(key))


def _plain_body(delivery: EmailDelivery) -> str:
    if not delivery.secret:
        return delivery.body
    if not delivery.body:
        raise ApplicationError("Its secret was wiped: it cannot be sent again.")
    try:
        return _fernet().decrypt(delivery.body.encode()).decode()
    except InvalidToken as exc:  # SECRET_KEY changed since it was queued
        raise ApplicationError("Its body cannot be decrypted any more (SECRET_KEY changed).") from exc


# --- queueing --------------------------------------------------------------------------------------


def email_queue(
    *, kind: str, recipient: str, subject: str, body: str, about: models.Model | None = None,
    tenant: Tenant | None = None, expires_at: datetime | None = None,
) -> EmailDelivery:
    """Record one email in the caller's transaction; a worker sends it once that commits."""
    draft = EmailDraft(kind=kind, recipient=recipient, subject=subject, body=body, about=about, tenant=tenant,
                       expires_at=expires_at)
    return email_queue_many(drafts=[draft])[0]


def email_queue_many(*, drafts: list[EmailDraft]) -> list[EmailDelivery]:
    """Record emails in the caller's transaction (one insert), and hand them to one worker task on commit.

    A secret email supersedes the earlier ones of the same kind about the same object (a new code makes
    the old one useless): they are cancelled if not sent yet, and their bodies wiped.
    """
    if not drafts:
        return []
    now = timezone.now()
    rows = []
    with transaction.atomic():
        for draft in drafts:
            secret = draft.kind in SECRET_KINDS
            about_type = ContentType.objects.get_for_model(draft.about) if draft.about is not None else None
            if secret and about_type is not None:
                _supersede(kind=draft.kind, about_type=about_type, about_id=draft.about.pk, now=now)
            rows.append(EmailDelivery(
                kind=draft.kind, recipient=draft.recipient, subject=draft.subject[:300],
                body=_fernet().encrypt(draft.body.encode()).decode() if secret else draft.body, secret=secret,
                about_type=about_type, about_id=draft.about.pk if draft.about is not None else None,
                tenant=draft.tenant, expires_at=draft.expires_at, next_attempt_at=now,
            ))
        insert_objects(EmailDelivery, rows)  # one COPY on PostgreSQL: a billing batch records 200 at once
        created = rows
        ids = [row.pk for row in created]
        transaction.on_commit(lambda: _enqueue(ids))
    return created


def _supersede(*, kind: str, about_type: ContentType, about_id: int, now: datetime) -> None:
    earlier = EmailDelivery.objects.filter(kind=kind, about_type=about_type, about_id=about_id)
    earlier.filter(status__in=(DeliveryStatus.PENDING, DeliveryStatus.FAILED)).update(
        status=DeliveryStatus.CANCELLED, next_attempt_at=None, last_error="Superseded by a newer email.", updated_at=now
    )
    earlier.exclude(body="").update(body="", updated_at=now)


def _enqueue(delivery_ids: list[int]) -> None:
    """Tell a worker (after commit). A broker outage loses nothing: the rows are committed and the sweep
    queues them later, so it is logged, not raised to the request or billing run that caused the email."""
    from tenants.tasks import deliver_emails

    try:
        deliver_emails.delay(delivery_ids)
    except Exception:
        logger.warning("could not queue emails %s (the sweep will): broker unavailable", delivery_ids, exc_info=True)


# --- sending ---------------------------------------------------------------------------------------


@dataclass
class SendResult:
    sent: list[int] = field(default_factory=list)
    retry: list[int] = field(default_factory=list)  # still pending after a transient failure
    failed: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)  # not pending (sent already, cancelled) or being sent
    retry_at: datetime | None = None  # when the earliest of `retry` is due

    def countdown(self, now: datetime | None = None) -> float:
        if self.retry_at is None:
            return 0.0
        return max(0.0, (self.retry_at - (now or timezone.now())).total_seconds())

    def summary(self) -> dict:
        return {"sent": self.sent, "retry": self.retry, "failed": self.failed, "skipped": self.skipped}


def retry_delay(attempts: int) -> timedelta:
    """The wait after the `attempts`-th failed attempt: EMAIL_RETRY_DELAY, doubling."""
    return timedelta(seconds=settings.EMAIL_RETRY_DELAY * 2 ** max(attempts - 1, 0))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ApplicationError):
        return exc.message
    return f"{type(exc).__name__}: {exc}"[:ERROR_MAX_CHARS]


def _is_permanent(exc: BaseException) -> bool:
    """The server refused this message for good (5xx to its recipient or its data), or it cannot be sent."""
    if isinstance(exc, (ApplicationError, ValueError)):
        return True
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return bool(exc.recipients) and all(code >= 500 for code, _ in exc.recipients.values())
    if isinstance(exc, smtplib.SMTPDataError):
        return exc.smtp_code >= 500
    return False


def _is_connection_level(exc: BaseException) -> bool:
    """The server is unreachable or hung up: the rest of the batch would fail the same way."""
    if isinstance(exc, (smtplib.SMTPServerDisconnected, smtplib.SMTPConnectError)):
        return True
    return isinstance(exc, OSError) and not isinstance(exc, smtplib.SMTPException)


def email_deliveries_send(*, delivery_ids: list[int]) -> SendResult:
    """Send the pending emails among `delivery_ids` over one connection, recording each outcome.

    Safe to run twice or concurrently: each row is sent under its lock and only while pending. When the
    server cannot be reached, the rest of the batch records the same failed attempt without waiting for
    a timeout each.
    """
    result = SendResult()
    connection = get_connection()
    down: BaseException | None = None
    try:
        connection.open()  # outside any transaction: a hung server holds no row lock
    except Exception as exc:
        down = exc
    try:
        for pk in sorted(set(delivery_ids)):
            outcome, due, error = _send_one(pk, connection, down)
            getattr(result, outcome).append(pk)
            if outcome == "retry" and (result.retry_at is None or due < result.retry_at):
                result.retry_at = due
            if error is not None and down is None and _is_connection_level(error):
                down = error
    finally:
        try:
            connection.close()
        except Exception:  # closing a dead connection: nothing left to do
            pass
    return result


def _send_one(pk: int, connection, down: BaseException | None) -> tuple[str, datetime | None, BaseException | None]:
    with transaction.atomic():
        delivery = (
            EmailDelivery.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(pk=pk, status=DeliveryStatus.PENDING)
            .first()
        )
        if delivery is None:
            return "skipped", None, None
        now = timezone.now()
        if delivery.expires_at is not None and delivery.expires_at <= now:
            delivery.status, delivery.next_attempt_at = DeliveryStatus.CANCELLED, None
            delivery.last_error = delivery.last_error or "Expired before it could be sent."
            if delivery.secret:
                delivery.body = ""
            delivery.save()
            return "skipped", None, None
        delivery.attempts += 1
        try:
            if down is not None:
                raise down
            message = EmailMessage(subject=delivery.subject, body=_plain_body(delivery),
                                   from_email=settings.DEFAULT_FROM_EMAIL, to=[delivery.recipient])
            for filename, content, mimetype in _attachments(delivery):
                message.attach(filename, content, mimetype)
            connection.send_messages([message])
        except Exception as exc:
            delivery.last_error = _describe(exc)
            if _is_permanent(exc) or delivery.attempts >= settings.EMAIL_MAX_ATTEMPTS:
                delivery.status, delivery.next_attempt_at = DeliveryStatus.FAILED, None
                logger.error("email %s to %s failed after %s attempts: %s", pk, delivery.recipient,
                             delivery.attempts, delivery.last_error)
                outcome = "failed"
            else:
                delivery.next_attempt_at = now + retry_delay(delivery.attempts)
                logger.warning("email %s to %s: attempt %s failed (%s), next at %s", pk, delivery.recipient,
                               delivery.attempts, delivery.last_error, delivery.next_attempt_at)
                outcome = "retry"
            delivery.save()
            return outcome, delivery.next_attempt_at, exc
        delivery.status, delivery.sent_at, delivery.next_attempt_at = DeliveryStatus.SENT, now, None
        if delivery.secret:
            delivery.body = ""  # delivered: the code or password is not kept
        delivery.save()
        return "sent", None, None


# --- operations ------------------------------------------------------------------------------------


def email_delivery_resend(*, delivery: EmailDelivery, by=None) -> EmailDelivery:
    """Queue an email again now, with a fresh budget of attempts (an operator's Resend; also a sent one,
    when its recipient lost it). Records who asked and when."""
    with transaction.atomic():
        locked = EmailDelivery.objects.select_for_update().get(pk=delivery.pk)
        now = timezone.now()
        what = f"The {locked.get_kind_display().lower()} email to {locked.recipient}"
        if locked.status == DeliveryStatus.CANCELLED:
            raise ApplicationError(f"{what} was cancelled ({locked.last_error or 'no longer useful'}): it is not resent.")
        if locked.expires_at is not None and locked.expires_at <= now:
            raise ApplicationError(f"{what} has expired: a new one must be issued instead.")
        if locked.secret and not locked.body:
            raise ApplicationError(f"{what} held a secret, wiped once sent: a new one must be issued instead.")
        locked.status, locked.attempts, locked.next_attempt_at = DeliveryStatus.PENDING, 0, now
        locked.resends += 1
        locked.resent_at = now
        locked.resent_by = by if by is not None and by.is_authenticated else None
        locked.save()
        transaction.on_commit(lambda: _enqueue([locked.pk]))
    return locked


def email_deliveries_cancel(*, about: models.Model, reason: str) -> int:
    """Cancel the unsent emails about an object that no longer stands (a voided invoice)."""
    now = timezone.now()
    unsent = EmailDelivery.objects.filter(
        about_type=ContentType.objects.get_for_model(about), about_id=about.pk,
        status__in=(DeliveryStatus.PENDING, DeliveryStatus.FAILED),
    )
    unsent.filter(secret=True).update(body="")
    return unsent.update(status=DeliveryStatus.CANCELLED, next_attempt_at=None, last_error=reason, updated_at=now)


def email_deliveries_sweep(*, now: datetime | None = None) -> dict:
    """The periodic safety net: cancel and wipe secrets past their expiry, and queue again every pending
    email due for longer than SWEEP_GRACE (its task was lost). Safe to run twice: sending is idempotent."""
    now = now or timezone.now()
    expired = EmailDelivery.objects.filter(
        status__in=(DeliveryStatus.PENDING, DeliveryStatus.FAILED), expires_at__lte=now
    )
    expired.filter(last_error="").update(last_error="Expired before it could be sent.")
    cancelled = expired.update(status=DeliveryStatus.CANCELLED, next_attempt_at=None, updated_at=now)
    wiped = EmailDelivery.objects.filter(secret=True, expires_at__lte=now).exclude(body="").update(body="", updated_at=now)
    due = list(
        EmailDelivery.objects.filter(status=DeliveryStatus.PENDING, next_attempt_at__lte=now - SWEEP_GRACE)
        .order_by("next_attempt_at", "pk")
        .values_list("pk", flat=True)[:SWEEP_CHUNK * 10]
    )
    for start in range(0, len(due), SWEEP_CHUNK):
        _enqueue(due[start:start + SWEEP_CHUNK])
    return {"requeued": len(due), "cancelled": cancelled, "wiped": wiped}
