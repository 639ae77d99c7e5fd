"""The database enforces the commercial invariants, whatever the code above it does."""

from datetime import UTC, datetime

import pytest
from django.db import IntegrityError, transaction

from portal.kernel import ApplicationError
from tenants.models import Subscription, SubscriptionStatus, TenantStatus
from tenants.services.lifecycle import ALLOWED_TRANSITIONS, tenant_transition
from tenants.services.subscriptions import subscription_change_plan, subscription_create, subscription_end
from tenants.tests.factories import TenantFactory, import_sample_plans

pytestmark = pytest.mark.django_db


def test_second_active_subscription_is_refused_by_the_database():
    versions = import_sample_plans()
    tenant = TenantFactory()
    Subscription.objects.create(tenant=tenant, plan_version=versions["pro"], started_at=datetime(2026, 10, 1, tzinfo=UTC))
    with pytest.raises(IntegrityError), transaction.atomic():
        Subscription.objects.create(
            tenant=tenant, plan_version=versions["starter"], started_at=datetime(2026, 10, 2, tzinfo=UTC)
        )
    assert Subscription.objects.filter(tenant=tenant).count() == 1


def test_second_active_subscription_through_the_service_is_a_clear_error():
    versions = import_sample_plans()
    tenant = TenantFactory()
    subscription_create(tenant=tenant, plan_version=versions["pro"])
    with pytest.raises(ApplicationError, match="already has an active subscription"):
        subscription_create(tenant=tenant, plan_version=versions["starter"])


def test_an_ended_subscription_makes_room_for_a_new_one():
    versions = import_sample_plans()
    tenant = TenantFactory()
    first = subscription_create(tenant=tenant, plan_version=versions["pro"], started_at=datetime(2026, 9, 1, tzinfo=UTC))
    subscription_end(subscription=first, at=datetime(2026, 10, 1, tzinfo=UTC))
    subscription_create(tenant=tenant, plan_version=versions["starter"], started_at=datetime(2026, 10, 1, tzinfo=UTC))
    assert Subscription.objects.filter(tenant=tenant, status=SubscriptionStatus.ACTIVE).count() == 1


def test_subscription_cannot_end_before_it_starts_in_the_database():
    versions = import_sample_plans()
    with pytest.raises(IntegrityError), transaction.atomic():
        Subscription.objects.create(
            tenant=TenantFactory(), plan_version=versions["pro"],
            started_at=datetime(2026, 10, 2, tzinfo=UTC), ends_at=datetime(2026, 10, 1, tzinfo=UTC),
        )


def test_trial_is_set_from_the_plan():
    versions = import_sample_plans()
    sub = subscription_create(tenant=TenantFactory(), plan_version=versions["pro"], started_at=datetime(2026, 10, 1, tzinfo=UTC))
    assert sub.trial_ends_at == datetime(2026, 10, 15, tzinfo=UTC)


def test_unknown_tenant_status_is_refused_by_the_database():
    tenant = TenantFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        type(tenant).objects.filter(pk=tenant.pk).update(status="zombie")


@pytest.mark.parametrize(
    "from_status,to_status",
    [(f, t) for f in TenantStatus.values for t in TenantStatus.values if f != t],
)
def test_lifecycle_transitions(from_status, to_status):
    tenant = TenantFactory(status=from_status)
    if to_status in ALLOWED_TRANSITIONS[from_status]:
        tenant_transition(tenant=tenant, to_status=to_status)
        tenant.refresh_from_db()
        assert tenant.status == to_status
    else:
        with pytest.raises(ApplicationError, match=f"cannot go from {from_status} to {to_status}"):
            tenant_transition(tenant=tenant, to_status=to_status)
        tenant.refresh_from_db()
        assert tenant.status == from_status


def test_cancelling_a_tenant_ends_its_subscription():
    versions = import_sample_plans()
    tenant = TenantFactory()
    sub = subscription_create(tenant=tenant, plan_version=versions["pro"], started_at=datetime(2026, 10, 1, tzinfo=UTC))
    at = datetime(2026, 10, 20, tzinfo=UTC)
    tenant_transition(tenant=tenant, to_status=TenantStatus.CANCELLED, at=at)
    sub.refresh_from_db()
    assert (sub.status, sub.ends_at) == (SubscriptionStatus.ENDED, at)


def test_plan_change_is_recorded_with_its_time():
    versions = import_sample_plans()
    sub = subscription_create(tenant=TenantFactory(), plan_version=versions["starter"], started_at=datetime(2026, 10, 1, tzinfo=UTC))
    at = datetime(2026, 10, 16, 12, tzinfo=UTC)
    subscription_change_plan(subscription=sub, plan_version=versions["pro"], at=at)
    change = sub.changes.get()
    assert (change.from_version, change.to_version, change.changed_at) == (versions["starter"], versions["pro"], at)
    sub.refresh_from_db()
    assert sub.plan_version == versions["pro"]
