"""What a sent invoice tells its reader, wherever it is read: the due date and payment terms, the tier breakdown
of tiered lines, amounts in the currency's minor digits (document, admin, API, CSV, email); and a sent invoice
is read-only in the admin."""

import copy
import csv
import io
import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from django.core import mail
from django.db import IntegrityError, transaction
from django.urls import reverse
from rest_framework.test import APIClient

from metering.models import FinalizedInvoiceError, Invoice, InvoiceStatus
from metering.services.billing.invoices import invoice_finalize
from metering.services.billing.run import billing_run
from metering.tests.test_billing import NOV, OCT, add_usage
from tenants.models import TenantUser
from tenants.services.subscriptions import subscription_create
from tenants.tests.factories import TenantFactory, import_sample_plans

pytestmark = pytest.mark.django_db

FINALIZED_AT = NOV + timedelta(hours=2)


@pytest.fixture
def versions():
    return import_sample_plans()


def _invoice(versions, plan="pro", *, finalize=True, slug="acme", **usage):
    tenant = TenantFactory(slug=slug, name="Acme Corp")
    subscription_create(tenant=tenant, plan_version=versions[plan], started_at=OCT, with_trial=False)
    for code, value in usage.items():
        add_usage(tenant, code, OCT + timedelta(days=1), value)
    draft = billing_run(as_of=NOV, sync=False).created[0]
    return invoice_finalize(invoice=draft, at=FINALIZED_AT) if finalize else draft


@pytest.fixture
def invoice(versions, django_capture_on_commit_callbacks):
    # Pro: 1,002,000 calls reach the third tier (its 25.00 flat amount); 2.5 MB of data out at 0.09.
    with django_capture_on_commit_callbacks(execute=True):
        return _invoice(versions, api_calls=1_002_000, data_out_mb=2_500_000)


@pytest.fixture
def staff_client(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("staff", "s@example.com", "pw-for-tests-1"))
    return client


@pytest.fixture
def tenant_api(invoice, django_user_model):
    """The invoice's tenant through the REST API, as its signed-in user."""
    user = django_user_model.objects.create_user("ann", "ann@acme.example", "pw-for-tests-1")
    TenantUser.objects.create(tenant=invoice.tenant, username="u-ann", email="ann@acme.example", user=user)
    client = APIClient()
    client.force_authenticate(user)
    return client


# --- due date and payment terms ----------------------------------------------------------------------------


def test_finalizing_fixes_the_terms_and_due_date_from_the_setting(versions, settings):
    settings.INVOICE_PAYMENT_TERMS_DAYS = 14
    invoice = _invoice(versions, api_calls=12000)
    assert (invoice.payment_terms_days, invoice.due_date) == (14, date(2026, 11, 15))
    # A later change of the terms applies to the next invoices, never to one already sent.
    settings.INVOICE_PAYMENT_TERMS_DAYS = 60
    invoice.refresh_from_db()
    assert (invoice.payment_terms_days, invoice.due_date) == (14, date(2026, 11, 15))
    invoice.due_date = date(2027, 1, 1)
    with pytest.raises(FinalizedInvoiceError, match="due_date"):
        invoice.save()


def test_a_draft_has_no_due_date_and_a_sent_invoice_cannot_lack_one(versions):
    draft = _invoice(versions, finalize=False, api_calls=12000)
    assert draft.due_date is None and draft.payment_terms_days is None
    with pytest.raises(IntegrityError), transaction.atomic():
        Invoice.objects.filter(pk=draft.pk).update(status=InvoiceStatus.FINALIZED, number="INV-X")


def test_due_date_on_the_document_api_admin_and_email(invoice, staff_client, tenant_api):
    page = staff_client.get(invoice.get_absolute_url()).content.decode()
    assert re.search(r'Due <strong id="due-date">2026-12-01</strong>', page)
    assert "Payment terms: 30 days from the issue date" in page
    body = tenant_api.get(f"/api/v1/invoices/{invoice.public_id}/").json()
    assert (body["due_date"], body["payment_terms_days"]) == ("2026-12-01", 30)
    listed = tenant_api.get("/api/v1/invoices/", HTTP_ACCEPT="text/csv").content.decode()
    row = next(csv.DictReader(io.StringIO(listed)))
    assert (row["due_date"], row["payment_terms_days"]) == ("2026-12-01", "30")
    admin_page = staff_client.get(reverse("admin:metering_invoice_change", args=[invoice.pk])).content.decode()
    assert "Dec. 1, 2026" in admin_page and "30 days after issue" in admin_page
    (message,) = [m for m in mail.outbox if invoice.number in m.subject]
    assert "Due by 2026-12-01 (payment terms: 30 days from the issue date)." in message.body


# --- tier breakdown ----------------------------------------------------------------------------------------


def test_a_graduated_line_stores_its_tiers_adding_up_to_its_amount(invoice):
    line = invoice.lines.get(metric_code="api_calls")
    # 10,000 free; 990,000 at 0.0005 = 495.00; 2,000 at 0.0002 = 0.40 plus the tier's 25.00 flat amount.
    assert line.amount == Decimal("520.40")
    assert line.tiers == [
        {"from": "0", "up_to": "10000", "units": "10000", "unit_amount": "0.00", "flat_amount": "0.00", "amount": "0.00"},
        {"from": "10000", "up_to": "1000000", "units": "990000", "unit_amount": "0.0005", "flat_amount": "0.00",
         "amount": "495.00"},
        {"from": "1000000", "up_to": None, "units": "2000", "unit_amount": "0.0002", "flat_amount": "25.00",
         "amount": "25.40"},
    ]
    assert sum(Decimal(tier["amount"]) for tier in line.tiers) == line.amount
    assert invoice.lines.get(metric_code="data_out_mb").tiers == []  # per unit: nothing to break down


def test_the_stored_breakdown_stays_true_when_the_plan_changes(invoice, staff_client):
    from tenants.services.plans import plan_save
    from tenants.services.subscriptions import subscription_move_to_latest

    before = invoice.lines.get(metric_code="api_calls").tiers
    page_before = _tier_rows(staff_client.get(invoice.get_absolute_url()).content.decode())
    pro = copy.deepcopy(invoice.subscription.plan_version.document)
    pro["charges"][0]["tiers"][1]["unit_amount"] = "0.0009"
    version, outcome = plan_save(document=pro)
    assert outcome == "new version 2"
    assert subscription_move_to_latest(plan=version.plan) == 1
    assert invoice.lines.get(metric_code="api_calls").tiers == before
    assert _tier_rows(staff_client.get(invoice.get_absolute_url()).content.decode()) == page_before


def test_a_volume_line_shows_the_one_tier_that_priced_it(versions):
    from tenants.services.plans import plan_save

    versions["volume"], _ = plan_save(document={
        "code": "volume", "name": "Volume", "currency": "EUR", "interval": "month", "charges": [
            {"metric": "api_calls", "model": "volume", "tiers": [
                {"up_to": 1000000, "unit_amount": "0.0004"},
                {"up_to": None, "unit_amount": "0.0001", "flat_amount": "100.00"}]}]})
    invoice = _invoice(versions, "volume", api_calls=1_500_000)
    line = invoice.lines.get(metric_code="api_calls")
    # Above 1,000,000 calls every call is 0.0001, plus 100.00.
    assert line.tiers == [{"from": "1000000", "up_to": None, "units": "1500000", "unit_amount": "0.0001",
                           "flat_amount": "100.00", "amount": "250.00"}]
    assert line.amount == Decimal("250.00")


def _tier_rows(html: str) -> list[list[str]]:
    rows = re.findall(r'<tr class="tier[^"]*">(.*?)</tr>', html, re.S)
    return [[re.sub(r"<[^>]+>|\s+", " ", cell).strip() for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
            for row in rows]


def test_the_document_shows_each_tier_under_its_line(invoice, client, django_user_model):
    user = django_user_model.objects.create_user("ann", "ann@acme.example", "pw-for-tests-1")
    TenantUser.objects.create(tenant=invoice.tenant, username="u-ann", email="ann@acme.example", user=user)
    client.force_login(user)
    html = client.get(invoice.get_absolute_url()).content.decode()
    assert _tier_rows(html) == [
        ["Tier 0 to 10000", "10000", "0.00", "0.00"],
        ["Tier 10000 to 1000000", "990000", "0.0005", "495.00"],
        ["Tier above 1000000", "2000", "0.0002 + 25.00 flat", "25.40"],
    ]
    assert "520.40" in html and "1002000" in html


def test_the_api_lists_each_tier(invoice, tenant_api):
    lines = tenant_api.get(f"/api/v1/invoices/{invoice.public_id}/lines/").json()["results"]
    api_calls = next(line for line in lines if line["metric_code"] == "api_calls")
    assert [(t["from"], t["up_to"], t["units"], t["amount"]) for t in api_calls["tiers"]] == [
        ("0", "10000", "10000", "0.00"), ("10000", "1000000", "990000", "495.00"), ("1000000", None, "2000", "25.40")]
    projected = tenant_api.get("/api/v1/projected-bill/").json()
    usage = next(line for line in projected["lines"] if line["metric"] == "api_calls")
    assert usage["tiers"] == [{"from": "0", "up_to": "10000", "units": "0", "unit_amount": "0.00",
                               "flat_amount": "0.00", "amount": "0.00"}]


# --- amounts and quantities as people read them ------------------------------------------------------------


def test_api_and_csv_print_stored_decimals_plainly(invoice, tenant_api):
    lines = tenant_api.get(f"/api/v1/invoices/{invoice.public_id}/lines/").json()["results"]
    data_out = next(line for line in lines if line["metric_code"] == "data_out_mb")
    api_calls = next(line for line in lines if line["metric_code"] == "api_calls")
    assert (data_out["quantity"], data_out["unit_amount"], data_out["amount"]) == ("2.5", "0.09", "0.23")
    assert api_calls["quantity"] == "1002000"  # stored as 1002000.000000
    rows = list(csv.DictReader(io.StringIO(
        tenant_api.get(f"/api/v1/invoices/{invoice.public_id}/lines/?format=csv").content.decode())))
    assert [(r["quantity"], r["unit_amount"], r["amount"]) for r in rows] == [
        ("", "", "49.00"), ("1002000", "", "520.40"), ("2.5", "0.09", "0.23")]


def test_admin_csv_exports_print_plain_decimals(invoice, staff_client):
    changelist = reverse("admin:metering_invoice_changelist")
    response = staff_client.post(changelist, {"action": "export_lines_csv", "_selected_action": [invoice.pk]})
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    # normalize() alone would have written 1.002E+6 and 4E+1-like figures.
    assert [(r["quantity"], r["unit_amount"], r["amount"]) for r in rows] == [
        ("", "", "49.00"), ("1002000", "", "520.40"), ("2.5", "0.09", "0.23")]
    assert '"amount":"25.40"' in rows[1]["tiers"]
    response = staff_client.post(changelist, {"action": "export_invoices_csv", "_selected_action": [invoice.pk]})
    (row,) = csv.DictReader(io.StringIO(response.content.decode()))
    assert (row["total"], row["due_date"], row["payment_terms_days"]) == ("569.63", "2026-12-01", "30")


# --- read-only in the admin --------------------------------------------------------------------------------


def test_a_sent_invoice_is_read_only_in_the_admin(invoice, staff_client):
    url = reverse("admin:metering_invoice_change", args=[invoice.pk])
    page = staff_client.get(url)
    html = page.content.decode()
    assert page.status_code == 200 and "View invoice" in html
    assert 'name="_save"' not in html and 'name="_continue"' not in html
    widgets = re.findall(r"<(?:input|select|textarea)\b[^>]*>", html.split('id="invoice_form"')[1].split("</form>")[0])
    assert all('type="hidden"' in widget for widget in widgets), widgets  # nothing to edit
    # Amounts in the currency's minor digits, unit prices without padding, quantities without trailing zeros.
    assert "569.63 USD" in html and "520.40" in html and "0.09" in html
    for raw in ("569.6300", "0.090000000000", "1002000.000000", "2.500000"):
        assert raw not in html
    # A crafted POST is refused and changes nothing.
    response = staff_client.post(url, {"total": "1.00", "status": "draft", "currency": "EUR", "_save": "Save"})
    assert response.status_code == 403
    invoice.refresh_from_db()
    assert (invoice.total, invoice.status, invoice.currency) == (Decimal("569.63"), InvoiceStatus.FINALIZED, "USD")


def test_a_draft_keeps_its_save_button(versions, staff_client):
    draft = _invoice(versions, finalize=False, api_calls=12000)
    html = staff_client.get(reverse("admin:metering_invoice_change", args=[draft.pk])).content.decode()
    assert 'name="_save"' in html and "Change invoice" in html


def test_migration_gives_invoices_sent_before_it_a_due_date(transactional_db, settings):
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    settings.INVOICE_PAYMENT_TERMS_DAYS = 30
    before, after = [("metering", "0005_daily_usage")], [("metering", "0006_invoice_due_date_and_line_tiers")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    try:
        apps = executor.loader.project_state(before).apps
        Tenant, OldInvoice = apps.get_model("tenants", "Tenant"), apps.get_model("metering", "Invoice")
        Plan, PlanVersion = apps.get_model("tenants", "Plan"), apps.get_model("tenants", "PlanVersion")
        Subscription = apps.get_model("tenants", "Subscription")
        tenant = Tenant.objects.create(slug="old", name="Old", contact_email="b@old.example")
        plan = Plan.objects.create(code="old", name="Old")
        version = PlanVersion.objects.create(plan=plan, version=1, name="Old", currency="USD", document={})
        subscription = Subscription.objects.create(tenant=tenant, plan_version=version, started_at=OCT)
        common = {"tenant": tenant, "subscription": subscription, "currency": "USD", "finalize_after": NOV}
        sent = OldInvoice.objects.create(**common, period_start=OCT, period_end=NOV, status="paid", number="INV-OLD-1",
                                         finalized_at=datetime(2026, 11, 1, 23, 30, tzinfo=UTC))
        draft = OldInvoice.objects.create(**common, period_start=NOV, period_end=NOV + timedelta(days=30))
        executor = MigrationExecutor(connection)
        executor.migrate(after)
        NewInvoice = executor.loader.project_state(after).apps.get_model("metering", "Invoice")
        terms = NewInvoice.objects.values_list("due_date", "payment_terms_days")
        assert terms.get(pk=sent.pk) == (date(2026, 12, 1), 30)  # issued Nov 1 (UTC), 30 days
        assert terms.get(pk=draft.pk) == (None, None)
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())


def test_metric_divisors_are_plain_decimals(tenant_api):
    metrics = {m["code"]: m for m in tenant_api.get("/api/v1/metrics/").json()["results"]}
    assert (metrics["data_out_mb"]["divisor"], metrics["data_out_mb"]["unit"]) == ("1000000", "MB")
    assert metrics["api_calls"]["divisor"] == "1"


def test_a_paid_or_void_invoice_asks_for_no_payment(invoice, staff_client):
    from metering.services.billing.invoices import invoice_mark_paid, invoice_void

    invoice_mark_paid(invoice=invoice, at=datetime(2026, 11, 20, tzinfo=UTC))
    page = " ".join(staff_client.get(invoice.get_absolute_url()).content.decode().split())
    assert "Paid 2026-11-20</strong> (due 2026-12-01)" in page and "Payment due by" not in page
    draft = _invoice_for_void(invoice)
    invoice_void(invoice=draft, reason="wrong plan")
    page = staff_client.get(draft.get_absolute_url()).content.decode()
    assert "Payment due by" not in page and "wrong plan" in page


def _invoice_for_void(invoice):
    """Another finalized invoice of the same tenant (November), to void."""
    from metering.services.billing.invoices import invoice_create

    nov = invoice_create(subscription=invoice.subscription, period_start=NOV, period_end=datetime(2026, 12, 1, tzinfo=UTC),
                         as_of=datetime(2026, 12, 1, tzinfo=UTC))
    return invoice_finalize(invoice=nov, at=datetime(2026, 12, 1, 1, tzinfo=UTC))


# --- the PDF -------------------------------------------------------------------------------------------------


def _pdf_text(pdf: bytes) -> str:
    import pypdf

    return " ".join(" ".join(page.extract_text().split()) for page in pypdf.PdfReader(io.BytesIO(pdf)).pages)


def test_the_pdf_is_the_document_with_its_tiers_for_its_tenant_only(invoice, client, django_user_model):
    url = reverse("invoice-pdf", args=[invoice.public_id])
    assert client.get(url).status_code == 302  # signed out: to the sign-in page
    user = django_user_model.objects.create_user("ann", "ann@acme.example", "pw-for-tests-1")
    TenantUser.objects.create(tenant=invoice.tenant, username="u-ann", email="ann@acme.example", user=user)
    client.force_login(user)
    assert f'href="{url}"' in client.get(invoice.get_absolute_url()).content.decode()  # the page links it
    answer = client.get(url)
    assert answer.status_code == 200 and answer["Content-Type"] == "application/pdf"
    assert answer["Content-Disposition"] == f'attachment; filename="{invoice.number}.pdf"'
    text = _pdf_text(answer.content)
    for shown in (invoice.number, "Acme Corp", "Tier 10000 to 1000000 990000 0.0005 495.00",
                  "Tier above 1000000 2000 0.0002 + 25.00 flat 25.40", "520.40", "Due"):
        assert shown in text, shown
    assert "Download PDF" not in text and "Print" not in text
    other = django_user_model.objects.create_user("bob", "bob@globex.example", "pw-for-tests-1")
    TenantUser.objects.create(tenant=TenantFactory(slug="globex"), username="u-bob", email="bob@globex.example",
                              user=other)
    client.force_login(other)
    assert client.get(url).status_code == 404


def test_the_invoice_email_carries_its_pdf(versions):
    from tenants.models import EmailDelivery
    from tenants.services.email import email_deliveries_send

    invoice = _invoice(versions, api_calls=1_002_000, data_out_mb=2_500_000)  # its email queued, not sent yet
    delivery = EmailDelivery.objects.get(kind="invoice")
    assert email_deliveries_send(delivery_ids=[delivery.pk]).sent == [delivery.pk]
    (message,) = mail.outbox
    ((filename, content, mimetype),) = message.attachments
    assert (filename, mimetype) == (f"{invoice.number}.pdf", "application/pdf")
    assert invoice.number in _pdf_text(content) and "520.40" in _pdf_text(content)


def test_without_weasyprint_the_email_still_goes_and_the_download_says_why(versions, client, django_user_model,
                                                                           monkeypatch):
    import builtins

    from tenants.models import EmailDelivery
    from tenants.services.email import email_deliveries_send

    real_import = builtins.__import__

    def no_pango(name, *args, **kwargs):
        if name == "weasyprint":
            raise OSError("cannot load library 'libpango-1.0-0'")
        return real_import(name, *args, **kwargs)

    invoice = _invoice(versions, api_calls=1_002_000)  # its email queued, not sent yet
    monkeypatch.setattr(builtins, "__import__", no_pango)
    delivery = EmailDelivery.objects.get(kind="invoice")
    assert email_deliveries_send(delivery_ids=[delivery.pk]).sent == [delivery.pk]
    assert mail.outbox[0].attachments == []
    client.force_login(django_user_model.objects.create_superuser("staff", "s@example.com", "pw-for-tests-1"))
    answer = client.get(reverse("invoice-pdf", args=[invoice.public_id]))
    assert answer.status_code == 503 and "WeasyPrint needs the Pango library" in answer.content.decode()
