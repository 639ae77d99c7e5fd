"""Billing across a tenant's own changes: a downgrade scheduled for the next period, a cancellation at the period's
end and an upgrade mid-period, each billed through the billing run to the cent (docs/plans.md, "Changing plan")."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from unittest import mock

import pytest

from metering.selectors.billing import projected_bill, self_service_preview
from metering.services.billing.run import billing_run
from metering.services.self_service import (
    subscription_self_cancel,
    subscription_self_change,
    subscription_self_withdraw,
)
from metering.tests.test_billing import add_usage
from tenants.models import Subscription, SubscriptionChange, SubscriptionStatus, TenantStatus
from tenants.services.subscription_requests import subscription_requests_apply_due
from tenants.services.subscriptions import subscription_create
from tenants.tests.factories import TenantFactory, import_sample_plans

OCT = datetime(2026, 10, 1, tzinfo=UTC)
NOV = datetime(2026, 11, 1, tzinfo=UTC)
DEC = datetime(2026, 12, 1, tzinfo=UTC)
JAN = datetime(2027, 1, 1, tzinfo=UTC)


@pytest.fixture
def versions(db):
    return import_sample_plans()  # pro: 49.00 a month, commitment 100.00; starter: no base fee, 0.001 a call


def _subscribe(version, slug="acme", start=NOV):
    tenant = TenantFactory(slug=slug)
    return subscription_create(tenant=tenant, plan_version=version, started_at=start, with_trial=False)


def _bill(as_of):
    return billing_run(as_of=as_of, sync=False, finalize_now=True)


def _lines(invoice):
    return {(line.plan_code, line.type, line.metric_code): line.amount for line in invoice.lines.all()}


@pytest.mark.parametrize("task_runs_first", [True, False], ids=["task-then-billing", "billing-before-the-task"])
def test_a_scheduled_downgrade_bills_this_period_on_the_old_plan_and_the_next_on_the_new(versions, task_runs_first):
    sub = _subscribe(versions["pro"])
    asked = subscription_self_change(tenant=sub.tenant, plan_code="starter", by=None, now=datetime(2026, 11, 10, tzinfo=UTC))
    assert (asked.kind, asked.status, asked.effective_at) == ("downgrade", "scheduled", DEC)
    sub.refresh_from_db()
    assert sub.plan_version == versions["pro"], "still on pro until the period ends"
    add_usage(sub.tenant, "api_calls", datetime(2026, 11, 5, tzinfo=UTC), 20000)
    add_usage(sub.tenant, "api_calls", datetime(2026, 12, 5, tzinfo=UTC), 5000)

    if task_runs_first:
        assert subscription_requests_apply_due(now=DEC + timedelta(minutes=5)) == 1
    november = _bill(DEC + timedelta(hours=2)).created[0]
    # Pro for the whole of November: 49.00 + 10000 × 0.0005 = 54.00, brought up to the 100.00 commitment.
    assert november.period_start == NOV and november.total == Decimal("100.00")
    assert {plan for plan, _, _ in _lines(november)} == {"pro"}
    december = _bill(JAN + timedelta(hours=2)).created[0]
    # Starter for the whole of December: 5000 × 0.001 = 5.00, no base fee, no commitment.
    assert december.period_start == DEC and december.total == Decimal("5.00")
    assert _lines(december) == {("starter", "usage", "api_calls"): Decimal("5.00")}

    subscription_requests_apply_due(now=JAN)
    sub.refresh_from_db()
    assert sub.plan_version == versions["starter"]
    asked.refresh_from_db()
    assert asked.status == "applied"


def test_a_cancellation_at_the_period_end_bills_the_whole_period_and_nothing_after(versions):
    sub = _subscribe(versions["pro"])
    cancel = subscription_self_cancel(tenant=sub.tenant, by=None, now=datetime(2026, 11, 10, tzinfo=UTC))
    assert (cancel.kind, cancel.status, cancel.effective_at) == ("cancel", "scheduled", DEC)
    add_usage(sub.tenant, "api_calls", datetime(2026, 11, 20, tzinfo=UTC), 30000)
    add_usage(sub.tenant, "api_calls", datetime(2026, 12, 2, tzinfo=UTC), 99999)  # after the end: never billed

    assert subscription_requests_apply_due(now=DEC + timedelta(minutes=5)) == 1
    sub.refresh_from_db()
    sub.tenant.refresh_from_db()
    assert sub.status == SubscriptionStatus.ENDED and sub.ends_at == DEC, "ended at the period's end, not the task's run"
    assert sub.tenant.status == TenantStatus.CANCELLED
    assert subscription_requests_apply_due(now=DEC + timedelta(minutes=10)) == 0, "a second run does nothing"

    november = _bill(DEC + timedelta(hours=2)).created[0]
    assert november.period_start == NOV
    assert _lines(november)[("pro", "base_fee", "")] == Decimal("49.00"), "the whole base fee: not prorated"
    assert november.total == Decimal("100.00")  # 49 + 20000 × 0.0005 = 59.00, commitment true-up to 100.00
    assert _bill(JAN + timedelta(hours=2)).created == []


def test_an_undone_cancellation_bills_on_as_before(versions):
    sub = _subscribe(versions["pro"])
    subscription_self_cancel(tenant=sub.tenant, by=None, now=datetime(2026, 11, 10, tzinfo=UTC))
    subscription_self_withdraw(tenant=sub.tenant, by=None, now=datetime(2026, 11, 20, tzinfo=UTC))
    assert subscription_requests_apply_due(now=DEC + timedelta(minutes=5)) == 0
    _bill(DEC + timedelta(hours=2))
    assert [invoice.period_start for invoice in _bill(JAN + timedelta(hours=2)).created] == [DEC]
    sub.refresh_from_db()
    assert sub.status == SubscriptionStatus.ACTIVE


def test_a_withdrawn_downgrade_leaves_no_change_for_billing(versions):
    sub = _subscribe(versions["pro"])
    subscription_self_change(tenant=sub.tenant, plan_code="starter", by=None, now=datetime(2026, 11, 10, tzinfo=UTC))
    assert SubscriptionChange.objects.filter(subscription=sub, changed_at=DEC).exists()
    subscription_self_withdraw(tenant=sub.tenant, by=None, now=datetime(2026, 11, 11, tzinfo=UTC))
    assert not SubscriptionChange.objects.filter(subscription=sub).exists()
    _bill(DEC + timedelta(hours=2))
    december = _bill(JAN + timedelta(hours=2)).created[0]
    assert {plan for plan, _, _ in _lines(december)} == {"pro"}


def test_an_upgrade_mid_period_is_billed_in_two_parts_and_previewed_as_billed(versions):
    sub = _subscribe(versions["starter"], start=OCT)
    change_at = datetime(2026, 10, 16, tzinfo=UTC)
    add_usage(sub.tenant, "api_calls", OCT + timedelta(days=3), 4000)  # under starter: 4000 × 0.001 = 4.00
    with mock.patch("django.utils.timezone.now", return_value=change_at):
        preview = self_service_preview(tenant=sub.tenant, plan_code="pro", as_of=change_at)
    assert (preview.kind, preview.effective_at, preview.estimated) == ("upgrade", change_at, False)
    # Starter's 4.00 until now, then Pro for 16 of 31 days: base 25.29, commitment 51.61 (the true-up wins).
    assert preview.priced.total == Decimal("51.61")

    upgrade = subscription_self_change(tenant=sub.tenant, plan_code="pro", by=None, now=change_at)
    assert (upgrade.kind, upgrade.status) == ("upgrade", "applied")
    sub.refresh_from_db()
    assert sub.plan_version == versions["pro"]
    add_usage(sub.tenant, "api_calls", change_at + timedelta(days=3), 15000)  # under pro: 5000 × 0.0005 = 2.50
    invoice = _bill(NOV + timedelta(hours=2)).created[0]
    lines = _lines(invoice)
    assert lines[("starter", "usage", "api_calls")] == Decimal("4.00")
    assert lines[("pro", "usage", "api_calls")] == Decimal("2.50")
    assert lines[("pro", "base_fee", "")] == Decimal("25.29")
    assert invoice.total == Decimal("51.61") == preview.priced.total


def test_a_downgrade_preview_prices_the_next_period_on_this_periods_usage(versions):
    sub = _subscribe(versions["pro"])
    now = datetime(2026, 11, 10, 12, 30, tzinfo=UTC)
    add_usage(sub.tenant, "api_calls", datetime(2026, 11, 2, tzinfo=UTC), 7000)
    add_usage(sub.tenant, "api_calls", datetime(2026, 11, 10, 12, tzinfo=UTC), 500)  # the hour under way: not yet
    preview = self_service_preview(tenant=sub.tenant, plan_code="starter", as_of=now)
    assert (preview.kind, preview.effective_at, preview.estimated) == ("downgrade", DEC, True)
    assert (preview.priced.period_start, preview.priced.period_end) == (DEC, JAN)
    assert preview.priced.total == Decimal("7.00")  # 7000 × 0.001
    assert projected_bill(tenant=sub.tenant, as_of=now).total == Decimal("100.00"), "the current plan's, unchanged"
    assert Subscription.objects.get(pk=sub.pk).plan_version == versions["pro"], "a preview changes nothing"


def test_the_docs_example_bills_as_written(db):
    """docs/plans.md, "Changing plan": Team to Starter on 10 December, then a cancellation on 20 January."""
    import json

    from metering.tests.test_plans_doc import FILES
    from tenants.services.plans import plans_import

    plans_import(document=json.loads(FILES["team.json"]))
    plans_import(document={"code": "starter", "name": "Starter", "currency": "USD", "interval": "month",
                           "base_fee": "10.00",
                           "charges": [{"metric": "requests", "model": "per_unit", "unit_amount": "0.0002"}]})
    from tenants.models import Plan

    team = Plan.objects.get(code="team").current_version
    sub = subscription_create(tenant=TenantFactory(slug="acme"), plan_version=team, started_at=DEC, with_trial=False)
    asked = subscription_self_change(tenant=sub.tenant, plan_code="starter", by=None,
                                     now=datetime(2026, 12, 10, 12, 30, tzinfo=UTC))
    assert (asked.kind, asked.effective_at) == ("downgrade", JAN)
    subscription_requests_apply_due(now=JAN)
    add_usage(sub.tenant, "requests", datetime(2027, 1, 5, tzinfo=UTC), 100000)
    feb = datetime(2027, 2, 1, tzinfo=UTC)
    cancel = subscription_self_cancel(tenant=sub.tenant, by=None, now=datetime(2027, 1, 20, tzinfo=UTC))
    assert cancel.effective_at == feb
    subscription_requests_apply_due(now=feb)

    december = _bill(JAN + timedelta(hours=2)).created[0]
    assert {plan for plan, _, _ in _lines(december)} == {"team"} and december.total == Decimal("60.00")
    january = _bill(feb + timedelta(hours=2)).created[0]
    assert {plan for plan, _, _ in _lines(january)} == {"starter"} and january.total == Decimal("30.00")
    assert _bill(datetime(2027, 3, 1, 2, tzinfo=UTC)).created == []
