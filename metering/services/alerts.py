"""Alerts: set thresholds, check them after each usage sync, and tell staff when the pipeline is in trouble.

A usage alert compares a metric's quantity in the tenant's current billing period (as its invoice would
bill it, after the divisor) with its threshold; a spend alert compares the projected bill's total. Each
fires once per period (metering.models.alerts): the firing row is inserted in its own transaction with
the email (and webhook) it causes, so a notice is written exactly when the firing is, and a second
sync or worker that sees the same crossing inserts nothing and tells nobody.

Staff notices follow the same pattern, once per failing streak (the last successful sync names it) or
per stall of the pipeline (the instant it is synced up to).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.utils import timezone

from metering.lake import LakeError
from metering.models import SyncCursor, SyncOutcome, SyncRun
from metering.models.alerts import (
    AlertChannel,
    AlertKind,
    StaffNotice,
    StaffNoticeKind,
    UsageAlert,
    UsageAlertFiring,
)
from metering.pricing.currency import format_amount
from metering.pricing.engine import local_label
from metering.selectors.billing import projected_bill
from metering.selectors.usage import period_quantities
from metering.services.billing.periods import subscription_period
from portal.kernel import ApplicationError
from tenants.models import Metric, TenantRole, TenantUser
from tenants.selectors import tenant_active_subscription
from tenants.services.email import EmailDraft, email_queue_many
from tenants.webhooks.events import webhook_emit

logger = logging.getLogger(__name__)

MAX_THRESHOLD = Decimal(10) ** 18


def _threshold(value) -> Decimal:
    try:
        number = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise ApplicationError(f"The threshold must be a number, not {str(value)[:40]!r}.") from None
    if not number.is_finite() or number <= 0:
        raise ApplicationError("The threshold must be a number above 0.")
    if number >= MAX_THRESHOLD or number != number.quantize(Decimal("0.000001")):
        raise ApplicationError("The threshold must be below 10^18, with at most 6 decimal places.")
    return number


def usage_alert_create(*, tenant, kind: str, threshold, metric: Metric | None = None,
                       channel: str = AlertChannel.EMAIL, created_by=None) -> UsageAlert:
    """A new threshold of `tenant`: on `metric`'s quantity (kind "usage") or the projected bill (kind "spend")."""
    if kind not in AlertKind.values:
        raise ApplicationError(f"An alert is on usage or spend, not {kind!r}.")
    if channel not in AlertChannel.values:
        raise ApplicationError(f"An alert is told by email, webhook or both, not {channel!r}.")
    if kind == AlertKind.USAGE and metric is None:
        raise ApplicationError("A usage alert names its metric.")
    if kind == AlertKind.SPEND:
        metric = None
    alert = UsageAlert(tenant=tenant, kind=kind, metric=metric, threshold=_threshold(threshold), channel=channel,
                       created_by=created_by)
    try:
        with transaction.atomic():
            alert.save()
    except IntegrityError:
        raise ApplicationError("This tenant already has that threshold.") from None
    return alert


def usage_alert_delete(*, alert: UsageAlert) -> None:
    alert.delete()


# --- checking ------------------------------------------------------------------------------------------


def alerts_check(*, now: datetime | None = None) -> list[UsageAlertFiring]:
    """Fire every alert whose threshold the current period has reached and that has not fired for it yet;
    returns the firings this call made. Tenants without an active subscription have no period: skipped."""
    now = now or timezone.now()
    by_tenant: dict[int, list[UsageAlert]] = defaultdict(list)
    for alert in UsageAlert.objects.select_related("tenant", "metric").order_by("tenant_id", "pk"):
        by_tenant[alert.tenant_id].append(alert)
    fired = []
    for alerts in by_tenant.values():
        tenant = alerts[0].tenant
        subscription = tenant_active_subscription(tenant=tenant)
        if subscription is None or subscription.started_at > now:
            continue
        start, end = subscription_period(subscription, now)
        seen = _figures(tenant, alerts, start=start, end=end, now=now)
        for alert in alerts:
            value, currency = seen.get(alert.pk, (None, ""))
            if value is not None and value >= alert.threshold:
                firing = _fire(alert, start=start, end=end, value=value, currency=currency, now=now)
                if firing is not None:
                    fired.append(firing)
    return fired


def _figures(tenant, alerts: list[UsageAlert], *, start: datetime, end: datetime,
             now: datetime) -> dict[int, tuple[Decimal, str]]:
    """{alert id: (what it compares, currency)} for the alerts of one tenant over its current period."""
    seen: dict[int, tuple[Decimal, str]] = {}
    metrics = {alert.metric.code: alert.metric for alert in alerts if alert.kind == AlertKind.USAGE}
    if metrics:
        try:
            quantities = period_quantities(subscription_or_tenant=tenant, metrics=list(metrics.values()),
                                           start=start, end=end)
        except LakeError as exc:  # a distinct count the lake could not give: the next sync checks again
            logger.warning("alerts of %s: usage not available (%s)", tenant.slug, exc)
            quantities = {}
        for alert in alerts:
            if alert.kind == AlertKind.USAGE and alert.metric.code in quantities:
                seen[alert.pk] = (quantities[alert.metric.code], "")
    if any(alert.kind == AlertKind.SPEND for alert in alerts):
        try:
            bill = projected_bill(tenant=tenant, as_of=now)
        except LakeError as exc:
            logger.warning("alerts of %s: projected bill not available (%s)", tenant.slug, exc)
            bill = None
        if bill is not None:
            for alert in alerts:
                if alert.kind == AlertKind.SPEND:
                    seen[alert.pk] = (bill.totals.total if bill.totals else bill.total, bill.currency)
    return seen


def _fire(alert: UsageAlert, *, start: datetime, end: datetime, value: Decimal, currency: str,
          now: datetime) -> UsageAlertFiring | None:
    """Record the firing and what it tells, in one transaction; None when it had fired for this period."""
    try:
        with transaction.atomic():
            firing = UsageAlertFiring.objects.create(alert=alert, period_start=start, period_end=end, value=value,
                                                     currency=currency, fired_at=now)
            if alert.emails:
                _email_tenant(alert, firing)
            if alert.webhooks:
                _webhook(alert, firing)
    except IntegrityError:
        return None  # another sync or worker fired it for this period first
    return firing


def alert_description(alert: UsageAlert, firing: UsageAlertFiring | None = None) -> str:
    """In words: "API calls reached 10000 (now 10250)" or "The projected bill reached USD 100.00 (now USD 104.20)"."""
    if alert.kind == AlertKind.USAGE:
        unit = f" {alert.metric.unit}" if alert.metric.unit else ""
        text = f"{alert.metric.name} reached {alert.threshold.normalize():f}{unit}"
        return text + (f" (now {firing.value.normalize():f}{unit})" if firing else "")
    if firing is None:
        return f"The projected bill reached {alert.threshold.normalize():f}"
    return (f"The projected bill reached {format_amount(alert.threshold, firing.currency)} "
            f"{firing.currency} (now {format_amount(firing.value, firing.currency)} {firing.currency})")


def _email_tenant(alert: UsageAlert, firing: UsageAlertFiring) -> None:
    tenant = alert.tenant
    owners = list(TenantUser.objects.filter(tenant=tenant, role=TenantRole.OWNER, is_active=True)
                  .order_by("email").values_list("email", flat=True))
    recipients = owners or ([tenant.contact_email] if tenant.contact_email else [])
    period = f"{local_label(firing.period_start, tenant.zone)} to {local_label(firing.period_end, tenant.zone)}"
    what = alert_description(alert, firing)
    body = (f"Hello {tenant.name},\n\n{what}, in the billing period {period} ({tenant.time_zone} time).\n\n"
            f"This alert tells you once per period. Your dashboard: "
            f"{settings.PORTAL_BASE_URL.rstrip('/')}/tenant/dashboard/\n\n{settings.PROVIDER_NAME}\n")
    email_queue_many(drafts=[EmailDraft(kind="alert", recipient=email, subject=f"{settings.PROVIDER_NAME}: {what}",
                                        body=body, about=firing, tenant=tenant) for email in recipients])


def _webhook(alert: UsageAlert, firing: UsageAlertFiring) -> None:
    """The webhook channel: an outbox event for the tenant's (and the provider's) endpoints."""
    webhook_emit(type="usage.threshold_reached" if alert.kind == AlertKind.USAGE else "spend.threshold_reached",
                 resource=firing, tenant=alert.tenant)


# --- staff notices -------------------------------------------------------------------------------------


def staff_recipients() -> list[str]:
    """ALERTS_STAFF_EMAILS, or else the email of every active staff login that has one."""
    if settings.ALERTS_STAFF_EMAILS:
        return list(settings.ALERTS_STAFF_EMAILS)
    return sorted(set(get_user_model().objects.filter(is_staff=True, is_active=True).exclude(email="")
                      .values_list("email", flat=True)))


def staff_notice(*, kind: str, key: str, subject: str, message: str, now: datetime | None = None,
                 webhook: tuple[str, object] | None = None) -> StaffNotice | None:
    """Tell staff once per (kind, key): by email, and with ``webhook`` (type, resource) the provider's
    endpoints. None when that notice was sent before."""
    now = now or timezone.now()
    try:
        with transaction.atomic():
            notice = StaffNotice.objects.create(kind=kind, key=key[:100], message=message, sent_at=now)
            email_queue_many(drafts=[EmailDraft(kind="staff_notice", recipient=email,
                                                subject=f"{settings.PROVIDER_NAME}: {subject}", body=message)
                                     for email in staff_recipients()])
            if webhook is not None:
                webhook_emit(type=webhook[0], resource=webhook[1], tenant=None)
    except IntegrityError:
        return None
    return notice


def notice_sync_failed(run: SyncRun) -> StaffNotice | None:
    """A failed sync tells staff once per failing streak (the streak is named by the last success)."""
    last_success = (SyncRun.objects.filter(outcome=SyncOutcome.SUCCEEDED, started_at__lt=run.started_at)
                    .order_by("-started_at").values_list("pk", flat=True).first())
    message = (f"The usage sync failed (run {run.pk}, window {run.window_start:%Y-%m-%d %H:%M} to "
               f"{run.window_end:%Y-%m-%d %H:%M} UTC):\n\n{run.error}\n\nThe beat schedule retries it every few "
               f"minutes; usage, dashboards and billing stay as of the last successful sync until it succeeds. "
               f"You are told once until a sync succeeds again.\n\n"
               f"{settings.PORTAL_BASE_URL.rstrip('/')}/admin/metering/syncrun/{run.pk}/change/\n")
    return staff_notice(kind=StaffNoticeKind.SYNC_FAILED, key=f"after-{last_success or 'none'}",
                        subject="the usage sync is failing", message=message, webhook=("sync.failed", run))


def pipeline_late_check(*, now: datetime | None = None) -> StaffNotice | None:
    """Tell staff when the lake has not been synced for PIPELINE_LATE_ALERT_MINUTES (once per stall)."""
    now = now or timezone.now()
    cursor = SyncCursor.objects.filter(name=settings.LAKE_BACKEND).first()
    if cursor is None or cursor.synced_until is None:
        return None  # never synced: nothing is late yet (a first sync starts with the beat)
    late_after = timedelta(minutes=settings.PIPELINE_LATE_ALERT_MINUTES)
    lag = now - cursor.synced_until
    if lag <= late_after:
        return None
    message = (f"Usage is synced only up to {cursor.synced_until:%Y-%m-%d %H:%M} UTC, "
               f"{int(lag.total_seconds() // 60)} minutes behind (PIPELINE_LATE_ALERT_MINUTES is "
               f"{settings.PIPELINE_LATE_ALERT_MINUTES}). Check the worker and its beat schedule, and the sync "
               f"runs in the admin: {settings.PORTAL_BASE_URL.rstrip('/')}/admin/metering/syncrun/\n")
    return staff_notice(kind=StaffNoticeKind.PIPELINE_LATE, key=cursor.synced_until.isoformat(),
                        subject="the usage pipeline is late", message=message, now=now,
                        webhook=("pipeline.late", cursor))
