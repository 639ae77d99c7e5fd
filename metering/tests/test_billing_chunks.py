"""A billing run's chunks (metering.services.billing.run): how they cover the subscriptions, how a worker takes
one, takes again one whose worker died, gives up on one that killed its workers, and stops when its chunk was
taken from it; and the run's progress in the admin. Real workers on Redis: test_billing_workers.py."""

import io
from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from metering.models import (
    BillingChunkStatus,
    BillingRun,
    BillingRunChunk,
    BillingRunStatus,
    Invoice,
    InvoiceStatus,
)
from metering.services.billing import run as run_module
from metering.services.billing.run import MAX_ATTEMPTS, billing_run, billing_run_start, billing_run_work
from metering.tests.test_billing import add_usage
from tenants.services.subscriptions import subscription_create
from tenants.tests.factories import TenantFactory, import_sample_plans

OCT = datetime(2026, 10, 1, tzinfo=UTC)
NOV = datetime(2026, 11, 1, tzinfo=UTC)
AS_OF = NOV + timedelta(hours=2)


@pytest.fixture
def subs(db, settings):
    settings.BILLING_CHUNK_SIZE = 3
    versions = import_sample_plans()
    made = []
    for i in range(7):
        sub = subscription_create(tenant=TenantFactory(slug=f"c{i}"), plan_version=versions["starter"], started_at=OCT,
                                  with_trial=False)
        add_usage(sub.tenant, "api_calls", OCT + timedelta(days=1), 500 * (i + 1))
        made.append(sub)
    return made


def _start(**kwargs):
    return billing_run_start(as_of=AS_OF, sync=False, **kwargs)


def _died(chunk: BillingRunChunk, *, seconds_ago: float) -> None:
    """As if a worker had taken the chunk and stopped beating `seconds_ago`."""
    BillingRunChunk.objects.filter(pk=chunk.pk).update(
        status=BillingChunkStatus.RUNNING, attempts=chunk.attempts + 1, worker="gone:1",
        started_at=timezone.now(), heartbeat_at=timezone.now() - timedelta(seconds=seconds_ago))


def test_chunks_cover_every_subscription_id_in_order(subs):
    run = _start()
    chunks = list(run.chunks.order_by("position"))
    assert [c.subscriptions for c in chunks] == [3, 3, 1]
    assert chunks[0].first_subscription_id == 0, "the first range starts at 0"
    assert chunks[-1].last_subscription_id is None, "the last has no upper bound"
    for before, after in zip(chunks, chunks[1:], strict=False):
        assert after.first_subscription_id == before.last_subscription_id + 1, "no gap, no overlap"
    assert all(c.status == BillingChunkStatus.PENDING and c.attempts == 0 for c in chunks)
    assert run.subscriptions_seen == 7 and run.status == BillingRunStatus.RUNNING


def test_drafts_of_subscriptions_no_longer_billed_are_finalized_by_the_chunk_their_id_falls_in(subs):
    from tenants.models import Subscription, SubscriptionStatus

    billing_run(as_of=AS_OF, sync=False)  # seven drafts, in their grace period
    # The subscriptions ended with October, long enough ago that they are no longer candidates.
    Subscription.objects.update(status=SubscriptionStatus.ENDED, ends_at=NOV)
    result = billing_run(as_of=AS_OF + timedelta(days=100), sync=False)
    (chunk,) = result.run.chunks.all()
    assert (chunk.first_subscription_id, chunk.last_subscription_id, chunk.subscriptions) == (0, None, 0)
    assert result.run.subscriptions_seen == 0 and result.run.invoices_finalized == 7
    assert not Invoice.objects.filter(status=InvoiceStatus.DRAFT).exists()


def test_one_worker_takes_every_chunk_and_settles_the_run(subs):
    run = _start(finalize_now=True)
    work = billing_run_work(run=run)
    assert (work.chunks, work.settled, work.waiting) == (3, True, False)
    run.refresh_from_db()
    assert run.status == BillingRunStatus.DONE and run.finished_at is not None
    assert (run.invoices_created, run.invoices_finalized) == (7, 7)
    assert list(run.chunks.values_list("invoices_created", flat=True)) == [3, 3, 1]
    assert billing_run_work(run=run).chunks == 0, "a late worker finds nothing to take"


def test_a_chunk_whose_worker_died_is_taken_again(subs, settings):
    settings.RUN_STALE_AFTER_SECONDS = 60
    run = _start()
    first, second, third = run.chunks.order_by("position")
    _died(first, seconds_ago=61)  # stale: taken again
    _died(second, seconds_ago=5)  # its worker is alive: left alone
    work = billing_run_work(run=run)
    assert (work.chunks, work.settled, work.waiting) == (2, False, True)
    first.refresh_from_db()
    assert first.status == BillingChunkStatus.DONE and first.attempts == 2 and first.worker != "gone:1"
    assert first.invoices_created == 3
    # One check of the run at a time is queued while the worker waits for the other chunk.
    assert run_module.billing_run_check_later(run=run) == pytest.approx(12.0)
    assert run_module.billing_run_check_later(run=run) is None
    # Once that chunk's worker is silent for too long, the check takes it and settles the run.
    _died(BillingRunChunk.objects.get(pk=second.pk), seconds_ago=61)
    assert billing_run_work(run=run).settled
    run.refresh_from_db()
    assert run.status == BillingRunStatus.DONE and run.invoices_created == 7
    assert sorted(Invoice.objects.values_list("subscription_id", flat=True)) == sorted(s.pk for s in subs)


def test_a_chunk_that_killed_its_workers_is_failed_not_taken_again(subs, settings):
    settings.RUN_STALE_AFTER_SECONDS = 60
    run = _start()
    first = run.chunks.get(position=1)
    BillingRunChunk.objects.filter(pk=first.pk).update(attempts=MAX_ATTEMPTS - 1)
    _died(BillingRunChunk.objects.get(pk=first.pk), seconds_ago=61)
    billing_run_work(run=run)
    first.refresh_from_db()
    assert first.status == BillingChunkStatus.FAILED and first.attempts == MAX_ATTEMPTS
    assert first.errors == f"its worker stopped responding {MAX_ATTEMPTS} times (last gone:1): not taken again"
    run.refresh_from_db()
    assert run.status == BillingRunStatus.FAILED and run.invoices_created == 4 and first.errors in run.errors


def test_a_worker_whose_chunk_was_taken_over_rolls_its_batch_back(subs, monkeypatch):
    run = _start()
    real = run_module._work_chunk

    def taken_meanwhile(run, chunk, result, **kwargs):
        if chunk.position == 1:  # another worker took this one for dead, and took its chunk
            BillingRunChunk.objects.filter(pk=chunk.pk).update(attempts=2, worker="other:2")
        return real(run, chunk, result, **kwargs)

    monkeypatch.setattr(run_module, "_work_chunk", taken_meanwhile)
    work = billing_run_work(run=run)
    assert work.chunks == 2 and work.waiting, "it went on with the other chunks, and waits for the lost one"
    billed = set(Invoice.objects.values_list("subscription_id", flat=True))
    assert billed == {s.pk for s in subs[3:]}, "the batch it priced for the lost chunk was rolled back"
    chunk = run.chunks.get(position=1)
    assert chunk.status == BillingChunkStatus.RUNNING and chunk.worker == "other:2" and chunk.invoices_created == 0


def test_a_run_failed_as_stale_gives_out_no_more_chunks(subs):
    run = _start()
    BillingRun.objects.filter(pk=run.pk).update(status=BillingRunStatus.FAILED)
    assert billing_run_work(run=run).chunks == 0
    assert not Invoice.objects.exists()


def test_a_batch_meeting_an_invoice_written_meanwhile_writes_the_others_one_by_one(subs):
    from metering.services.billing.catalog import Catalog
    from metering.services.billing.invoices import invoice_create, invoices_create_locked

    # A writer that does not lock subscriptions (a reissue) wrote the first period after the batch's check.
    invoice_create(subscription=subs[0], period_start=OCT, period_end=NOV, as_of=AS_OF)
    created, errors = invoices_create_locked(
        periods=[(sub, OCT, NOV) for sub in subs[:3]], as_of=AS_OF, billing_run=None, catalog=Catalog(),
        sent={sub.pk: [] for sub in subs[:3]})
    assert errors == [] and [invoice.subscription_id for invoice in created] == [subs[1].pk, subs[2].pk]
    assert all(invoice.pk and invoice.lines.count() for invoice in created)
    assert sorted(Invoice.objects.values_list("subscription_id", flat=True)) == sorted(s.pk for s in subs[:3])


@pytest.fixture
def staff_client(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("staff", "s@example.com", "pw-for-tests-1"))
    return client


def test_the_admin_shows_a_runs_progress_and_its_chunks(subs, staff_client, settings):
    settings.RUN_STALE_AFTER_SECONDS = 60
    run = _start()
    first, second, _third = run.chunks.order_by("position")
    _died(first, seconds_ago=61)
    billing_run_work(run=run)  # takes the first again and the third; the second is pending... taken too
    done = BillingRun.objects.get(pk=run.pk)
    assert done.status == BillingRunStatus.DONE
    page = staff_client.get(reverse("admin:metering_billingrun_changelist")).content.decode()
    assert "3 of 3 chunks done, 1 taken again after a worker stopped" in page

    running = _start()
    chunk = running.chunks.get(position=1)
    _died(chunk, seconds_ago=1)
    page = staff_client.get(reverse("admin:metering_billingrun_changelist")).content.decode()
    assert "0 of 3 chunks done, 1 running" in page
    detail = staff_client.get(reverse("admin:metering_billingrun_change", args=[running.pk])).content.decode()
    assert "gone:1" in detail and "alive (heartbeat" in detail and "and above" in detail


def test_the_collector_runs_less_often_during_a_run_and_as_before_after_it(subs, monkeypatch):
    import gc

    from django.core.management import call_command

    seen = []
    work_chunk = run_module._work_chunk

    def spying(*args, **kwargs):
        seen.append(gc.get_threshold())
        return work_chunk(*args, **kwargs)

    monkeypatch.setattr(run_module, "_work_chunk", spying)
    before = gc.get_threshold()
    call_command("run_billing", "--as-of", AS_OF.isoformat(), "--finalize-now", "--no-sync", stdout=io.StringIO())
    assert seen == [(run_module.GC_YOUNG_THRESHOLD, *before[1:])] * 3, "every chunk billed with the raised threshold"
    assert gc.get_threshold() == before, "restored after the run"
    assert Invoice.objects.filter(status=InvoiceStatus.FINALIZED).count() == 7

