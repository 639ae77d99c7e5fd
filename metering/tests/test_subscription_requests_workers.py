"""Subscription requests under concurrency (PostgreSQL: two transactions at once make one change) and the beat
task on a real Celery worker (Redis), applied once."""

from datetime import UTC, datetime

import pytest

from metering.tests.processes import concurrently
from portal.kernel import ApplicationError
from tenants.models import SubscriptionChange, SubscriptionRequest, TenantStatus
from tenants.services import subscription_requests as svc
from tenants.services.subscriptions import subscription_create
from tenants.tests.factories import TenantFactory, import_sample_plans

OCT = datetime(2026, 10, 1, tzinfo=UTC)
NOV = datetime(2026, 11, 1, tzinfo=UTC)
ASKED = datetime(2026, 10, 10, tzinfo=UTC)


def _subscribed(slug, code):
    versions = import_sample_plans()
    return subscription_create(tenant=TenantFactory(slug=slug), plan_version=versions[code], started_at=OCT,
                               with_trial=False)


def _outcomes(work, times=2):
    def attempt():
        try:
            return work().pk
        except ApplicationError as exc:
            return exc.message
    return concurrently(attempt, times=times)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_upgrades_at_once_make_one_change():
    sub = _subscribed("race", "starter")
    outcomes = _outcomes(lambda: svc.subscription_request_plan(subscription=sub, plan_code="pro", by=None,
                                                               next_period_start=NOV, now=ASKED))
    assert sorted(type(o).__name__ for o in outcomes) == ["int", "str"], outcomes
    assert "You are already on Pro." in outcomes
    assert SubscriptionChange.objects.filter(subscription=sub).count() == 1
    assert SubscriptionRequest.objects.filter(subscription=sub).count() == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_downgrade_and_a_cancellation_at_once_leave_one_waiting():
    sub = _subscribed("race", "pro")
    works = iter([
        lambda: svc.subscription_request_plan(subscription=sub, plan_code="starter", by=None, next_period_start=NOV,
                                              now=ASKED),
        lambda: svc.subscription_request_cancel(subscription=sub, by=None, period_end=NOV, now=ASKED),
    ])
    import threading

    lock = threading.Lock()

    def next_work():
        with lock:
            return next(works)

    _outcomes(lambda: next_work()())
    assert SubscriptionRequest.objects.filter(subscription=sub, status__in=["scheduled", "pending_approval"]).count() == 1
    waiting = SubscriptionRequest.objects.get(subscription=sub, status="scheduled")
    assert SubscriptionChange.objects.filter(subscription=sub).count() == (1 if waiting.kind == "downgrade" else 0)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_double_cancel_is_one_request():
    sub = _subscribed("race", "pro")
    outcomes = _outcomes(lambda: svc.subscription_request_cancel(subscription=sub, by=None, period_end=NOV, now=ASKED),
                         times=3)
    assert len(set(outcomes)) == 1 and isinstance(outcomes[0], int), outcomes
    assert SubscriptionRequest.objects.filter(subscription=sub).count() == 1


@pytest.mark.redis
def test_the_beat_task_applies_what_came_due_once_on_a_real_worker(celery_worker_process):
    from tenants.tasks import apply_subscription_requests

    sub = _subscribed("worker", "pro")
    svc.subscription_request_cancel(subscription=sub, by=None, period_end=NOV, now=ASKED)  # due: NOV is past
    assert apply_subscription_requests.apply_async(queue=celery_worker_process).get(timeout=120) == 1
    assert apply_subscription_requests.apply_async(queue=celery_worker_process).get(timeout=120) == 0
    sub.refresh_from_db()
    sub.tenant.refresh_from_db()
    assert sub.tenant.status == TenantStatus.CANCELLED and sub.ends_at == NOV
