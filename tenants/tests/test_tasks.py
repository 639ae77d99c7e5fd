"""The trial-ending task: the service, and the task run by a real Celery worker on Redis (CI)."""

from datetime import UTC, datetime

import pytest

from tenants.models import Subscription, TenantStatus
from tenants.services.lifecycle import tenants_end_trials
from tenants.tests.factories import TenantFactory, import_sample_plans


def _trialing_tenant(slug, trial_end):
    versions = import_sample_plans()
    tenant = TenantFactory(slug=slug, status=TenantStatus.TRIALING)
    Subscription.objects.create(
        tenant=tenant, plan_version=versions["pro"], started_at=datetime(2026, 10, 1, tzinfo=UTC), trial_ends_at=trial_end
    )
    return tenant


@pytest.mark.django_db
def test_end_trials_is_safe_to_run_twice():
    done = _trialing_tenant("done", datetime(2026, 10, 15, tzinfo=UTC))
    running = _trialing_tenant("running", datetime(2026, 11, 15, tzinfo=UTC))
    now = datetime(2026, 11, 1, tzinfo=UTC)
    assert [t.slug for t in tenants_end_trials(now=now)] == ["done"]
    assert tenants_end_trials(now=now) == []
    done.refresh_from_db()
    running.refresh_from_db()
    assert (done.status, running.status) == (TenantStatus.ACTIVE, TenantStatus.TRIALING)


@pytest.mark.redis
def test_end_trials_runs_on_a_real_worker(celery_worker_process):
    from tenants.tasks import end_trials

    tenant = _trialing_tenant("worker", datetime(2026, 10, 5, tzinfo=UTC))
    result = end_trials.apply_async(queue=celery_worker_process)
    assert result.get(timeout=60) == 1
    tenant.refresh_from_db()
    assert tenant.status == TenantStatus.ACTIVE
    assert end_trials.apply_async(queue=celery_worker_process).get(timeout=60) == 0
