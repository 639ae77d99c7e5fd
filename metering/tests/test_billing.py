"""Billing runs: exactly one invoice per subscription and period, priced as docs/plans.md says, to the cent."""

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from unittest import mock

import pytest
from django.core import mail
from django.core.management import call_command

from metering.models import (
    BillingRun,
    BillingRunStatus,
    FinalizedInvoiceError,
    HourlyUsage,
    Invoice,
    InvoiceStatus,
    LineType,
)
from metering.pricing import price_added_usage, price_charge
from metering.selectors.billing import projected_bill
from metering.services.billing import run as billing_module
from metering.services.billing.invoices import invoice_finalize, invoice_reissue
from metering.services.billing.run import billing_run
from metering.tests.processes import concurrently
from tenants.models import BillingCycle, Metric
from tenants.services.subscriptions import subscription_change_plan, subscription_create, subscription_end
from tenants.tests.factories import SAMPLE_FILE, TenantFactory, import_sample_plans

OCT = datetime(2026, 10, 1, tzinfo=UTC)
NOV = datetime(2026, 11, 1, tzinfo=UTC)
DEC = datetime(2026, 12, 1, tzinfo=UTC)


def add_usage(tenant, code, hour, value):
    """Add an hourly usage row (raw value, before the metric's divisor)."""
    row, created = HourlyUsage.objects.get_or_create(
        tenant=tenant, metric=Metric.objects.get(code=code), hour=hour, defaults={"value": Decimal(value)}
    )
    if not created:
        row.value += Decimal(value)
        row.save()


def bill(as_of, **kwargs):
    kwargs.setdefault("sync", False)
    return billing_run(as_of=as_of, **kwargs)


def lines_of(invoice):
    return [(line.type, line.metric_code, line.quantity, line.amount) for line in invoice.lines.order_by("position")]


@pytest.fixture
def versions(db):
    return import_sample_plans()


def _subscribe(slug, version, start=OCT, **kwargs):
    tenant = TenantFactory(slug=slug)
    kwargs.setdefault("with_trial", False)
    return subscription_create(tenant=tenant, plan_version=version, started_at=start, **kwargs)


def test_closed_period_is_billed_once_to_the_cent(versions):
    sub = _subscribe("acme", versions["pro"])
    add_usage(sub.tenant, "api_calls", OCT + timedelta(hours=5), 7000)
    add_usage(sub.tenant, "api_calls", OCT + timedelta(days=20), 5000)
    add_usage(sub.tenant, "data_out_mb", OCT + timedelta(days=3), 2_500_000)  # 2.5 MB
    first = bill(NOV + timedelta(hours=2))
    assert len(first.created) == 1
    invoice = first.created[0]
    assert (invoice.period_start, invoice.period_end, invoice.currency) == (OCT, NOV, "USD")
    # 49.00 base + graduated(12000) = 2000 × 0.0005 = 1.00 + 2.5 MB × 0.09 = 0.225 -> 0.23; true-up to 100.00.
    assert lines_of(invoice) == [
        ("base_fee", "", None, Decimal("49.00")),
        ("usage", "api_calls", Decimal("12000"), Decimal("1.00")),
        ("usage", "data_out_mb", Decimal("2.5"), Decimal("0.23")),
        ("minimum_commitment", "", None, Decimal("49.77")),
    ]
    assert invoice.total == Decimal("100.00")
    again = bill(NOV + timedelta(hours=3))
    assert again.created == []
    assert Invoice.objects.filter(subscription=sub).count() == 1


def test_totals_equal_the_price_preview(versions, tmp_path, capsys):
    sub = _subscribe("acme", versions["pro"])
    add_usage(sub.tenant, "api_calls", OCT + timedelta(days=1), 2_345_678)
    add_usage(sub.tenant, "data_out_mb", OCT + timedelta(days=2), 987_654_321)
    invoice = bill(NOV).created[0]
    plan_file = tmp_path / "plans.json"
    plan_file.write_text(json.dumps({"metrics": SAMPLE_FILE["metrics"], "plans": [SAMPLE_FILE["plans"][0]]}))
    call_command("price_preview", "--plan-file", str(plan_file), "--usage", "api_calls=2345678",
                 "--usage", "data_out_mb=987.654321", "--period-start", "2026-10-01T00:00:00Z",
                 "--period-end", "2026-11-01T00:00:00Z")
    preview = json.loads(capsys.readouterr().out)
    assert Decimal(preview["total"]) == invoice.total
    assert [Decimal(line["amount"]) for line in preview["lines"]] == [line.amount for line in invoice.lines.all()]


def test_draft_until_grace_period_then_finalized_with_late_records(versions, settings, django_capture_on_commit_callbacks):
    settings.BILLING_GRACE_PERIOD_MINUTES = 60
    sub = _subscribe("acme", versions["starter"])
    add_usage(sub.tenant, "api_calls", OCT + timedelta(days=2), 1000)
    invoice = bill(NOV + timedelta(minutes=5)).created[0]
    assert invoice.status == InvoiceStatus.DRAFT and invoice.number is None
    assert invoice.total == Decimal("1.00")
    add_usage(sub.tenant, "api_calls", NOV - timedelta(hours=1), 500)  # a late record inside the grace period
    assert bill(NOV + timedelta(minutes=30)).finalized == []
    with django_capture_on_commit_callbacks(execute=True):
        result = bill(NOV + timedelta(minutes=70))
    invoice.refresh_from_db()
    assert result.finalized == [invoice]
    assert invoice.status == InvoiceStatus.FINALIZED and invoice.number == "INV-2026-000001"
    assert invoice.total == Decimal("1.50")
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["billing@acme.example"]
    assert "INV-2026-000001" in mail.outbox[0].subject and "1.50" in mail.outbox[0].body


def test_late_usage_after_finalization_goes_on_the_next_invoice(versions):
    sub = _subscribe("acme", versions["starter"])
    add_usage(sub.tenant, "api_calls", OCT + timedelta(days=2), 1000)
    october = bill(NOV, finalize_now=True).created[0]
    october.refresh_from_db()
    assert october.status == InvoiceStatus.FINALIZED and october.total == Decimal("1.00")
    add_usage(sub.tenant, "api_calls", OCT + timedelta(days=30), 250)  # arrives after October was sent
    add_usage(sub.tenant, "api_calls", NOV + timedelta(days=1), 2000)
    november = bill(DEC, finalize_now=True).created[0]
    november.refresh_from_db()
    late = november.lines.get(type=LineType.LATE_USAGE)
    assert (late.metric_code, late.quantity, late.amount, late.adjusts) == ("api_calls", Decimal("250"), Decimal("0.25"), october)
    assert october.number in late.description
    assert november.total == Decimal("2.25")
    october.refresh_from_db()
    assert october.total == Decimal("1.00"), "a finalized invoice is never edited"
    # The late usage is billed once: the next invoice does not bill it again.
    january = bill(datetime(2027, 1, 1, tzinfo=UTC), finalize_now=True).created[0]
    assert not january.lines.filter(type=LineType.LATE_USAGE).exists()


def test_late_usage_of_a_graduated_charge_is_priced_by_the_engine_at_the_margin(versions):
    sub = _subscribe("acme", versions["pro"])
    add_usage(sub.tenant, "api_calls", OCT + timedelta(days=2), 999_000)
    october = bill(NOV, finalize_now=True).created[0]
    assert october.lines.get(type=LineType.USAGE, metric_code="api_calls").amount == Decimal("494.50")
    add_usage(sub.tenant, "api_calls", OCT + timedelta(days=30), 3001)  # crosses into the third tier
    november = bill(DEC, finalize_now=True).created[0]
    late = november.lines.get(type=LineType.LATE_USAGE)
    charge = versions["pro"].to_spec().charges[0]
    # What the period's whole quantity costs less what was billed (not the 3,001 calls priced alone, 0.00):
    # 990,000 × 0.0005 + 2,001 × 0.0002 + 25.00 = 520.40, less 494.50.
    engine = price_charge(charge, Decimal(1_002_001), "USD") - price_charge(charge, Decimal(999_000), "USD")
    assert (late.quantity, late.amount, late.unit_amount) == (Decimal("3001"), engine, None)
    assert late.amount == Decimal("25.90")
    assert late.amount == price_added_usage(charge, billed=Decimal(999_000), quantity=Decimal(1_002_001),
                                            currency="USD")
    assert november.total == Decimal("100.00") + Decimal("25.90")  # the true-up concerns November's own lines


def test_anniversary_cycle(versions):
    start = datetime(2026, 9, 15, 12, tzinfo=UTC)
    sub = _subscribe("acme", versions["pro"], start=start, billing_cycle=BillingCycle.ANNIVERSARY)
    result = bill(datetime(2026, 11, 20, tzinfo=UTC))
    periods = sorted((i.period_start, i.period_end) for i in result.created)
    assert periods == [
        (start, datetime(2026, 10, 15, 12, tzinfo=UTC)),
        (datetime(2026, 10, 15, 12, tzinfo=UTC), datetime(2026, 11, 15, 12, tzinfo=UTC)),
    ]
    assert all(i.total == Decimal("100.00") for i in result.created)  # whole periods: full base fee and commitment
    assert sub.invoices.count() == 2


def test_plan_change_mid_period_is_priced_as_two_parts(versions):
    sub = _subscribe("acme", versions["starter"])
    change_at = datetime(2026, 10, 16, tzinfo=UTC)
    add_usage(sub.tenant, "api_calls", OCT + timedelta(days=3), 4000)  # under starter: 4000 × 0.001 = 4.00
    subscription_change_plan(subscription=sub, plan_version=versions["pro"], at=change_at)
    add_usage(sub.tenant, "api_calls", change_at + timedelta(days=3), 15000)  # under pro: 5000 × 0.0005 = 2.50
    invoice = bill(NOV).created[0]
    lines = {(line.plan_code, line.type, line.metric_code): line for line in invoice.lines.all()}
    assert lines[("starter", "usage", "api_calls")].amount == Decimal("4.00")
    assert lines[("pro", "usage", "api_calls")].amount == Decimal("2.50")
    # Pro's base fee and commitment for 16 of 31 days: 49 × 16/31 = 25.29; commitment 100 × 16/31 = 51.61.
    assert lines[("pro", "base_fee", "")].amount == Decimal("25.29")
    assert invoice.total == Decimal("51.61")


def test_trial_that_ends_mid_period(versions):
    tenant = TenantFactory(slug="trialing")
    sub = subscription_create(tenant=tenant, plan_version=versions["pro"], started_at=OCT)  # 14-day trial
    assert sub.trial_ends_at == datetime(2026, 10, 15, tzinfo=UTC)
    add_usage(tenant, "api_calls", OCT + timedelta(days=3), 900_000)  # during the trial: free
    add_usage(tenant, "api_calls", OCT + timedelta(days=20), 30_000)  # after: 20000 × 0.0005 = 10.00
    invoice = bill(NOV).created[0]
    lines = {line.type: line for line in invoice.lines.all() if line.type != "usage"}
    usage = invoice.lines.get(metric_code="api_calls")
    assert usage.quantity == Decimal("30000") and usage.amount == Decimal("10.00")
    # 17 of 31 days are billable: base 49 × 17/31 = 26.87; commitment 100 × 17/31 = 54.84.
    assert lines["base_fee"].amount == Decimal("26.87")
    assert invoice.total == Decimal("54.84")


def test_cancelled_subscription_bills_its_last_partial_period(versions):
    from tenants.services.lifecycle import tenant_cancel

    sub = _subscribe("leaving", versions["pro"])
    with mock.patch("django.utils.timezone.now", return_value=datetime(2026, 10, 11, tzinfo=UTC)):
        tenant_cancel(tenant=sub.tenant)
    invoice = bill(datetime(2026, 10, 12, tzinfo=UTC)).created[0]
    assert (invoice.period_start, invoice.period_end) == (OCT, NOV)
    assert invoice.lines.get(type="base_fee").amount == Decimal("15.81")  # 49 × 10/31
    assert bill(datetime(2027, 1, 1, tzinfo=UTC)).created == []


def test_run_killed_half_way_is_finished_by_a_rerun(versions):
    subs = [_subscribe(f"t{i}", versions["starter"]) for i in range(4)]
    real = billing_module.invoices_create_locked
    calls = {"n": 0}

    def dies_in_the_second_batch(**kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("worker killed")
        return real(**kwargs)

    with (mock.patch.object(billing_module, "BATCH_SIZE", 2),
          mock.patch.object(billing_module, "invoices_create_locked", side_effect=dies_in_the_second_batch),
          pytest.raises(RuntimeError)):
        bill(NOV)
    assert Invoice.objects.count() == 2, "the first batch is committed, the one that died is rolled back whole"
    assert not Invoice.objects.filter(lines__isnull=True).exists(), "no half-written invoice"
    failed = BillingRun.objects.get()
    assert failed.status == BillingRunStatus.FAILED and failed.errors == "RuntimeError: worker killed"
    assert failed.invoices_created == 2 and failed.finished_at is not None
    bill(NOV)
    assert sorted(Invoice.objects.values_list("subscription_id", flat=True)) == sorted(s.pk for s in subs)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_concurrent_runs_make_one_invoice_each():
    versions = import_sample_plans()
    subs = [_subscribe(f"c{i}", versions["pro"]) for i in range(12)]
    for sub in subs:
        add_usage(sub.tenant, "api_calls", OCT + timedelta(days=1), 20000)
    concurrently(lambda: bill(NOV + timedelta(hours=2), finalize_now=True))  # raises what a run raised
    for sub in subs:
        assert Invoice.objects.filter(subscription=sub).count() == 1
    numbers = sorted(Invoice.objects.values_list("number", flat=True))
    assert numbers == [f"INV-2026-{n:06d}" for n in range(1, 13)], "numbers are sequential and unique"


def test_second_live_invoice_is_refused_by_the_database(versions):
    from django.db import IntegrityError, transaction

    sub = _subscribe("acme", versions["starter"])
    invoice = bill(NOV).created[0]
    with pytest.raises(IntegrityError), transaction.atomic():
        Invoice.objects.create(tenant=sub.tenant, subscription=sub, period_start=OCT, period_end=NOV,
                               currency="USD", finalize_after=NOV)
    assert Invoice.objects.filter(subscription=sub).count() == 1 and invoice.pk


def test_finalized_invoice_is_never_edited_but_can_be_voided_and_reissued(versions):
    sub = _subscribe("acme", versions["starter"])
    add_usage(sub.tenant, "api_calls", OCT + timedelta(days=2), 1000)
    invoice = invoice_finalize(invoice=bill(NOV).created[0], at=NOV)
    invoice.total = Decimal("0.01")
    with pytest.raises(FinalizedInvoiceError):
        invoice.save()
    with pytest.raises(FinalizedInvoiceError):
        invoice.lines.first().delete()
    add_usage(sub.tenant, "api_calls", OCT + timedelta(days=3), 1000)
    replacement = invoice_reissue(invoice=Invoice.objects.get(pk=invoice.pk), reason="usage corrected", at=NOV)
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.VOID and replacement.replaces == invoice
    assert replacement.status == InvoiceStatus.DRAFT and replacement.total == Decimal("2.00")
    assert invoice_reissue(invoice=invoice) == replacement, "reissuing twice issues one replacement"


def test_period_option_limits_the_run(versions):
    _subscribe("acme", versions["starter"], start=datetime(2026, 9, 1, tzinfo=UTC))
    result = bill(NOV, period="2026-10")
    assert [(i.period_start, i.period_end) for i in result.created] == [(OCT, NOV)]


def test_projected_bill_prices_the_current_period_so_far(versions):
    sub = _subscribe("acme", versions["pro"])
    add_usage(sub.tenant, "api_calls", NOV + timedelta(days=2), 40000)
    priced = projected_bill(tenant=sub.tenant, as_of=NOV + timedelta(days=10))
    assert (priced.period_start, priced.period_end) == (NOV, DEC)
    usage = next(line for line in priced.lines if line.metric == "api_calls")
    assert usage.amount == Decimal("15.00")  # 30000 × 0.0005
    assert priced.total == Decimal("100.00")


def test_run_billing_command(versions, capsys):
    _subscribe("acme", versions["starter"])
    call_command("run_billing", "--as-of", "2026-11-01T02:00:00Z", "--no-sync", "--finalize-now")
    out = capsys.readouterr().out
    assert "INV-2026-000001" in out and "1 invoices created" in out
    call_command("run_billing", "--as-of", "2026-11-01T03:00:00Z", "--no-sync")
    assert "0 invoices created" in capsys.readouterr().out
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="not a month"):
        call_command("run_billing", "--period", "October", "--no-sync")


@pytest.fixture
def empty_worker_lake(monkeypatch, tmp_path, settings):
    """The worker (started after this fixture) reads an existing lake with no record: the final sync's
    empty answer is then a legitimate one (a missing lake would fail the run)."""
    from metering.lake.local import LocalLake

    folder = tmp_path / "worker-lake"
    monkeypatch.setenv("LAKE_BACKEND", "local")
    monkeypatch.setenv("LAKE_WAREHOUSE_DIR", str(folder))
    LocalLake(warehouse=folder, database=settings.LAKE_DATABASE, table=settings.LAKE_TABLE).ensure_table()


@pytest.mark.redis
def test_billing_task_on_a_real_worker(empty_worker_lake, celery_worker_process):
    from metering.tasks import run_billing

    versions = import_sample_plans()
    _subscribe("worker", versions["starter"])
    result = run_billing.apply_async(kwargs={"as_of": "2026-11-01T02:00:00+00:00"}, queue=celery_worker_process)
    assert result.get(timeout=120)["created"] == 1
    assert run_billing.apply_async(kwargs={"as_of": "2026-11-01T03:00:00+00:00"}, queue=celery_worker_process).get(timeout=120)["created"] == 0
    assert Invoice.objects.count() == 1


def test_calls_in_the_first_and_last_partial_hours_are_billed(versions):
    start = datetime(2026, 10, 3, 14, 23, tzinfo=UTC)
    sub = _subscribe("partial", versions["starter"], start=start)
    add_usage(sub.tenant, "api_calls", datetime(2026, 10, 3, 14, tzinfo=UTC), 100)  # the hour it started in
    subscription_end(subscription=sub, at=datetime(2026, 10, 20, 9, 40, tzinfo=UTC))
    add_usage(sub.tenant, "api_calls", datetime(2026, 10, 20, 9, tzinfo=UTC), 50)  # the hour it ended in
    invoice = bill(NOV).created[0]
    assert invoice.lines.get(metric_code="api_calls").quantity == Decimal("150")
