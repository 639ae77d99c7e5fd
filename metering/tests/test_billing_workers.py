"""Billing across workers (issue 19): a run split into chunks that real Celery workers on Redis share; exactly
one invoice per subscription and period with 1, 2 and 4 workers, and with a worker killed (SIGKILL) in the
middle of a chunk, which another worker then takes again."""

import os
import signal
import time
from datetime import UTC, datetime, timedelta

import pytest
from django.db.models import Count

from metering.models import BillingChunkStatus, BillingRun, BillingRunChunk, BillingRunStatus, Invoice
from metering.tests.processes import portal_env, start_worker, stop
from metering.tests.test_billing import add_usage
from tenants.services.subscriptions import subscription_create
from tenants.tests.factories import TenantFactory, import_sample_plans

pytestmark = [pytest.mark.redis, pytest.mark.slow]

OCT = datetime(2026, 10, 1, tzinfo=UTC)
NOV = datetime(2026, 11, 1, tzinfo=UTC)
AS_OF = (NOV + timedelta(hours=2)).isoformat()
SUBSCRIPTIONS = 23  # chunks of 5: four whole and a last one of 3
STALE = 3  # seconds: RUN_STALE_AFTER_SECONDS of the workers in these tests


@pytest.fixture
def subscriptions(transactional_db):
    versions = import_sample_plans()
    subs = []
    for i in range(SUBSCRIPTIONS):
        sub = subscription_create(tenant=TenantFactory(slug=f"w{i:02d}"), plan_version=versions["starter"],
                                  started_at=OCT, with_trial=False)
        add_usage(sub.tenant, "api_calls", OCT + timedelta(days=2, hours=i), 1000 * (i + 1))
        subs.append(sub)
    return subs


@pytest.fixture
def queue():
    return f"test-billing-{os.getpid()}-{int(time.time() * 1000)}"


def _env():
    return portal_env(BILLING_CHUNK_SIZE="5", RUN_STALE_AFTER_SECONDS=str(STALE))


def _send_run(queue: str):
    from metering.tasks import run_billing

    return run_billing.apply_async(kwargs={"as_of": AS_OF, "sync": False, "finalize_now": True}, queue=queue)


def _settled(timeout: float = 120) -> BillingRun:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = BillingRun.objects.filter(status__in=[BillingRunStatus.DONE, BillingRunStatus.FAILED]).first()
        if run is not None:
            return run
        time.sleep(0.2)
    raise AssertionError(f"the run did not finish: {list(BillingRunChunk.objects.values('position', 'status', 'worker'))}")


def _assert_one_invoice_each(subs) -> None:
    per_subscription = dict(Invoice.objects.values_list("subscription_id").annotate(n=Count("pk")))
    assert per_subscription == {sub.pk: 1 for sub in subs}, "exactly one invoice per subscription and period"
    assert set(Invoice.objects.values_list("period_start", "period_end")) == {(OCT, NOV)}
    assert not Invoice.objects.filter(lines__isnull=True).exists(), "every invoice whole"
    numbers = sorted(Invoice.objects.values_list("number", flat=True))
    assert numbers == [f"INV-2026-{n:06d}" for n in range(1, len(subs) + 1)], "numbered without gap or repeat"


@pytest.mark.parametrize("workers", [1, 2, 4])
def test_workers_share_a_run_and_bill_each_period_once(subscriptions, queue, tmp_path, workers):
    env = _env()
    procs = [start_worker(queue=queue, env=env, log=tmp_path / f"worker-{i}.log", name=f"w{i}")
             for i in range(workers)]
    try:
        first = _send_run(queue).get(timeout=120)
        run = _settled()
        assert run.pk == first["billing_run"]
        assert run.status == BillingRunStatus.DONE, run.errors
        assert (run.subscriptions_seen, run.invoices_created, run.invoices_finalized) == (23, 23, 23)
        chunks = list(run.chunks.order_by("position"))
        assert chunks[0].first_subscription_id == 0 and chunks[-1].last_subscription_id is None
        assert [c.subscriptions for c in chunks] == [5, 5, 5, 5, 3]
        assert all(c.status == BillingChunkStatus.DONE and c.attempts == 1 for c in chunks)
        assert sum(c.invoices_created for c in chunks) == 23 and sum(c.invoices_finalized for c in chunks) == 23
        _assert_one_invoice_each(subscriptions)

        # The beat's next tick: a second run over the same periods adds nothing.
        _send_run(queue).get(timeout=120)
        again = BillingRun.objects.exclude(pk=run.pk).get()
        deadline = time.monotonic() + 60
        while again.status == BillingRunStatus.RUNNING and time.monotonic() < deadline:
            time.sleep(0.2)
            again.refresh_from_db()
        assert again.status == BillingRunStatus.DONE and (again.invoices_created, again.invoices_finalized) == (0, 0)
        _assert_one_invoice_each(subscriptions)
    finally:
        for proc in procs:
            stop(proc)


def test_a_worker_killed_mid_chunk_leaves_its_chunk_to_another(subscriptions, queue, tmp_path):
    env = _env()
    flag = tmp_path / "paused"
    # The doomed worker bills in batches of 2: in its first chunk it commits a batch of two invoices, then
    # stops in the second batch (its subscriptions locked, its transaction open) and is killed there.
    doomed = start_worker(queue=queue, env=env, log=tmp_path / "doomed.log", name="doomed",
                          pause_at="metering.services.billing.run.invoices_create_locked", call=2, flag=flag,
                          patch="metering.services.billing.run.BATCH_SIZE=2")
    survivor = None
    try:
        _send_run(queue)
        deadline = time.monotonic() + 90
        while not flag.exists():
            assert time.monotonic() < deadline and doomed.poll() is None, (tmp_path / "doomed.log").read_text()
            time.sleep(0.1)
        held = BillingRunChunk.objects.get(status=BillingChunkStatus.RUNNING, worker__contains=str(doomed.pid))
        assert held.invoices_created == 2 and Invoice.objects.count() == 2
        os.kill(doomed.pid, signal.SIGKILL)
        doomed.wait(timeout=30)
        # The survivor comes only now: the other chunks, and the killed worker's once its heartbeat is stale.
        survivor = start_worker(queue=queue, env=env, log=tmp_path / "survivor.log", name="survivor")

        run = _settled()
        assert run.status == BillingRunStatus.DONE, run.errors
        assert (run.invoices_created, run.invoices_finalized) == (23, 23)
        held.refresh_from_db()
        assert held.status == BillingChunkStatus.DONE and held.attempts == 2
        assert str(survivor.pid) in held.worker
        assert held.invoices_created == 5, "two by the killed worker, three by the one that took the chunk again"
        _assert_one_invoice_each(subscriptions)
        assert "taken again by" in (tmp_path / "survivor.log").read_text()
    finally:
        doomed.kill()
        if survivor is not None:
            stop(survivor)
