"""The billing run: bill every closed period that has no invoice yet, then finalize the drafts whose grace
period is over. The beat task (metering.tasks.run_billing), ``manage.py run_billing``, the admin's
"Run billing" button and the demo all call ``billing_run``.

Locking and transactions (the one place this is written):

- Candidates are the subscriptions that started before ``as_of`` and are active or ended within
  LATE_USAGE_HORIZON, in primary-key order, taken BATCH_SIZE (200) at a time.
- Each batch is one transaction. It locks its subscriptions with
  ``select_for_update(skip_locked=True, of=("self",))`` in primary-key order: a subscription another
  worker holds is skipped, left to that worker (or to the next run). Under the lock it reads which
  periods already have a live (not void) invoice, prefetches the batch's usage in one grouped query per
  (metrics, window), and writes one draft per missing closed period, each in a savepoint (a concurrent
  writer's invoice makes ours a no-op). A subscription whose pricing fails (ApplicationError) is
  recorded in the run's errors and the batch carries on; any other error rolls the batch back whole,
  marks the run failed and is raised.
- Finalizing goes the same way: due drafts BATCH_SIZE at a time, one transaction each, locked with
  ``skip_locked``, checked to still be drafts, re-priced (unless this run priced them moments ago),
  numbered from the year's InvoiceSequence row (locked until the batch commits, so numbers have no
  gaps) and their emails recorded in that transaction; a worker sends them once it commits.
- A run that is killed leaves the batches it committed (whole invoices, finalized with their emails
  recorded) and nothing of the open one (the database rolls it back). Its BillingRun row stays
  "running"; the run beats after each batch and each usage prefetch (portal.heartbeat), and the next
  billing run, at its start, marks failed any run whose heartbeat is older than RUN_STALE_AFTER_SECONDS.
- A rerun, or a second run at the same time, bills only the periods without a live invoice and
  finalizes only what is still a draft: each (subscription, period) gets exactly one live invoice (a
  partial unique constraint holds that in the database too). Nothing retries a killed run itself:
  the next one (the beat runs billing every hour) bills the rest.
- On SQLite ``select_for_update`` is a no-op; its writers are serialized by the database lock instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from metering.lake.base import one_line
from metering.models import BillingRun, BillingRunStatus, Invoice, InvoiceStatus
from metering.runs import BILLING_RUNS, beat, heartbeat, runs_fail_stale
from metering.services.billing.catalog import Catalog
from metering.services.billing.invoices import (
    finalize_locked,
    invoice_create,
    next_numbers,
    queue_invoice_emails,
    reprice_draft,
)
from metering.services.billing.late import LATE_USAGE_HORIZON, sent_invoices
from metering.services.billing.order import draw_invoice_credits, plan_credit_grants
from metering.services.billing.periods import (
    closed_periods,
    part_windows,
    period_from_label,
    starts_in_month,
    subscription_period,
    version_at,
)
from portal.kernel import ApplicationError
from tenants.models import Subscription, SubscriptionStatus, zone_named


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

    Safe to run twice, concurrently, or again after a crash (this module's header says how). `sync`
    first syncs usage up to `as_of`, so the periods' last hours are in the hourly rows. `period`
    ('YYYY-MM') limits billing and finalizing to periods that start in that month on the tenant's clock. `finalize_now` skips
    the grace period (the demo, and an operator who knows the data is complete).
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
            catalog = Catalog()
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
            due_pks = list(due.order_by("pk").values_list("pk", flat=True))
            if month:  # the month on each tenant's clock: a day either side in UTC holds every zone's
                due_pks = [pk for pk, start, name in due.filter(
                    period_start__gte=month[0] - timedelta(days=1), period_start__lt=month[1] + timedelta(days=1),
                ).order_by("pk").values_list("pk", "period_start", "tenant__time_zone")
                    if starts_in_month(start, zone_named(name), month)]
            just_priced = {invoice.pk for invoice in created}
            for batch in _batches(due_pks):
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


def _bill_batch(pks: list[int], *, as_of: datetime, month, run: BillingRun, catalog: Catalog,
                errors: list[str]) -> list[Invoice]:
    created = []
    with transaction.atomic():
        # skip_locked: a parallel worker holding some of these subscriptions is billing them; leave them to it.
        subscriptions = list(
            Subscription.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("tenant__tax_rate", "plan_version__plan")
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
            if (not month or starts_in_month(start, subscription.tenant.zone, month)) and (subscription.pk, start) not in live
        ]
        # The batch's usage in one grouped query per (metrics, window), and the invoices already sent
        # (for their late usage) in one query (a year back covers yearly periods).
        wanted: dict[tuple, list] = {}
        for subscription, start, end in todo:
            for _part, spec, window in part_windows(subscription, start, end, catalog):
                if window is not None:
                    wanted.setdefault((spec.metric_codes, window), []).append(subscription.tenant)
        for (codes, window), tenants in wanted.items():
            catalog.prefetch_quantities(tenants, codes, window)
            beat()  # unique_count and max metrics ask the lake per tenant: that can take a while
        sent = sent_invoices(subscriptions, as_of - LATE_USAGE_HORIZON - timedelta(days=366))
        catalog.coupons.load(subscription.pk for subscription in subscriptions)
        plan_credit_grants(_included_credit_periods(subscriptions, todo, as_of, catalog))
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


def _included_credit_periods(subscriptions, todo, as_of: datetime, catalog: Catalog):
    """(subscription, start, end, plan spec) of the periods to bill and of each running subscription's current
    period, for their plans' included credit (granted at the period's start, so the tenant sees it meanwhile)."""
    wanted = {(subscription.pk, start): (subscription, start, end) for subscription, start, end in todo}
    for subscription in subscriptions:
        if subscription.status == SubscriptionStatus.ACTIVE and subscription.started_at <= as_of:
            start, end = subscription_period(subscription, as_of)
            wanted.setdefault((subscription.pk, start), (subscription, start, end))
    for subscription, start, end in wanted.values():
        spec = catalog.spec(version_at(subscription, start))
        if spec.included_credit > 0:
            yield subscription, start, end, spec


def _finalize_batch(pks: list[int], *, at: datetime, just_priced: set[int], catalog: Catalog) -> list[Invoice]:
    with transaction.atomic():
        drafts = list(
            Invoice.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("subscription__tenant__tax_rate", "subscription__plan_version")
            .filter(pk__in=pks, status=InvoiceStatus.DRAFT)
            .order_by("pk")
        )
        numbers = next_numbers(at, len(drafts))
        catalog.coupons.load(invoice.subscription_id for invoice in drafts)
        for invoice in drafts:
            if invoice.pk not in just_priced:
                reprice_draft(invoice, catalog)
        # The batch's credits in one locked read and one write (metering.services.billing.order).
        draw_invoice_credits(drafts, at=at)
        for invoice, number in zip(drafts, numbers, strict=True):
            finalize_locked(invoice, at=at, reprice=False, catalog=catalog, number=number, drawn=True)
        queue_invoice_emails(drafts)
    return drafts
