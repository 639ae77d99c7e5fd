"""Ending a subscription: one rule (subscription_end), whether staff end it or the tenant is cancelled."""

from datetime import UTC, datetime, timedelta

import pytest

from portal.kernel import ApplicationError
from tenants.models import Subscription, SubscriptionStatus, TenantStatus
from tenants.services.lifecycle import tenant_transition
from tenants.services.subscriptions import SHORTEST_SUBSCRIPTION, subscription_create, subscription_end
from tenants.tests.factories import TenantFactory, import_sample_plans

pytestmark = pytest.mark.django_db
START = datetime(2026, 10, 1, tzinfo=UTC)


@pytest.fixture
def sub():
    versions = import_sample_plans()
    return subscription_create(tenant=TenantFactory(), plan_version=versions["pro"], started_at=START)


@pytest.mark.parametrize("at", [START, START - timedelta(days=3)])
def test_staff_cannot_end_a_subscription_before_it_starts(sub, at):
    with pytest.raises(ApplicationError, match="cannot end before it starts"):
        subscription_end(subscription=sub, at=at)
    sub.refresh_from_db()
    assert (sub.status, sub.ends_at) == (SubscriptionStatus.ACTIVE, None)


def test_a_cancelled_tenant_ends_a_subscription_that_has_not_started(sub):
    at = START - timedelta(days=3)
    tenant_transition(tenant=sub.tenant, to_status=TenantStatus.CANCELLED, at=at)
    sub.refresh_from_db()
    assert (sub.status, sub.ends_at) == (SubscriptionStatus.ENDED, START + SHORTEST_SUBSCRIPTION)


@pytest.mark.parametrize("before_start", ["refuse", "clamp"])
def test_an_earlier_end_already_set_is_kept(sub, before_start):
    earlier = START + timedelta(days=5)
    Subscription.objects.filter(pk=sub.pk).update(ends_at=earlier)
    subscription_end(subscription=sub, at=START + timedelta(days=9), before_start=before_start)
    sub.refresh_from_db()
    assert (sub.status, sub.ends_at) == (SubscriptionStatus.ENDED, earlier)


def test_ending_twice_changes_nothing(sub):
    first = subscription_end(subscription=sub, at=START + timedelta(days=5))
    again = subscription_end(subscription=sub, at=START + timedelta(days=9))
    assert again.ends_at == first.ends_at == START + timedelta(days=5)
