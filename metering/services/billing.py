"""Billing: price each subscription's closed periods into invoices, exactly once, and finalize them after a grace period.

The rules (docs/plans.md, "A period's invoice"):
- A period is closed when it has ended, or when the subscription ended inside it; it is billed on
  one invoice (a partial constraint makes a second live invoice for the same period impossible).
- Each subscription is billed in its own short transaction, holding its row lock
  (``select_for_update(skip_locked=True)``), so parallel workers claim different subscriptions and a
  run that dies half way leaves whole invoices behind; a rerun bills only what is missing.
- A new invoice is a draft until ``BILLING_GRACE_PERIOD_MINUTES`` have passed; finalizing re-prices it
  with the usage known then (late records count), numbers it and emails the tenant.
- Usage that arrives for a period after its invoice was finalized is billed on the next invoice of the
  subscription as a separate "late usage" line that points at the invoice it belongs to.
- Trials: nothing is billed before the trial ends (usage before it is not counted). A plan change
  splits the period into segments, each priced under its own plan version. A cancellation ends the
  subscription: its last period is billed up to the end, prorated. A suspension does not stop the
  subscription: the base fee keeps running (the metered API refuses the tenant's calls meanwhile),
  as the provider would expect of a suspension for non-payment.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q, Sum
from django.template.loader import render_to_string
from django.utils import timezone

from metering.lake.base import one_line
from metering.models import (
    BillingRun,
    BillingRunStatus,
    Invoice,
    InvoiceLine,
    InvoiceSequence,
    InvoiceStatus,
    LineType,
)
from metering.pricing import (
    PricedPeriod,
    Segment,
    anniversary_period,
    calendar_period,
    format_amount,
    price_charge,
    price_period,
    tier_breakdown,
    tiers_document,
)
from metering.runs import BILLING_RUNS, beat, heartbeat, runs_fail_stale
from metering.selectors import period_quantities_many
from metering.services.sync import ceil_hour, floor_hour
from portal.kernel import ApplicationError
from tenants.models import BillingCycle, EmailKind, Metric, PlanVersion, Subscription, SubscriptionStatus
from tenants.services.email import EmailDraft, email_deliveries_cancel, email_queue_many

logger = logging.getLogger(__name__)

# How far back finalized invoices are checked for late usage.
LATE_USAGE_HORIZON = timedelta(days=92)


# --- periods ---------------------------------------------------------------------------------------


def subscription_period(subscription: Subscription, at: datetime, interval: str | None = None) -> tuple[datetime, datetime]:
    """The billing period of `subscription` that contains `at` (calendar or anniversary cycle)."""
    interval = interval or subscription.plan_version.interval
    if subscription.billing_cycle == BillingCycle.ANNIVERSARY:
        return anniversary_period(subscription.started_at, at, interval)
    return calendar_period(at, interval)


def closed_periods(subscription: Subscription, as_of: datetime) -> list[tuple[datetime, datetime]]:
    """Every period of the subscription that is over at `as_of` (its end passed, or the subscription ended in it)."""
    periods = []
    interval = _version_at(subscription, subscription.started_at).interval
    start, end = subscription_period(subscription, subscription.started_at, interval)
    while start < as_of:
        if subscription.ends_at is not None and start >= subscription.ends_at:
            break
        closes_at = min(end, subscription.ends_at) if subscription.ends_at else end
        if closes_at > as_of:
            break
        periods.append((start, end))
        start, end = subscription_period(subscription, end, interval)
    return periods


def period_from_label(label: str) -> tuple[datetime, datetime]:
    """'2026-10' -> the bounds of that calendar month (UTC); ApplicationError when malformed."""
    try:
        year, month = (int(part) for part in label.split("-"))
        start = datetime(year, month, 1, tzinfo=UTC)
    except ValueError:
        raise ApplicationError(f"--period {label!r} is not a month like 2026-10") from None
    return calendar_period(start)


# --- segments and quantities -----------------------------------------------------------------------


def _versions_timeline(subscription: Subscription) -> list[tuple[datetime, PlanVersion]]:
    """(from, version) pairs in time order: the plan version in force from each instant (memoized on the instance)."""
    cached = getattr(subscription, "_timeline", None)
    if cached is not None:
        return cached
    # .all() uses prefetch_related("changes__...") when the caller prefetched; sorted here so it works either way.
    changes = sorted(subscription.changes.all(), key=lambda change: change.changed_at)
    first = changes[0].from_version if changes else subscription.plan_version
    timeline = [(subscription.started_at, first)]
    timeline.extend((change.changed_at, change.to_version) for change in changes)
    subscription._timeline = timeline
    return timeline


def _version_at(subscription: Subscription, at: datetime) -> PlanVersion:
    version = None
    for since, candidate in _versions_timeline(subscription):
        if since <= at or version is None:
            version = candidate
    return version


@dataclass(frozen=True)
class _Part:
    version: PlanVersion
    start: datetime
    end: datetime


def _parts(subscription: Subscription, start: datetime, end: datetime) -> list[_Part]:
    """The plan versions in force over [start, end), clipped to the subscription's active span."""
    active_start = max(start, subscription.started_at)
    active_end = min(end, subscription.ends_at) if subscription.ends_at else end
    timeline = _versions_timeline(subscription)
    parts = []
    for index, (since, version) in enumerate(timeline):
        until = timeline[index + 1][0] if index + 1 < len(timeline) else active_end
        part_start, part_end = max(since, active_start), min(until, active_end)
        if part_end > part_start:
            parts.append(_Part(version, part_start, part_end))
    return parts


class _Catalog:
    """What a billing run reads once instead of once per subscription: metrics and parsed plan versions."""

    def __init__(self):
        self.metrics = {metric.code: metric for metric in Metric.objects.all()}
        self._specs: dict[int, object] = {}
        self._quantities: dict[tuple, dict[str, Decimal]] = {}

    def spec(self, version: PlanVersion):
        if version.pk not in self._specs:
            self._specs[version.pk] = version.to_spec()
        return self._specs[version.pk]

    def metric_names(self) -> dict[str, str]:
        return {code: metric.name for code, metric in self.metrics.items()}

    def prefetch_quantities(self, tenants, codes: tuple[str, ...], window: tuple[datetime, datetime]) -> None:
        """Fetch the quantities of many tenants over one window at once, for quantities() to hand out."""
        found = period_quantities_many(
            tenants=tenants, metrics=[self.metrics[code] for code in codes], start=window[0], end=window[1]
        )
        for tenant_id, quantities in found.items():
            self._quantities[(tenant_id, codes, window)] = quantities

    def quantities(self, tenant, codes: tuple[str, ...], window: tuple[datetime, datetime]) -> dict[str, Decimal]:
        # Prefetched figures are handed out once, so a later pricing of the same window reads fresh usage.
        found = self._quantities.pop((tenant.pk, codes, window), None)
        if found is None:
            self.prefetch_quantities([tenant], codes, window)
            found = self._quantities.pop((tenant.pk, codes, window))
        return found


def _usage_window(subscription: Subscription, part: _Part) -> tuple[datetime, datetime]:
    """The hours whose usage a part counts.

    Usage is kept per hour, so boundaries are moved to whole hours: every boundary down to the hour
    that contains it (an hour belongs to the part in force when it began, so adjacent parts and
    periods share no hour), except the subscription's end, moved up so that the calls of its last
    partial hour are billed. The first partial hour of a subscription (or after its trial) counts too.
    """
    start = max(part.start, subscription.trial_ends_at) if subscription.trial_ends_at else part.start
    end = ceil_hour(part.end) if subscription.ends_at and part.end >= subscription.ends_at else floor_hour(part.end)
    return floor_hour(start), end


def _part_windows(subscription: Subscription, start: datetime, end: datetime, catalog: _Catalog):
    """(part, plan spec, usage window) for each part of the period; the window is None for trial time."""
    trial_end = subscription.trial_ends_at
    for part in _parts(subscription, start, end):
        window = _usage_window(subscription, part)
        if (trial_end and trial_end >= part.end) or window[0] >= window[1]:
            window = None  # the whole part is trial time: no usage is counted
        yield part, catalog.spec(part.version), window


def _segments(subscription: Subscription, start: datetime, end: datetime, catalog: _Catalog) -> list[Segment]:
    return [
        Segment(spec, part.start, part.end,
                {} if window is None else catalog.quantities(subscription.tenant, spec.metric_codes, window))
        for part, spec, window in _part_windows(subscription, start, end, catalog)
    ]


def price_subscription_period(
    subscription: Subscription, start: datetime, end: datetime, catalog: _Catalog | None = None
) -> PricedPeriod:
    """Price one period of a subscription with the usage known now (the billing run and the projection)."""
    segments = _segments(subscription, start, end, catalog or _Catalog())
    if not segments:
        raise ApplicationError(f"subscription {subscription.pk} was not active between {start} and {end}")
    return price_period(segments, period_start=start, period_end=end, trial_end=subscription.trial_ends_at)


# --- invoices --------------------------------------------------------------------------------------


def _with_metric_names(priced: PricedPeriod, metric_names: dict[str, str]) -> PricedPeriod:
    """The priced period with usage lines described by their metric's name and charge model, as on invoices
    (the engine, being pure code, knows only metric codes)."""
    return replace(priced, lines=tuple(
        replace(line, description=f"{metric_names.get(line.metric, line.metric)} ({line.model})")
        if line.type == LineType.USAGE and line.metric else line
        for line in priced.lines
    ))


def _line_rows(priced: PricedPeriod) -> list[dict]:
    rows = []
    for line in priced.lines:
        tiers = [] if line.charge is None else tiers_document(
            tier_breakdown(line.charge, line.quantity, priced.currency), priced.currency)
        rows.append({
            "type": line.type,
            "description": line.description,
            "plan_code": line.plan,
            "metric_code": line.metric or "",
            "model": line.model or "",
            "quantity": line.quantity,
            "unit_amount": line.unit_amount,
            "amount": line.amount,
            "tiers": tiers,
            "period_start": line.period_start or priced.period_start,
            "period_end": line.period_end or priced.period_end,
            "adjusts": None,
        })
    return rows


def _billed_quantities(invoice: Invoice) -> dict[str, Decimal]:
    """What an invoice (with the late lines that adjusted it since) billed per metric."""
    billed: dict[str, Decimal] = {}
    for code, total in (
        InvoiceLine.objects.filter(Q(invoice=invoice, type=LineType.USAGE) | Q(adjusts=invoice))
        # Only what was sent counts as billed: a draft's late lines are recomputed when it is finalized.
        .filter(invoice__status__in=[InvoiceStatus.FINALIZED, InvoiceStatus.PAID])
        .values_list("metric_code")
        .annotate(total=Sum("quantity"))
    ):
        billed[code] = total or Decimal(0)
    return billed


def _sent_invoices(subscriptions, since: datetime) -> dict[int, list[Invoice]]:
    """Finalized and paid invoices of these subscriptions whose period ended after `since`, per subscription."""
    sent: dict[int, list[Invoice]] = {subscription.pk: [] for subscription in subscriptions}
    for invoice in Invoice.objects.filter(
        subscription__in=list(sent), status__in=[InvoiceStatus.FINALIZED, InvoiceStatus.PAID], period_end__gt=since
    ).order_by("period_start"):
        sent[invoice.subscription_id].append(invoice)
    return sent


def _late_usage_rows(
    subscription: Subscription, before: datetime, catalog: _Catalog, sent: list[Invoice] | None = None
) -> list[dict]:
    """Lines for usage that reached the portal after the invoice of its period was finalized.

    `sent`: the subscription's sent invoices when the caller fetched them for a whole batch.
    """
    rows = []
    if sent is None:
        sent = _sent_invoices([subscription], before - LATE_USAGE_HORIZON)[subscription.pk]
    earlier = [invoice for invoice in sent if before - LATE_USAGE_HORIZON < invoice.period_end <= before]
    for invoice in earlier:
        segments = _segments(subscription, invoice.period_start, invoice.period_end, catalog)
        if not segments:
            continue
        now_quantities: dict[str, Decimal] = {}
        charges = {}
        for segment in segments:
            for charge in segment.plan.charges:
                charges[charge.metric] = (charge, segment.plan)
                now_quantities[charge.metric] = now_quantities.get(charge.metric, Decimal(0)) + segment.quantities.get(
                    charge.metric, Decimal(0)
                )
        billed = _billed_quantities(invoice)
        names = catalog.metric_names()
        for code, quantity in now_quantities.items():
            delta = quantity - billed.get(code, Decimal(0))
            if delta <= 0:
                continue
            charge, plan = charges[code]
            # Priced at the margin under the plan of the period's end: what the total would have been, less what was billed.
            amount = price_charge(charge, quantity, plan.currency) - price_charge(charge, billed.get(code, Decimal(0)), plan.currency)
            rows.append({
                "type": LineType.LATE_USAGE,
                "description": f"Late usage for {invoice.number} ({invoice.period_start:%Y-%m-%d} to "
                f"{invoice.period_end:%Y-%m-%d}): {names.get(code, code)}",
                "plan_code": plan.code,
                "metric_code": code,
                "model": charge.model,
                "quantity": delta,
                "unit_amount": charge.unit_amount if charge.model == "per_unit" else None,
                "amount": max(amount, Decimal(0)),
                "period_start": invoice.period_start,
                "period_end": invoice.period_end,
                "adjusts": invoice,
            })
    return rows


def _invoice_rows(
    subscription: Subscription, start: datetime, end: datetime, catalog: _Catalog, sent: list[Invoice] | None = None
) -> tuple[str, list[dict]]:
    """(currency, line rows) of one period: the priced period, then late usage of earlier periods."""
    priced = price_subscription_period(subscription, start, end, catalog)
    late = _late_usage_rows(subscription, start + timedelta(seconds=1), catalog, sent)
    rows = _line_rows(_with_metric_names(priced, catalog.metric_names())) + late
    return priced.currency, rows


def _write_lines(invoice: Invoice, rows: list[dict], *, replace: bool) -> None:
    if replace:
        invoice.lines.all().delete()
    InvoiceLine.objects.bulk_create(
        InvoiceLine(invoice=invoice, position=position, **row) for position, row in enumerate(rows, start=1)
    )


def _total(rows: list[dict]) -> Decimal:
    return sum((row["amount"] for row in rows), Decimal(0))


def _price_into(invoice: Invoice, catalog: _Catalog) -> None:
    """Re-price a draft in place (its lines are replaced)."""
    invoice.currency, rows = _invoice_rows(invoice.subscription, invoice.period_start, invoice.period_end, catalog)
    invoice.total = _total(rows)
    _write_lines(invoice, rows, replace=True)


def invoice_create(
    *, subscription: Subscription, period_start: datetime, period_end: datetime, as_of: datetime,
    billing_run: BillingRun | None = None, replaces: Invoice | None = None, catalog: _Catalog | None = None,
    checked: bool = False, sent: list[Invoice] | None = None,
) -> Invoice | None:
    """Write the draft invoice of one period, or return None when a live one exists already.

    `checked`: the caller holds the subscription's lock and knows there is no live invoice yet.
    """
    if not checked and Invoice.objects.filter(subscription=subscription, period_start=period_start).exclude(
        status=InvoiceStatus.VOID
    ).exists():
        return None
    currency, rows = _invoice_rows(subscription, period_start, period_end, catalog or _Catalog(), sent)
    invoice = Invoice(
        tenant_id=subscription.tenant_id, subscription=subscription, period_start=period_start,
        period_end=period_end, currency=currency, total=_total(rows), billing_run=billing_run,
        finalize_after=as_of + timedelta(minutes=settings.BILLING_GRACE_PERIOD_MINUTES), replaces=replaces,
    )
    try:
        with transaction.atomic():
            invoice.save()
            _write_lines(invoice, rows, replace=False)
    except IntegrityError:
        # Another worker wrote this period's invoice between our check and our insert.
        if Invoice.objects.filter(subscription=subscription, period_start=period_start).exclude(
            status=InvoiceStatus.VOID
        ).exists():
            return None
        raise
    return invoice


def _next_numbers(at: datetime, count: int) -> list[str]:
    """`count` consecutive invoice numbers of `at`'s year; the counter stays locked until the caller commits."""
    if count == 0:
        return []
    prefix = settings.INVOICE_NUMBER_PREFIX
    sequence = InvoiceSequence.objects.select_for_update().filter(prefix=prefix, year=at.year).first()
    if sequence is None:  # the year's first invoice: create the counter, tolerating a concurrent creator
        InvoiceSequence.objects.bulk_create([InvoiceSequence(prefix=prefix, year=at.year)], ignore_conflicts=True)
        sequence = InvoiceSequence.objects.select_for_update().get(prefix=prefix, year=at.year)
    first = sequence.last_number + 1
    sequence.last_number += count
    sequence.save(update_fields=["last_number"])
    return [f"{prefix}-{at.year}-{n:06d}" for n in range(first, first + count)]


def invoice_finalize(
    *, invoice: Invoice, at: datetime | None = None, reprice: bool = True, catalog: _Catalog | None = None
) -> Invoice:
    """Re-price a draft with the usage known now, number it and send it to the tenant's billing contact.

    `reprice=False` is for a draft priced moments ago by the same run (finalize_now), to not price it twice.
    """
    at = at or timezone.now()
    with transaction.atomic():
        locked = (
            Invoice.objects.select_for_update(of=("self",))
            .select_related("subscription__tenant", "subscription__plan_version")
            .get(pk=invoice.pk)
        )
        if locked.status != InvoiceStatus.DRAFT:
            return locked  # finalized by someone else: nothing to do
        _finalize_locked(locked, at=at, reprice=reprice, catalog=catalog or _Catalog())
        _queue_invoice_emails([locked])
    return locked


def payment_terms_days(invoice: Invoice) -> int:
    """The days a tenant has to pay this invoice: INVOICE_PAYMENT_TERMS_DAYS for every tenant (the one place
    where per-tenant terms would be looked up)."""
    return settings.INVOICE_PAYMENT_TERMS_DAYS


def due_date_for(issued_at: datetime, terms_days: int) -> date:
    """The issue date (UTC) plus the payment terms."""
    return issued_at.astimezone(UTC).date() + timedelta(days=terms_days)


def _finalize_locked(invoice: Invoice, *, at: datetime, reprice: bool, catalog: _Catalog, number: str | None = None) -> None:
    """Finalize a draft whose row the caller has locked, inside the caller's transaction (which queues its email).

    The payment terms and the due date are fixed here, with the number: a later change of the terms applies
    to invoices finalized after it, never to one already sent."""
    if reprice:
        _price_into(invoice, catalog)
    invoice.number = number or _next_numbers(at, 1)[0]
    invoice.status = InvoiceStatus.FINALIZED
    invoice.finalized_at = at
    invoice.payment_terms_days = payment_terms_days(invoice)
    invoice.due_date = due_date_for(at, invoice.payment_terms_days)
    invoice.save()


def _queue_invoice_emails(invoices: list[Invoice]) -> None:
    """Record the email of each just-finalized invoice in the caller's transaction (so no invoice is
    finalized without its email); a worker sends them once it commits, retrying while the mail server is down."""
    if not invoices:
        return
    lines: dict[int, list[InvoiceLine]] = {invoice.pk: [] for invoice in invoices}
    for line in InvoiceLine.objects.filter(invoice__in=list(lines)).order_by("invoice_id", "position"):
        lines[line.invoice_id].append(line)
    drafts = []
    for invoice in invoices:
        invoice.tenant = tenant = invoice.subscription.tenant  # loaded with the subscription: no query each
        context = {"invoice": invoice, "total": format_amount(invoice.total, invoice.currency),
                   "lines": [(line.description, format_amount(line.amount, invoice.currency)) for line in lines[invoice.pk]],
                   "provider_name": settings.PROVIDER_NAME,
                   "url": settings.PORTAL_BASE_URL.rstrip("/") + invoice.get_absolute_url()}
        drafts.append(EmailDraft(
            kind=EmailKind.INVOICE, recipient=tenant.contact_email, tenant=tenant, about=invoice,
            subject=f"{settings.PROVIDER_NAME} invoice {invoice.number}",
            body=render_to_string("metering/invoice_email.txt", context),
        ))
    email_queue_many(drafts=drafts)


def invoice_mark_paid(*, invoice: Invoice, at: datetime | None = None) -> Invoice:
    with transaction.atomic():
        locked = Invoice.objects.select_for_update().get(pk=invoice.pk)
        if locked.status == InvoiceStatus.PAID:
            return locked
        if locked.status != InvoiceStatus.FINALIZED:
            raise ApplicationError(f"Only a finalized invoice can be paid ({locked} is {locked.status}).")
        locked.status = InvoiceStatus.PAID
        locked.paid_at = at or timezone.now()
        locked.save()
    return locked


def invoice_void(*, invoice: Invoice, reason: str = "", at: datetime | None = None) -> Invoice:
    with transaction.atomic():
        locked = Invoice.objects.select_for_update().get(pk=invoice.pk)
        if locked.status == InvoiceStatus.VOID:
            return locked
        if locked.status != InvoiceStatus.FINALIZED:
            raise ApplicationError(
                f"Only a finalized invoice can be voided ({locked} is {locked.status}); a draft is re-priced when finalized."
            )
        locked.status = InvoiceStatus.VOID
        locked.voided_at = at or timezone.now()
        locked.void_reason = reason
        locked.save()
        # Not sent yet (mail server down): a voided invoice is no longer worth sending.
        email_deliveries_cancel(about=locked, reason=f"Invoice {locked.number} was voided before its email went out.")
    return locked


def invoice_reissue(*, invoice: Invoice, reason: str = "", at: datetime | None = None) -> Invoice:
    """Void a finalized invoice and issue a draft replacement for the same period, pointing to it."""
    at = at or timezone.now()
    with transaction.atomic():
        voided = invoice_void(invoice=invoice, reason=reason or "reissued", at=at)
        existing = Invoice.objects.filter(replaces=voided).first()
        if existing is not None:
            return existing
        replacement = invoice_create(
            subscription=voided.subscription, period_start=voided.period_start, period_end=voided.period_end,
            as_of=at, replaces=voided,
        )
        if replacement is None:
            raise ApplicationError(f"A live invoice for this period exists already; {voided.number} was voided.")
    return replacement


# --- the run ---------------------------------------------------------------------------------------


@dataclass
class BillingResult:
    run: BillingRun
    created: list[Invoice]
    finalized: list[Invoice]


def _sync_before_billing(as_of: datetime) -> None:
    """A final usage sync over the last hours, so the period's end is in the hourly rows."""
    from metering.services.sync import usage_sync

    usage_sync(end=as_of, triggered_by="billing")


BATCH_SIZE = 200  # subscriptions (or drafts) per transaction: fewer commits, and a crash loses one batch at most


def billing_run(
    *, as_of: datetime | None = None, period: str | None = None, finalize_now: bool = False,
    sync: bool = True, triggered_by: str = "",
) -> BillingResult:
    """Bill every closed period that has no invoice yet, then finalize the drafts whose grace period is over.

    Safe to run twice, concurrently, or again after a crash: each (subscription, period) gets exactly
    one live invoice. Work goes in batches, each one transaction holding its rows' locks
    (``skip_locked``: a parallel worker takes other rows); a batch that dies is rolled back whole and
    billed by the next run. `period` ('YYYY-MM') limits billing to periods that start in that month.
    `finalize_now` skips the grace period (the demo, and an operator who knows the data is complete).
    """
    as_of = as_of or timezone.now()
    month = period_from_label(period) if period else None
    run = BillingRun.objects.create(as_of=as_of, period=period or "", triggered_by=triggered_by,
                                    heartbeat_at=timezone.now())
    # A run whose worker was killed stays "running" until someone notices: this run does. What it billed
    # is committed batch by batch, so this run simply bills the rest.
    runs_fail_stale(kind=BILLING_RUNS, by=f"billing run {run.pk}")
    created: list[Invoice] = []
    finalized: list[Invoice] = []
    errors: list[str] = []
    with heartbeat(run):
        try:
            if sync:
                _sync_before_billing(as_of)
            catalog = _Catalog()
            candidates = list(
                Subscription.objects.filter(started_at__lt=as_of)
                .filter(Q(status=SubscriptionStatus.ACTIVE) | Q(ends_at__gt=as_of - LATE_USAGE_HORIZON))
                .order_by("pk")
                .values_list("pk", flat=True)
            )
            run.subscriptions_seen = len(candidates)
            for batch in _batches(candidates):
                created.extend(_bill_batch(batch, as_of=as_of, month=month, run=run, catalog=catalog, errors=errors))
                beat()
            due = Invoice.objects.filter(status=InvoiceStatus.DRAFT)
            if not finalize_now:
                due = due.filter(finalize_after__lte=as_of)
            if month:
                due = due.filter(period_start__gte=month[0], period_start__lt=month[1])
            just_priced = {invoice.pk for invoice in created}
            for batch in _batches(list(due.order_by("pk").values_list("pk", flat=True))):
                finalized.extend(_finalize_batch(batch, at=as_of, just_priced=just_priced, catalog=catalog))
                beat()
        except Exception as exc:
            run.status = BillingRunStatus.FAILED
            run.errors = "\n".join([*errors, one_line(f"{type(exc).__name__}: {exc}")])
            run.finished_at = run.heartbeat_at = timezone.now()
            run.invoices_created, run.invoices_finalized = len(created), len(finalized)
            run.save()
            raise
    run.status = BillingRunStatus.DONE if not errors else BillingRunStatus.FAILED
    run.errors = "\n".join(errors)
    run.invoices_created, run.invoices_finalized = len(created), len(finalized)
    run.finished_at = run.heartbeat_at = timezone.now()
    run.save()
    return BillingResult(run, created, finalized)


def _batches(pks: list[int]):
    for index in range(0, len(pks), BATCH_SIZE):
        yield pks[index:index + BATCH_SIZE]


def _bill_batch(pks: list[int], *, as_of: datetime, month, run: BillingRun, catalog: _Catalog,
                errors: list[str]) -> list[Invoice]:
    created = []
    with transaction.atomic():
        # skip_locked: a parallel worker holding some of these subscriptions is billing them; leave them to it.
        subscriptions = list(
            Subscription.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("tenant", "plan_version__plan")
            .prefetch_related("changes__from_version", "changes__to_version")
            .filter(pk__in=pks)
            .order_by("pk")
        )
        live = set(
            Invoice.objects.filter(subscription__in=subscriptions)
            .exclude(status=InvoiceStatus.VOID)
            .values_list("subscription_id", "period_start")
        )
        todo = [
            (subscription, start, end)
            for subscription in subscriptions
            for start, end in closed_periods(subscription, as_of)
            if (not month or month[0] <= start < month[1]) and (subscription.pk, start) not in live
        ]
        # The batch's usage in one grouped query per (metrics, window), and the invoices already sent
        # (for their late usage) in one query (a year back covers yearly periods).
        wanted: dict[tuple, list] = {}
        for subscription, start, end in todo:
            for _part, spec, window in _part_windows(subscription, start, end, catalog):
                if window is not None:
                    wanted.setdefault((spec.metric_codes, window), []).append(subscription.tenant)
        for (codes, window), tenants in wanted.items():
            catalog.prefetch_quantities(tenants, codes, window)
            beat()  # unique_count and max metrics ask the lake per tenant: that can take a while
        sent = _sent_invoices(subscriptions, as_of - LATE_USAGE_HORIZON - timedelta(days=366))
        for subscription, start, end in todo:
            try:
                invoice = invoice_create(subscription=subscription, period_start=start, period_end=end,
                                         as_of=as_of, billing_run=run, catalog=catalog, checked=True,
                                         sent=sent[subscription.pk])
            except ApplicationError as exc:  # raised before any write for this subscription
                errors.append(f"subscription {subscription.pk}: {exc.message}")
                continue
            if invoice is not None:
                created.append(invoice)
    return created


def _finalize_batch(pks: list[int], *, at: datetime, just_priced: set[int], catalog: _Catalog) -> list[Invoice]:
    with transaction.atomic():
        drafts = list(
            Invoice.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("subscription__tenant", "subscription__plan_version")
            .filter(pk__in=pks, status=InvoiceStatus.DRAFT)
            .order_by("pk")
        )
        numbers = _next_numbers(at, len(drafts))
        for invoice, number in zip(drafts, numbers, strict=True):
            _finalize_locked(invoice, at=at, reprice=invoice.pk not in just_priced, catalog=catalog, number=number)
        _queue_invoice_emails(drafts)
    return drafts


# --- the projection --------------------------------------------------------------------------------


def projected_bill(*, tenant, as_of: datetime | None = None) -> PricedPeriod | None:
    """The tenant's upcoming invoice: the current period priced on its usage so far (None without a subscription)."""
    as_of = as_of or timezone.now()
    subscription = (
        Subscription.objects.filter(tenant=tenant, status=SubscriptionStatus.ACTIVE)
        .select_related("tenant", "plan_version__plan")
        .first()
    )
    if subscription is None or subscription.started_at > as_of:
        return None
    start, end = subscription_period(subscription, as_of)
    catalog = _Catalog()
    return _with_metric_names(price_subscription_period(subscription, start, end, catalog), catalog.metric_names())
