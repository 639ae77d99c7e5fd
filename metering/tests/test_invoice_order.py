"""The order of an invoice after its lines (docs/plans.md, "After the lines: discounts, tax, credits"), through
the entry points: the doc's Studio example billed with `manage.py run_billing`, the invoice page and email, the
API (invoices, projected bill, credits, staff grants and coupons), voiding (credits given back), an invoice paid
by credits alone, and payments after credits. Every figure is worked out by hand in docs/plans.md or here."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.core import mail
from django.core.management import call_command
from django.db import IntegrityError, transaction

from metering.models import (
    CreditEntry,
    CreditGrant,
    CreditLedgerError,
    HourlyUsage,
    Invoice,
    InvoiceStatus,
)
from metering.services.billing.invoices import invoice_reissue, invoice_void
from metering.services.billing.payments import invoice_amount_due, invoice_payment_record
from metering.services.credits import credit_grant_create
from metering.tests.api_fixtures import PASSWORD, api_identity_dir, local_identity  # noqa: F401
from metering.tests.test_plans_doc import FILES
from portal.kernel import ApplicationError
from tenants.models import Metric, PlanVersion, TaxRate, Tenant, TenantRole
from tenants.services import identity as identity_services
from tenants.services.coupons import coupon_apply, coupon_create, tax_rate_save
from tenants.services.subscriptions import subscription_create
from tenants.tests.factories import TenantFactory

OCT_31 = datetime(2026, 10, 31, tzinfo=UTC)
NOV = datetime(2026, 11, 1, tzinfo=UTC)
DEC = datetime(2026, 12, 1, tzinfo=UTC)
JAN = datetime(2027, 1, 1, tzinfo=UTC)
D = Decimal


def run_billing(as_of: datetime) -> str:
    out = StringIO()
    call_command("run_billing", "--as-of", as_of.isoformat(), "--no-sync", "--finalize-now", stdout=out)
    return out.getvalue()


def renders(tenant, hour, value):
    HourlyUsage.objects.create(tenant=tenant, metric=Metric.objects.get(code="renders"), hour=hour, value=D(value))


@pytest.fixture
def studio(db, tmp_path):
    """docs/plans.md's Studio plan imported, its two coupons and the two VAT rates."""
    path = tmp_path / "studio.json"
    path.write_text(FILES["studio.json"])
    call_command("import_plans", str(path), stdout=StringIO())
    launch = coupon_create(code="LAUNCH10", name="Launch", kind="percent", percent_off="10", duration="forever")
    welcome = coupon_create(code="WELCOME5", name="Welcome", kind="fixed", amount_off="5.00", currency="EUR",
                            duration="once")
    exclusive = tax_rate_save(tax_rate=TaxRate(name="VAT 20 %", percentage=D(20), country="FR"))
    inclusive = tax_rate_save(tax_rate=TaxRate(name="VAT 20 % incl.", percentage=D(20), inclusive=True, country="FR"))
    return {"version": PlanVersion.objects.get(plan__code="studio"), "coupons": (launch, welcome),
            "exclusive": exclusive, "inclusive": inclusive}


def customer(studio, slug, rate, *, credit="30.00"):
    """A tenant on Studio from 1 November with the two coupons (LAUNCH10 first), `rate`, a 30.00 grant, and
    50,000 renders in November."""
    tenant = TenantFactory(slug=slug, tax_rate=rate, country="FR", tax_id=f"FR{slug.upper()}123")
    subscription = subscription_create(tenant=tenant, plan_version=studio["version"], started_at=NOV, with_trial=False)
    for coupon in studio["coupons"]:
        coupon_apply(subscription=subscription, coupon=coupon, at=OCT_31)
    if credit:
        credit_grant_create(tenant=tenant, amount=credit, currency="EUR", note="Welcome credit")
    renders(tenant, NOV + timedelta(days=9), 50_000)
    return subscription


def figures(invoice):
    return {name: getattr(invoice, name) for name in ("subtotal", "discount", "tax", "total", "credits_applied")}


def test_the_docs_studio_example_billed_by_run_billing(studio):
    exclusive = customer(studio, "atelier", studio["exclusive"])
    inclusive = customer(studio, "bureau", studio["inclusive"])
    run_billing(DEC + timedelta(hours=2))

    november = Invoice.objects.get(subscription=exclusive, period_start=NOV)
    assert figures(november) == {"subtotal": D("200.00"), "discount": D("25.00"), "tax": D("35.00"),
                                 "total": D("210.00"), "credits_applied": D("50.00")}
    assert (november.tax_name, november.tax_percentage, november.tax_inclusive) == ("VAT 20 %", D(20), False)
    assert [(d.coupon_code, d.amount) for d in november.discounts.order_by("position")] == [
        ("LAUNCH10", D("20.00")), ("WELCOME5", D("5.00"))]
    assert invoice_amount_due(november) == D("160.00") and november.status == InvoiceStatus.FINALIZED
    # The included credit expires first (1 December), so it is drawn first; then the grant that never expires.
    assert [(e.grant.source, e.amount, e.remaining_after) for e in november.credit_entries.order_by("pk")] == [
        ("plan", D("20.00"), D("0.00")), ("staff", D("30.00"), D("0.00"))]

    incl = Invoice.objects.get(subscription=inclusive, period_start=NOV)
    assert figures(incl) == {"subtotal": D("200.00"), "discount": D("25.00"), "tax": D("29.17"),
                             "total": D("175.00"), "credits_applied": D("50.00")}
    assert incl.tax_inclusive and invoice_amount_due(incl) == D("125.00")

    # December: WELCOME5 had its one period; the grant is spent; December's included credit pays 20.00.
    renders(exclusive.tenant, DEC + timedelta(days=3), 50_000)
    run_billing(JAN + timedelta(hours=2))
    december = Invoice.objects.get(subscription=exclusive, period_start=DEC)
    assert figures(december) == {"subtotal": D("200.00"), "discount": D("20.00"), "tax": D("36.00"),
                                 "total": D("216.00"), "credits_applied": D("20.00")}
    assert invoice_amount_due(december) == D("196.00")
    assert list(december.discounts.values_list("coupon_code", flat=True)) == ["LAUNCH10"]


def test_a_rerun_draws_nothing_twice_and_the_ledger_is_never_edited(studio):
    subscription = customer(studio, "atelier", studio["exclusive"])
    run_billing(DEC + timedelta(hours=2))
    entries = list(CreditEntry.objects.values_list("pk", "amount"))
    run_billing(DEC + timedelta(hours=3))
    assert list(CreditEntry.objects.values_list("pk", "amount")) == entries
    assert Invoice.objects.filter(subscription=subscription).count() == 1
    # One included grant per period, however often billing looks (November's, and December's, the current one).
    assert sorted(CreditGrant.objects.filter(source="plan").values_list("period_start", flat=True)) == [NOV, DEC]
    entry = CreditEntry.objects.first()
    with pytest.raises(CreditLedgerError):
        entry.save()
    with pytest.raises(CreditLedgerError):
        entry.delete()


def test_the_database_refuses_a_grant_below_zero_and_figures_out_of_order(studio):
    subscription = customer(studio, "atelier", studio["exclusive"])
    grant = CreditGrant.objects.get(source="staff")
    with pytest.raises(IntegrityError), transaction.atomic():
        CreditGrant.objects.filter(pk=grant.pk).update(remaining=D("-0.01"))
    run_billing(DEC + timedelta(hours=2))
    invoice = Invoice.objects.get(subscription=subscription)
    for change in ({"tax": D("36.00")}, {"discount": D("201.00")}, {"credits_applied": D("211.00")}):
        with pytest.raises(IntegrityError), transaction.atomic():
            Invoice.objects.filter(pk=invoice.pk).update(**change)
    # Figures that add up are accepted on SQLite too, whose arithmetic is floating point (0.30 − 0.10 ≠ 0.20).
    Invoice.objects.filter(pk=invoice.pk).update(subtotal=D("0.30"), discount=D("0.10"), tax=D("0.00"),
                                                 total=D("0.20"), credits_applied=D("0.10"))


def test_voiding_gives_the_credits_back_and_the_replacement_draws_them_again(studio):
    subscription = customer(studio, "atelier", studio["exclusive"])
    run_billing(DEC + timedelta(hours=2))
    invoice = Invoice.objects.get(subscription=subscription)
    invoice_void(invoice=invoice, reason="wrong usage")
    invoice_void(invoice=invoice, reason="again")  # twice: gives nothing back twice
    # November's included credit and the grant are whole again (December's was never drawn).
    assert sorted(CreditGrant.objects.values_list("source", "remaining")) == [
        ("plan", D("20.00")), ("plan", D("20.00")), ("staff", D("30.00"))]
    assert CreditEntry.objects.filter(kind="restore").count() == 2
    replacement = invoice_reissue(invoice=invoice)  # already void: the draft replacement
    run_billing(DEC + timedelta(hours=3))
    replacement.refresh_from_db()
    # The voided invoice's WELCOME5 period is given back too: the replacement has both coupons again.
    assert figures(replacement)["credits_applied"] == D("50.00") and replacement.discount == D("25.00")


def test_an_invoice_paid_by_credits_alone_is_finalized_as_paid(studio, django_capture_on_commit_callbacks):
    subscription = customer(studio, "atelier", studio["exclusive"], credit="500.00")
    with django_capture_on_commit_callbacks(execute=True):
        run_billing(DEC + timedelta(hours=2))
    invoice = Invoice.objects.get(subscription=subscription)
    assert invoice.status == InvoiceStatus.PAID and invoice.paid_at == DEC + timedelta(hours=2)
    assert invoice.credits_applied == invoice.total == D("210.00") and invoice_amount_due(invoice) == 0
    # The included 20.00 first, then 190.00 of the 500.00 grant.
    assert CreditGrant.objects.get(source="staff").remaining == D("310.00")
    (email,) = [m for m in mail.outbox if invoice.number in m.subject]
    assert "Prepaid credits applied: -210.00 EUR" in email.body and "Nothing is left to pay" in email.body
    assert "Discount: Launch (LAUNCH10): -20.00 EUR" in email.body and "VAT 20 % (20 %): 35.00 EUR" in email.body


def test_payments_complete_what_the_credits_left(studio):
    subscription = customer(studio, "atelier", studio["exclusive"])
    run_billing(DEC + timedelta(hours=2))
    invoice = Invoice.objects.get(subscription=subscription)
    with pytest.raises(ApplicationError, match="more than what is left"):
        invoice_payment_record(invoice=invoice, amount="160.01")
    invoice_payment_record(invoice=invoice, amount="160.00")
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID


def test_no_tax_line_at_zero_percent_and_no_rate_without_a_default(studio):
    zero = tax_rate_save(tax_rate=TaxRate(name="Exempt", percentage=D(0)))
    subscription = customer(studio, "atelier", zero, credit="")
    other = customer(studio, "bureau", None, credit="")  # no rate of its own, and no default yet
    run_billing(DEC + timedelta(hours=2))
    invoice = Invoice.objects.get(subscription=subscription)
    assert (invoice.tax, invoice.total, invoice.shows_tax) == (D("0.00"), D("175.00"), False)
    assert Invoice.objects.get(subscription=other).tax_percentage is None


def test_the_default_rate_taxes_tenants_without_one(studio):
    studio["exclusive"].is_default = True
    tax_rate_save(tax_rate=studio["exclusive"])
    subscription = customer(studio, "atelier", None, credit="")
    run_billing(DEC + timedelta(hours=2))
    invoice = Invoice.objects.get(subscription=subscription)
    assert (invoice.tax_name, invoice.tax, invoice.total) == ("VAT 20 %", D("35.00"), D("210.00"))


@pytest.fixture
def owner_client(studio, local_identity, client):  # noqa: F811
    subscription = customer(studio, "atelier", studio["exclusive"])
    user, _ = identity_services.tenant_user_create(tenant=subscription.tenant, email="ann@atelier.example",
                                                   role=TenantRole.OWNER, password=PASSWORD)
    token = identity_services.tenant_user_issue_token(tenant_user=user)
    client.force_login(user.user)
    return subscription, client, {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def test_the_invoice_page_shows_the_order(owner_client):
    subscription, client, _ = owner_client
    run_billing(DEC + timedelta(hours=2))
    invoice = Invoice.objects.get(subscription=subscription)
    page = client.get(invoice.get_absolute_url()).content.decode()
    for text in ('id="subtotal">200.00', "Discount: Launch (LAUNCH10)", "−20.00", "Discount: Welcome (WELCOME5)",
                 "VAT 20 % (20 %)", 'id="tax">35.00', 'id="total">210.00 EUR', 'id="credits-applied">−50.00',
                 'id="after-credits">160.00 EUR', "FRATELIER123"):
        assert text in page, text


def test_the_api_shows_the_figures_the_credits_and_the_projected_bill(owner_client):
    subscription, client, auth = owner_client
    run_billing(DEC + timedelta(hours=2))
    invoice = Invoice.objects.get(subscription=subscription)
    data = client.get(f"/api/v1/invoices/{invoice.public_id}/", **auth).json()
    assert {k: data[k] for k in ("subtotal", "discount", "tax", "total", "credits_applied", "amount_due")} == {
        "subtotal": "200.00", "discount": "25.00", "tax": "35.00", "total": "210.00", "credits_applied": "50.00",
        "amount_due": "160.00"}
    assert data["tax_rate"] == {"name": "VAT 20 %", "percentage": "20", "inclusive": False}
    assert [(d["coupon_code"], d["amount"]) for d in data["discounts"]] == [("LAUNCH10", "20.00"), ("WELCOME5", "5.00")]

    credits = client.get("/api/v1/credits/", **auth).json()
    # December's included credit (20.00, granted by the run for the current period) is the balance left.
    assert credits["balances"] == [{"currency": "EUR", "balance": "20.00"}]
    assert sorted((g["source"], g["amount"], g["remaining"]) for g in credits["grants"]) == [
        ("plan", "20.00", "0.00"), ("plan", "20.00", "20.00"), ("staff", "30.00", "0.00")]
    assert sorted((d["kind"], d["amount"], d["invoice_number"]) for d in credits["draw_downs"]) == [
        ("draw", "20.00", invoice.number), ("draw", "30.00", invoice.number)]
    assert client.post("/api/v1/credits/", {"amount": "5.00", "currency": "EUR"}, format="json",
                       **auth).status_code == 403  # tenants do not grant themselves credit

    # December so far: 10,000 renders → 160.00; LAUNCH10 16.00 (WELCOME5 is used up); tax 28.80; total 172.80;
    # December's included 20.00 → 152.80 due.
    renders(subscription.tenant, DEC + timedelta(days=1), 10_000)
    from unittest import mock

    with mock.patch("django.utils.timezone.now", return_value=DEC + timedelta(days=2)):
        bill = client.get("/api/v1/projected-bill/", **auth).json()
    assert {k: bill[k] for k in ("subtotal", "discount", "tax", "total", "credits_applied", "amount_due")} == {
        "subtotal": "160.00", "discount": "16.00", "tax": "28.80", "total": "172.80", "credits_applied": "20.00",
        "amount_due": "152.80"}
    assert bill["discounts"] == [{"description": "Launch (LAUNCH10)", "amount": "16.00"}]


def test_the_tenant_credits_page(owner_client):
    _subscription, client, _ = owner_client
    run_billing(DEC + timedelta(hours=2))
    page = client.get("/tenant/credits/").content.decode()
    assert "EUR 20.00</strong> available" in page and "Welcome credit" in page and "Drawn by an invoice" in page


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_finalizations_never_spend_the_same_credit(tmp_path):
    """Two drafts of one tenant finalized at the same moment by two threads (each its own connection), and two
    billing runs at once over tenants that each hold one grant: every credit is spent once."""
    from metering.services.billing.invoices import invoice_create, invoice_finalize
    from metering.tests.processes import concurrently
    from tenants.services.subscriptions import subscription_end

    path = tmp_path / "studio.json"
    path.write_text(FILES["studio.json"])
    call_command("import_plans", str(path), stdout=StringIO())
    version = PlanVersion.objects.get(plan__code="studio")
    tenant = TenantFactory(slug="atelier")
    first = subscription_create(tenant=tenant, plan_version=version, started_at=NOV - timedelta(days=61),
                                with_trial=False)
    subscription_end(subscription=first, at=NOV - timedelta(days=30))
    second = subscription_create(tenant=tenant, plan_version=version, started_at=NOV, with_trial=False)
    drafts = [invoice_create(subscription=first, period_start=datetime(2026, 9, 1, tzinfo=UTC),
                             period_end=datetime(2026, 10, 1, tzinfo=UTC), as_of=DEC),
              invoice_create(subscription=second, period_start=NOV, period_end=DEC, as_of=DEC)]
    CreditGrant.objects.all().delete()  # only the grant below: both invoices (150.00 each) want all of it
    credit_grant_create(tenant=tenant, amount="100.00", currency="EUR")
    pending = list(drafts)
    concurrently(lambda: invoice_finalize(invoice=pending.pop(), at=DEC + timedelta(hours=2)))
    applied = sorted(Invoice.objects.filter(tenant=tenant).values_list("credits_applied", flat=True))
    assert applied == [D("0.00"), D("100.00")]
    assert CreditGrant.objects.get(tenant=tenant).remaining == 0 and CreditEntry.objects.count() == 1

    for index in range(12):
        other = TenantFactory(slug=f"t{index}")
        subscription_create(tenant=other, plan_version=version, started_at=NOV, with_trial=False)
        credit_grant_create(tenant=other, amount="7.00", currency="EUR")
    concurrently(lambda: call_command("run_billing", "--as-of", (DEC + timedelta(hours=2)).isoformat(), "--no-sync",
                                      "--finalize-now", stdout=StringIO()))
    for grant in CreditGrant.objects.exclude(tenant=tenant).exclude(period_start=DEC):  # December's: not yet billed
        drawn = sum(grant.entries.values_list("amount", flat=True), D(0))
        assert grant.remaining == grant.amount - drawn >= 0
        # 150.00 base fee: the included 20.00 and the 7.00 grant are both spent, by one invoice each.
        assert drawn == grant.amount and grant.entries.count() == 1
    assert Invoice.objects.exclude(tenant=tenant).count() == 12
    assert set(Invoice.objects.exclude(tenant=tenant).values_list("credits_applied", flat=True)) == {D("27.00")}


def test_the_invoice_email_text_as_a_whole(studio, django_capture_on_commit_callbacks, settings):
    """The whole text of the Studio example's email through run_billing: its lines, the order below the subtotal,
    the credits and the due date; the tenant's name as it is (plain text: the template engine once wrote "&amp;")."""
    settings.PROVIDER_NAME = "Example SaaS Inc."
    settings.PORTAL_BASE_URL = "https://portal.example"
    subscription = customer(studio, "atelier", studio["exclusive"])
    Tenant.objects.filter(pk=subscription.tenant_id).update(name="Atelier & Fils")
    with django_capture_on_commit_callbacks(execute=True):
        run_billing(DEC + timedelta(hours=2))
    invoice = Invoice.objects.get(subscription=subscription)
    (email,) = [m for m in mail.outbox if invoice.number in m.subject]
    assert email.body == EXPECTED_EMAIL.replace("{number}", invoice.number).replace("{id}", str(invoice.public_id))


EXPECTED_EMAIL = """\
Hello Atelier & Fils,

Your invoice {number} from Example SaaS Inc. for 2026-11-01 to 2026-12-01 is ready.

- Studio base fee: 150.00 EUR
- Renders (per_unit): 50.00 EUR

Subtotal: 200.00 EUR
- Discount: Launch (LAUNCH10): -20.00 EUR
- Discount: Welcome (WELCOME5): -5.00 EUR
- VAT 20 % (20 %): 35.00 EUR

Total: 210.00 EUR
Prepaid credits applied: -50.00 EUR
Amount due: 160.00 EUR
Due by 2026-12-31 (payment terms: 30 days from the issue date).

View or print it: https://portal.example/invoices/{id}/

Example SaaS Inc.
"""
