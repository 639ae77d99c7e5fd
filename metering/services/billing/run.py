"""The billing run: bill every closed period that has no invoice yet, then finalize the drafts whose grace
period is over. The beat task (metering.tasks.run_billing) spreads a run over Celery workers;
``manage.py run_billing``, the admin's "Run billing" button and the demo run it in their own process
(``billing_run``). Both go through the same three steps:

1. ``billing_run_start`` records the BillingRun, marks failed the runs whose worker died, makes the final
   usage sync, lists the candidates and splits them into chunks (BillingRunChunk): ranges of subscription
   ids of BILLING_CHUNK_SIZE (500) candidates each, in id order. The ranges cover every id (the first starts at 0,
   the last has no upper bound), so each draft to finalize belongs to exactly one chunk.
2. ``billing_run_work`` is one worker's loop: take a chunk, bill its subscriptions, finalize its due drafts,
   mark it done; again until none is left to take. The beat task queues one such task per chunk on its own
   queue, so any number of workers, on any machines, share the chunks; one worker alone takes them all.
3. When a worker finds every chunk done (or failed), it settles the run: status, counts and errors are the
   chunks' sums. Two workers settling at once write the same figures.

Locking and transactions (the one place this is written):

- A chunk is taken in a short transaction: ``SELECT ... FOR UPDATE SKIP LOCKED`` on the first chunk that is
  pending, or running with a heartbeat older than RUN_STALE_AFTER_SECONDS (its worker died, or stalled),
  then an update that bumps its ``attempts`` only if they did not change (compare-and-set: the fallback
  that makes the claim exclusive on SQLite, where ``select_for_update`` is a no-op and writers are
  serialized by the database lock). ``attempts`` is the worker's token: each batch it commits bumps the
  chunk's counters on the condition that the token is still its own, so a stalled worker whose chunk was
  taken again rolls its open batch back and stops. A chunk taken MAX_ATTEMPTS times is failed instead of
  taken again (a subscription that kills its worker must not kill them all).
- Candidates are the subscriptions that started before ``as_of`` and are active or ended within
  LATE_USAGE_HORIZON, in primary-key order, taken BATCH_SIZE (200) at a time within the chunk.
- Each batch is one transaction. It locks its subscriptions with ``select_for_update(of=("self",))`` in
  primary-key order (waiting for a concurrent run that holds one, then seeing its invoice). Under the lock
  it reads which periods already have a live (not void) invoice, prefetches the batch's usage in one
  grouped query per (metrics, window), and writes one draft per missing closed period, each in a savepoint
  (a concurrent writer's invoice makes ours a no-op). A subscription whose pricing fails (ApplicationError)
  is recorded in the chunk's errors and the batch carries on; any other error rolls the batch back whole,
  fails the chunk (and so the run) and is raised.
- A batch's drafts are written with one statement each for the invoices, their lines and their discounts
  (invoices_create_locked; a COPY on PostgreSQL, see tenants.bulk); the enabled webhook endpoints are read
  once per batch.
- Finalizing goes the same way, per chunk: its due drafts BATCH_SIZE at a time, one transaction each,
  locked with ``skip_locked``, checked to still be drafts, re-priced (unless this worker priced them
  moments ago), the batch's credits drawn, then numbered from the year's InvoiceSequence row (locked from
  then until the batch commits, so numbers have no gaps, and workers wait for each other only there), the
  rows written in one statement (an UPDATE ... FROM VALUES on PostgreSQL), and their webhooks and emails
  recorded in that transaction (the emails in one statement too); a worker sends them once it commits.
- A worker that is killed leaves the batches it committed (whole invoices, finalized with their emails
  recorded) and nothing of the open one (the database rolls it back). Its chunk stays "running" and its
  heartbeat ages; another worker takes it again (a worker with nothing left to take while chunks are
  running elsewhere queues a check of the run every beat interval) and bills the rest. A run all of whose
  workers died stops beating and is marked failed by the next run or the periodic check, and the next run
  (the beat bills every hour) bills the rest.
- A rerun, or a second run at the same time, bills only the periods without a live invoice and
  finalizes only what is still a draft: each (subscription, period) gets exactly one live invoice (a
  partial unique constraint holds that in the database too).
"""

from __future__ import annotations

import gc
import logging
import os
import socket
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q, Sum
from django.utils import timezone

from metering.lake.base import one_line
from metering.models import (
    BillingChunkStatus,
    BillingRun,
    BillingRunChunk,
    BillingRunStatus,
    Invoice,
    InvoiceStatus,
)
from metering.runs import BILLING_RUNS, beat, beat_interval, heartbeat, runs_fail_stale, stale_cutoff
from metering.services.billing.catalog import Catalog
from metering.services.billing.invoices import (
    finalize_locked,
    invoices_create_locked,
    invoices_save_finalized,
    next_numbers,
    queue_invoice_emails,
    reprice_draft,
)
from metering.services.billing.late import LATE_USAGE_HORIZON, sent_invoices
from metering.services.billing.order import draw_invoice_credits, plan_credit_grants
from metering.services.billing.periods import (
    closed_periods,
    load_timelines,
    part_windows,
    period_from_label,
    starts_in_month,
    subscription_period,
    version_at,
)
from tenants.models import PlanVersion, Subscription, SubscriptionStatus, zone_named
from tenants.webhooks.events import endpoints_read_once

logger = logging.getLogger(__name__)

# The collector's youngest generation is collected after 700 net allocations by default; a billing batch
# allocates some 100,000 objects that live until it commits (rows, instances, Decimals), so they were traversed
# again and again and pushed to the old generations, whose full collections then grew with the heap (a sixth
# of a worker's CPU at 10,000 subscriptions). During a run the youngest is collected every 50,000 instead:
# a few tens of MB of garbage at most.
GC_YOUNG_THRESHOLD = 50_000

BATCH_SIZE = 200  # subscriptions (or drafts) per transaction: fewer commits, and a crash loses one batch at most
MAX_ATTEMPTS = 3  # a chunk taken this many times is failed rather than taken again

_OPEN = (BillingChunkStatus.PENDING, BillingChunkStatus.RUNNING)


@dataclass
class BillingResult:
    run: BillingRun
    created: list[Invoice]
    finalized: list[Invoice]


@dataclass
class WorkResult:
    """What one worker's loop did: the chunks it completed, and whether the run is settled now, or is waiting
    for chunks other workers hold (``waiting``: someone must look again, in case one of them died)."""

    chunks: int = 0
    settled: bool = False
    waiting: bool = False
    created: list[Invoice] = field(default_factory=list)
    finalized: list[Invoice] = field(default_factory=list)


class ChunkTakenOver(Exception):
    """The chunk was taken again by another worker (this one was taken for dead): stop working on it."""


def _sync_before_billing(as_of: datetime) -> None:
    """A final usage sync over the last hours, so the period's end is in the hourly rows."""
    from metering.services.sync import usage_sync

    usage_sync(end=as_of, triggered_by="billing")


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _candidates(as_of: datetime):
    return (
        Subscription.objects.filter(started_at__lt=as_of)
        .filter(Q(status=SubscriptionStatus.ACTIVE) | Q(ends_at__gt=as_of - LATE_USAGE_HORIZON))
        .order_by("pk")
    )


def billing_run(
    *, as_of: datetime | None = None, period: str | None = None, finalize_now: bool = False,
    sync: bool = True, triggered_by: str = "",
) -> BillingResult:
    """Bill every closed period that has no invoice yet, then finalize the drafts whose grace period is over,
    in this process (it takes every chunk itself).

    Safe to run twice, concurrently, or again after a crash (this module's header says how). `sync`
    first syncs usage up to `as_of`, so the periods' last hours are in the hourly rows. `period`
    ('YYYY-MM') limits billing and finalizing to periods that start in that month on the tenant's clock. `finalize_now` skips
    the grace period (the demo, and an operator who knows the data is complete).
    """
    run = billing_run_start(as_of=as_of, period=period, finalize_now=finalize_now, sync=sync,
                            triggered_by=triggered_by)
    try:
        work = billing_run_work(run=run, collect=True)
    except Exception as exc:
        billing_run_stop(run=run, error=exc)
        raise
    run.refresh_from_db()
    return BillingResult(run, work.created, work.finalized)


def billing_run_start(
    *, as_of: datetime | None = None, period: str | None = None, finalize_now: bool = False,
    sync: bool = True, triggered_by: str = "",
) -> BillingRun:
    """Record a run, sync usage up to `as_of` (unless `sync` is false) and split the candidates into chunks
    for billing_run_work. A failed sync fails the run and is raised."""
    as_of = as_of or timezone.now()
    if period:
        period_from_label(period)  # a malformed month is refused before anything is recorded
    run = BillingRun.objects.create(as_of=as_of, period=period or "", triggered_by=triggered_by,
                                    finalize_now=finalize_now, heartbeat_at=timezone.now())
    # A run whose worker was killed stays "running" until someone notices: this run does. What it billed
    # is committed batch by batch, so this run simply bills the rest.
    runs_fail_stale(kind=BILLING_RUNS, by=f"billing run {run.pk}")
    with heartbeat(run):
        try:
            if sync:
                _sync_before_billing(as_of)
            candidates = list(_candidates(as_of).values_list("pk", flat=True))
            size = max(1, settings.BILLING_CHUNK_SIZE)
            groups = [candidates[i:i + size] for i in range(0, len(candidates), size)] or [[]]
            BillingRunChunk.objects.bulk_create(
                BillingRunChunk(
                    run=run, position=index, subscriptions=len(group),
                    first_subscription_id=0 if index == 1 else group[0],
                    last_subscription_id=groups[index][0] - 1 if index < len(groups) else None,
                )
                for index, group in enumerate(groups, start=1)
            )
        except Exception as exc:
            billing_run_stop(run=run, error=exc)
            raise
    run.subscriptions_seen = len(candidates)
    run.heartbeat_at = timezone.now()
    run.save(update_fields=["subscriptions_seen", "heartbeat_at"])
    return run


def billing_run_stop(*, run: BillingRun, error: BaseException) -> None:
    """A run that cannot go on (its sync failed, or its only worker met an unexpected error): the chunks
    nobody took are failed, and the run is settled as failed with the error."""
    message = one_line(f"{type(error).__name__}: {error}")
    BillingRunChunk.objects.filter(run=run, status=BillingChunkStatus.PENDING).update(
        status=BillingChunkStatus.FAILED, errors=f"not billed: the run stopped ({message})")
    if not _settle(run):  # no chunk yet (the sync failed), or chunks still held: fail the run itself
        BillingRun.objects.filter(pk=run.pk).update(
            status=BillingRunStatus.FAILED, errors=message, finished_at=timezone.now(), heartbeat_at=timezone.now())
    run.refresh_from_db()


def billing_run_work(*, run: BillingRun | int, collect: bool = False) -> WorkResult:
    """One worker's share of a run: take chunks and bill them until none is left to take, then settle the
    run when every chunk is over. `collect` keeps the invoices created and finalized (the command prints
    them); the Celery workers keep counts only. Raises what a chunk raised, after failing that chunk."""
    run = run if isinstance(run, BillingRun) else BillingRun.objects.get(pk=run)
    result = WorkResult()
    name = worker_name()
    with fewer_collections():
        _work_chunks(run, name, result, collect=collect)
    result.settled = _settle(run)
    result.waiting = not result.settled and BillingRun.objects.filter(
        pk=run.pk, status=BillingRunStatus.RUNNING).exists()
    if result.waiting:  # someone attends the run: it is alive while it waits for the chunks held elsewhere
        BillingRun.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now())
    return result


def _work_chunks(run: BillingRun, name: str, result: WorkResult, *, collect: bool) -> None:
    """Take chunks and bill them until none is left to take (billing_run_work's loop)."""
    while (chunk := _take(run, name)) is not None:
        with heartbeat(run), heartbeat(chunk):
            try:
                _work_chunk(run, chunk, result, collect=collect)
            except ChunkTakenOver:
                logger.warning("%s: taken over by another worker; this one stops working on it", chunk)
                continue
            except Exception as exc:
                try:
                    _chunk_end(chunk, status=BillingChunkStatus.FAILED,
                               errors=[one_line(f"{type(exc).__name__}: {exc}")])
                except ChunkTakenOver:
                    pass  # another worker has the chunk now: the error is this worker's to raise, not the chunk's
                _settle(run)
                raise
        result.chunks += 1


@contextmanager
def fewer_collections():
    """Within the block the cyclic collector runs less often (GC_YOUNG_THRESHOLD); its setting is restored after."""
    before = gc.get_threshold()
    if before[0] >= GC_YOUNG_THRESHOLD or before[0] == 0:  # raised already (a nested run), or disabled
        yield
        return
    gc.set_threshold(GC_YOUNG_THRESHOLD, *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)


def billing_run_check_later(*, run: BillingRun | int) -> float | None:
    """Seconds after which a worker should look at the run again (for chunks whose worker died), or None
    when such a check is queued already or the run is over: one check at a time per run."""
    now = timezone.now()
    delay = beat_interval()
    claimed = BillingRun.objects.filter(pk=getattr(run, "pk", run), status=BillingRunStatus.RUNNING).filter(
        Q(next_check_at__isnull=True) | Q(next_check_at__lte=now)).update(next_check_at=now + timedelta(seconds=delay))
    return delay if claimed else None


# --- taking a chunk ----------------------------------------------------------------------------------


def _take(run: BillingRun, name: str) -> BillingRunChunk | None:
    """The next chunk of the run for this worker (pending, or running with a stale heartbeat), now its own."""
    while True:
        now = timezone.now()
        with transaction.atomic():
            if not BillingRun.objects.filter(pk=run.pk, status=BillingRunStatus.RUNNING).exists():
                return None  # failed (by a stale check, or an error): its chunks are left to the next run
            chunk = (
                BillingRunChunk.objects.select_for_update(skip_locked=True)
                .filter(run=run)
                .filter(Q(status=BillingChunkStatus.PENDING)
                        | Q(status=BillingChunkStatus.RUNNING, heartbeat_at__lt=stale_cutoff(now)))
                .order_by("position")
                .first()
            )
            if chunk is None:
                return None
            same = BillingRunChunk.objects.filter(pk=chunk.pk, status=chunk.status, attempts=chunk.attempts)
            if chunk.status == BillingChunkStatus.RUNNING and chunk.attempts >= MAX_ATTEMPTS:
                same.update(status=BillingChunkStatus.FAILED, finished_at=now, errors=(
                    f"its worker stopped responding {chunk.attempts} times (last {chunk.worker}): not taken again"))
                continue
            taken = same.update(status=BillingChunkStatus.RUNNING, attempts=F("attempts") + 1, worker=name[:200],
                                started_at=chunk.started_at or now, heartbeat_at=now)
        if taken:
            if chunk.status == BillingChunkStatus.RUNNING:
                logger.warning("%s: worker %s stopped responding; taken again by %s", chunk, chunk.worker, name)
            chunk.refresh_from_db()
            return chunk


def _chunk_subscriptions(chunk: BillingRunChunk) -> Q:
    q = Q(subscription_id__gte=chunk.first_subscription_id)
    if chunk.last_subscription_id is not None:
        q &= Q(subscription_id__lte=chunk.last_subscription_id)
    return q


def _count(chunk: BillingRunChunk, *, created: int = 0, finalized: int = 0) -> None:
    """Add to the chunk's counters, as the last write of the caller's transaction, if the chunk is still this
    worker's (its token, ``attempts``, unchanged); else roll the transaction back and stop."""
    if not BillingRunChunk.objects.filter(
        pk=chunk.pk, attempts=chunk.attempts, status=BillingChunkStatus.RUNNING
    ).update(invoices_created=F("invoices_created") + created, invoices_finalized=F("invoices_finalized") + finalized,
             heartbeat_at=timezone.now()):
        raise ChunkTakenOver(str(chunk))


def _chunk_end(chunk: BillingRunChunk, *, status: str, errors: list[str]) -> None:
    ended = BillingRunChunk.objects.filter(pk=chunk.pk, attempts=chunk.attempts, status=BillingChunkStatus.RUNNING).update(
        status=status, errors="\n".join(errors), finished_at=timezone.now(), heartbeat_at=timezone.now())
    if not ended:
        raise ChunkTakenOver(str(chunk))


def _settle(run: BillingRun) -> bool:
    """When every chunk is over, write the run's outcome from them (the same figures whoever writes them)."""
    chunks = BillingRunChunk.objects.filter(run=run)
    if chunks.filter(status__in=_OPEN).exists() or not chunks.exists():
        return False
    sums = chunks.aggregate(created=Sum("invoices_created"), finalized=Sum("invoices_finalized"))
    errors = [text for text in chunks.exclude(errors="").order_by("position").values_list("errors", flat=True)]
    failed = bool(errors) or chunks.filter(status=BillingChunkStatus.FAILED).exists()
    BillingRun.objects.filter(pk=run.pk).update(
        status=BillingRunStatus.FAILED if failed else BillingRunStatus.DONE, errors="\n".join(errors),
        invoices_created=sums["created"] or 0, invoices_finalized=sums["finalized"] or 0,
        finished_at=timezone.now(), heartbeat_at=timezone.now(), next_check_at=None)
    return True


# --- working on a chunk ------------------------------------------------------------------------------


def _work_chunk(run: BillingRun, chunk: BillingRunChunk, result: WorkResult, *, collect: bool) -> None:
    month = period_from_label(run.period) if run.period else None
    catalog = Catalog()
    errors: list[str] = []
    candidates = _candidates(run.as_of).filter(pk__gte=chunk.first_subscription_id)
    if chunk.last_subscription_id is not None:
        candidates = candidates.filter(pk__lte=chunk.last_subscription_id)
    just_priced: set[int] = set()
    # The subscriptions billed above, with their tenants and plan versions, for the finalizing below (the chunk's
    # 500 at most): its drafts are not read again with them.
    subscriptions: dict[int, Subscription] = {}
    for batch in _batches(list(candidates.values_list("pk", flat=True))):
        created = _bill_batch(batch, as_of=run.as_of, month=month, run=run, chunk=chunk, catalog=catalog,
                              errors=errors, loaded=subscriptions)
        just_priced.update(invoice.pk for invoice in created)
        if collect:
            result.created.extend(created)
        beat()
    due = Invoice.objects.filter(_chunk_subscriptions(chunk), status=InvoiceStatus.DRAFT)
    if not run.finalize_now:
        due = due.filter(finalize_after__lte=run.as_of)
    due_pks = list(due.order_by("pk").values_list("pk", flat=True))
    if month:  # the month on each tenant's clock: a day either side in UTC holds every zone's
        due_pks = [pk for pk, start, name in due.filter(
            period_start__gte=month[0] - timedelta(days=1), period_start__lt=month[1] + timedelta(days=1),
        ).order_by("pk").values_list("pk", "period_start", "tenant__time_zone")
            if starts_in_month(start, zone_named(name), month)]
    for batch in _batches(due_pks):
        finalized = _finalize_batch(batch, at=run.as_of, just_priced=just_priced, catalog=catalog, chunk=chunk,
                                    subscriptions=subscriptions)
        if collect:
            result.finalized.extend(finalized)
        beat()
    _chunk_end(chunk, status=BillingChunkStatus.DONE, errors=errors)


def _batches(pks: list[int]):
    for index in range(0, len(pks), BATCH_SIZE):
        yield pks[index:index + BATCH_SIZE]


def _bill_batch(pks: list[int], *, as_of: datetime, month, run: BillingRun, chunk: BillingRunChunk,
                catalog: Catalog, errors: list[str], loaded: dict[int, Subscription]) -> list[Invoice]:
    with transaction.atomic():
        # Locked in primary-key order, waiting for a concurrent run that holds some: it bills them, and this
        # batch then finds their invoices (skipping them instead could leave them to a worker that then died).
        subscriptions = list(
            Subscription.objects.select_for_update(of=("self",))
            .select_related("tenant__tax_rate")
            .filter(pk__in=pks)
            .order_by("pk")
        )
        # Their plan versions (and plans) once each, shared: not a copy of the same row, its document parsed
        # again, per subscription.
        versions = PlanVersion.objects.select_related("plan").in_bulk(
            {subscription.plan_version_id for subscription in subscriptions})
        for subscription in subscriptions:
            subscription.plan_version = versions[subscription.plan_version_id]
        load_timelines(subscriptions)  # their plan changes in two queries
        # Unordered: the model's ordering would join every invoice to its tenant and sort them all, a cost that
        # grew with the invoices billed so far (per batch).
        live = set(
            Invoice.objects.filter(subscription_id__in=pks)
            .exclude(status=InvoiceStatus.VOID)
            .order_by()
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
        # Only the subscriptions with a period to bill need their sent invoices and coupons (most hourly runs
        # have none: they only make sure of the running periods' included credit).
        billed = list({subscription.pk: subscription for subscription, _start, _end in todo}.values())
        sent = sent_invoices(billed, as_of - LATE_USAGE_HORIZON - timedelta(days=366)) if billed else {}
        catalog.coupons.load(subscription.pk for subscription in billed)
        plan_credit_grants(_included_credit_periods(subscriptions, todo, as_of, catalog))
        created, failed = [], []
        if todo:
            with endpoints_read_once():
                created, failed = invoices_create_locked(periods=todo, as_of=as_of, billing_run=run, catalog=catalog,
                                                         sent=sent)
        errors.extend(failed)
        _count(chunk, created=len(created))
    loaded.update((subscription.pk, subscription) for subscription in subscriptions)
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


def _finalize_batch(pks: list[int], *, at: datetime, just_priced: set[int], catalog: Catalog,
                    chunk: BillingRunChunk, subscriptions: dict[int, Subscription]) -> list[Invoice]:
    with transaction.atomic():
        drafts = list(
            Invoice.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(pk__in=pks, status=InvoiceStatus.DRAFT)
            .order_by("pk")
        )
        # Their subscriptions (with tenant, tax rate and plan version) as the chunk's billing read them moments
        # ago; those of drafts from earlier runs are read here, in one query.
        missing = {invoice.subscription_id for invoice in drafts} - subscriptions.keys()
        if missing:
            subscriptions.update((subscription.pk, subscription) for subscription in Subscription.objects.select_related(
                "tenant__tax_rate", "plan_version").filter(pk__in=missing))
        for invoice in drafts:
            invoice.subscription = subscriptions[invoice.subscription_id]
        catalog.coupons.load(invoice.subscription_id for invoice in drafts)
        with endpoints_read_once():
            for invoice in drafts:
                if invoice.pk not in just_priced:
                    reprice_draft(invoice, catalog)
            # The batch's credits in one locked read and one write (metering.services.billing.order).
            draw_invoice_credits(drafts, at=at)
            # Numbered last: the year's counter stays locked from here until the batch commits.
            numbers = next_numbers(at, len(drafts))
            for invoice, number in zip(drafts, numbers, strict=True):
                finalize_locked(invoice, at=at, reprice=False, catalog=catalog, number=number, drawn=True, save=False)
            invoices_save_finalized(drafts)
        queue_invoice_emails(drafts)
        _count(chunk, finalized=len(drafts))
    return drafts
