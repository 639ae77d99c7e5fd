"""A tenant's own subscription requests: which change is an upgrade, the refusals, one waiting request at a time
(also against the database), staff approval, the emails that confirm each step and the webhooks."""

from datetime import UTC, datetime, timedelta
from unittest import mock

import pytest
from django.db import IntegrityError, transaction

from portal.kernel import ApplicationError
from tenants.models import (
    EmailDelivery,
    SubscriptionChange,
    SubscriptionRequest,
    SubscriptionRequestStatus,
    TenantStatus,
)
from tenants.services import subscription_requests as svc
from tenants.services.lifecycle import tenant_cancel, tenant_suspend
from tenants.services.plans import plans_import
from tenants.services.subscriptions import subscription_change_plan, subscription_create
from tenants.tests.factories import TenantFactory, import_sample_plans

NOV = datetime(2026, 11, 1, tzinfo=UTC)
DEC = datetime(2026, 12, 1, tzinfo=UTC)
NOW = datetime(2026, 11, 10, tzinfo=UTC)

MORE_PLANS = {"plans": [
    {"code": "business", "name": "Business", "currency": "USD", "interval": "month", "base_fee": "99.00",
     "charges": [{"metric": "api_calls", "model": "per_unit", "unit_amount": "0.0001"}]},
    {"code": "euro", "name": "Euro", "currency": "EUR", "interval": "month", "base_fee": "10.00",
     "charges": [{"metric": "api_calls", "model": "per_unit", "unit_amount": "0.001"}]},
    {"code": "yearly", "name": "Yearly", "currency": "USD", "interval": "year", "base_fee": "490.00",
     "charges": [{"metric": "api_calls", "model": "per_unit", "unit_amount": "0.001"}]},
    {"code": "hidden", "name": "Hidden", "currency": "USD", "interval": "month", "base_fee": "5.00",
     "charges": [{"metric": "api_calls", "model": "per_unit", "unit_amount": "0.001"}]},
]}


@pytest.fixture
def versions(db):
    import_sample_plans()
    plans_import(document=MORE_PLANS)
    from tenants.models import Plan

    Plan.objects.filter(code="hidden").update(is_public=False)
    return {plan.code: plan.current_version for plan in Plan.objects.all()}


@pytest.fixture
def sub(versions):
    tenant = TenantFactory(slug="acme")
    return subscription_create(tenant=tenant, plan_version=versions["pro"], started_at=NOV, with_trial=False)


def change(sub, code, now=NOW):
    return svc.subscription_request_plan(subscription=sub, plan_code=code, by=None, next_period_start=DEC, now=now)


def test_up_or_down_is_the_base_fee(versions):
    kind = svc.plan_change_kind
    assert kind(from_version=versions["pro"], to_version=versions["business"]) == "upgrade"
    assert kind(from_version=versions["pro"], to_version=versions["starter"]) == "downgrade"
    assert kind(from_version=versions["pro"], to_version=versions["pro"]) == "upgrade", "an equal fee is an upgrade"


def test_plans_on_offer_are_the_public_ones_in_the_same_currency_and_interval(sub):
    from tenants.selectors import plans_on_offer

    assert [v.plan.code for v in plans_on_offer(subscription=sub)] == ["starter", "business"]


@pytest.mark.parametrize(("code", "message"), [
    ("pro", "You are already on Pro."),
    ("euro", "Euro is billed in EUR and your plan in USD"),
    ("yearly", "Yearly is billed per year and your plan per month"),
    ("hidden", "Hidden is not on offer."),
    ("nope", "There is no plan 'nope'."),
])
def test_refusals_say_why(sub, code, message):
    with pytest.raises(ApplicationError, match=message.replace("(", r"\(").replace(".", r"\.")):
        change(sub, code)
    assert not SubscriptionRequest.objects.exists() and not SubscriptionChange.objects.exists()


def test_a_cancelled_or_suspended_tenant_cannot_change(sub):
    tenant_suspend(tenant=sub.tenant)
    with pytest.raises(ApplicationError, match="suspended"):
        change(sub, "business")
    tenant_cancel(tenant=sub.tenant)
    with pytest.raises(ApplicationError, match="cancelled"):
        svc.subscription_request_cancel(subscription=sub, by=None, period_end=DEC, now=NOW)


def test_an_upgrade_twice_is_one_change(sub, versions):
    first = change(sub, "business")
    assert (first.kind, first.status, first.effective_at) == ("upgrade", "applied", NOW)
    assert first.change.changed_at == NOW and first.change.to_version == versions["business"]
    with pytest.raises(ApplicationError, match="already on Business"):
        change(sub, "business", now=NOW + timedelta(seconds=1))
    assert SubscriptionChange.objects.count() == 1 and SubscriptionRequest.objects.count() == 1


def test_a_downgrade_or_cancellation_asked_twice_is_one_request(sub):
    first = change(sub, "starter")
    assert change(sub, "starter").pk == first.pk
    assert SubscriptionChange.objects.count() == 1
    with pytest.raises(ApplicationError, match="The downgrade to Starter .* is waiting: withdraw it first"):
        change(sub, "business")
    cancel = svc.subscription_request_cancel(subscription=sub, by=None, period_end=DEC, now=NOW)
    first.refresh_from_db()
    assert first.status == "withdrawn", "a cancellation supersedes the downgrade"
    assert not SubscriptionChange.objects.exists()
    assert svc.subscription_request_cancel(subscription=sub, by=None, period_end=DEC, now=NOW).pk == cancel.pk


def test_the_database_allows_one_waiting_request(sub, versions):
    change(sub, "starter")
    with pytest.raises(IntegrityError), transaction.atomic():
        SubscriptionRequest.objects.create(subscription=sub, kind="cancel", status="scheduled",
                                           from_version=versions["pro"], effective_at=DEC)
    with pytest.raises(IntegrityError), transaction.atomic():
        SubscriptionRequest.objects.create(subscription=sub, kind="upgrade", status="scheduled",
                                           from_version=versions["pro"], to_version=versions["business"], effective_at=DEC)


def test_withdraw_until_the_time_comes_then_not(sub):
    with pytest.raises(ApplicationError, match="Nothing is waiting"):
        svc.subscription_request_withdraw(subscription=sub, by=None, now=NOW)
    svc.subscription_request_cancel(subscription=sub, by=None, period_end=DEC, now=NOW)
    with pytest.raises(ApplicationError, match="has taken effect"):
        svc.subscription_request_withdraw(subscription=sub, by=None, now=DEC)
    done = svc.subscription_request_withdraw(subscription=sub, by=None, now=NOW)
    assert done.status == "withdrawn"


def test_a_staff_change_waits_for_a_scheduled_one_to_be_withdrawn(sub, versions):
    change(sub, "starter")
    with pytest.raises(ApplicationError, match="scheduled for 2026-12-01 00:00 UTC: withdraw it first"):
        subscription_change_plan(subscription=sub, plan_version=versions["business"], at=NOW, now=NOW)


def test_approval_required_then_approved_in_time(sub, settings, versions):
    settings.SUBSCRIPTION_DOWNGRADE_REQUIRES_APPROVAL = True
    asked = change(sub, "starter")
    assert asked.status == "pending_approval" and asked.change is None
    assert not SubscriptionChange.objects.exists(), "nothing for billing until approved"
    approved = svc.subscription_request_approve(request=asked, by=None, now=NOW + timedelta(days=1))
    assert (approved.status, approved.effective_at, approved.change.changed_at) == ("scheduled", DEC, DEC)
    assert svc.subscription_request_approve(request=asked, by=None, now=NOW + timedelta(days=2)).pk == asked.pk


def test_approved_after_its_date_takes_effect_from_the_approval(sub, settings, versions):
    settings.SUBSCRIPTION_DOWNGRADE_REQUIRES_APPROVAL = True
    asked = change(sub, "starter")
    late = DEC + timedelta(days=3)
    approved = svc.subscription_request_approve(request=asked, by=None, now=late)
    assert (approved.status, approved.effective_at) == ("applied", late)
    sub.refresh_from_db()
    assert sub.plan_version == versions["starter"]


def sent(**filters):
    """The emails recorded (sent by a worker after commit), oldest first."""
    return list(EmailDelivery.objects.filter(kind="subscription_change", **filters).order_by("pk"))


def test_refused_is_told_with_its_note(sub, settings):
    settings.SUBSCRIPTION_DOWNGRADE_REQUIRES_APPROVAL = True
    asked = change(sub, "starter")
    refused = svc.subscription_request_refuse(request=asked, by=None, note="Your contract runs to March.", now=NOW)
    assert refused.status == "refused"
    assert "not approved" in sent()[-1].subject and "Your contract runs to March." in sent()[-1].body
    with pytest.raises(ApplicationError, match="nothing to approve"):
        svc.subscription_request_approve(request=asked, by=None, now=NOW)


def test_every_step_is_confirmed_by_email_to_the_billing_contact(sub, django_user_model):
    owner = django_user_model.objects.create_user("ann", email="ann@acme.example")
    change(sub, "starter")
    svc.subscription_request_withdraw(subscription=sub, by=owner, now=NOW)
    svc.subscription_request_cancel(subscription=sub, by=owner, period_end=DEC, now=NOW)
    svc.subscription_request_withdraw(subscription=sub, by=owner, now=NOW)
    change(sub, "business")
    mailoutbox = sent()
    subjects = [message.subject.split(": ", 1)[1] for message in mailoutbox]
    assert subjects == [
        "your move to Starter is scheduled", "your move to Starter is withdrawn",
        "your subscription ends at the end of this period", "your subscription goes on", "your plan is now Business",
    ]
    assert {message.recipient for message in mailoutbox} == {"billing@acme.example"}
    assert "Asked by ann@acme.example" in mailoutbox[1].body
    assert "2026-12-01 00:00 UTC" in mailoutbox[0].body
    assert all(message.tenant == sub.tenant for message in mailoutbox)


def test_the_due_task_applies_once_and_emits_the_webhooks(sub, versions):
    svc.subscription_request_plan(subscription=sub, plan_code="starter", by=None, next_period_start=DEC, now=NOW)
    other = subscription_create(tenant=TenantFactory(slug="globex"), plan_version=versions["pro"], started_at=NOV,
                                with_trial=False)
    svc.subscription_request_cancel(subscription=other, by=None, period_end=DEC, now=NOW)
    with (mock.patch("tenants.services.subscriptions.webhook_emit") as emitted,
          mock.patch("tenants.services.lifecycle.webhook_emit") as lifecycle_emitted):
        assert svc.subscription_requests_apply_due(now=DEC - timedelta(seconds=1)) == 0
        assert svc.subscription_requests_apply_due(now=DEC) == 2
        assert svc.subscription_requests_apply_due(now=DEC + timedelta(minutes=5)) == 0
    types = [c.kwargs["type"] for c in emitted.call_args_list] + [c.kwargs["type"] for c in lifecycle_emitted.call_args_list]
    assert sorted(types) == ["subscription.ended", "subscription.plan_changed", "tenant.cancelled"]
    sub.refresh_from_db()
    other.refresh_from_db()
    other.tenant.refresh_from_db()
    assert sub.plan_version == versions["starter"] and other.tenant.status == TenantStatus.CANCELLED
    assert set(SubscriptionRequest.objects.values_list("status", flat=True)) == {SubscriptionRequestStatus.APPLIED}
    assert {m.subject.split(": ", 1)[1] for m in sent()[-2:]} == {"your plan is now Starter",
                                                                     "your subscription has ended"}
