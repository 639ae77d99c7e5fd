"""Invoice documents and the invoice admin: pages render, actions call the billing services, CSV exports."""

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse

from metering.lake import get_lake
from metering.models import Invoice, InvoiceStatus
from metering.services.billing.invoices import invoice_finalize
from metering.services.billing.run import billing_run
from metering.tests.test_billing import NOV, OCT, add_usage
from tenants.models import TenantUser
from tenants.services.subscriptions import subscription_create
from tenants.tests.factories import TenantFactory, import_sample_plans

pytestmark = pytest.mark.django_db


@pytest.fixture
def invoice():
    versions = import_sample_plans()
    tenant = TenantFactory(slug="acme", name="Acme Corp")
    subscription_create(tenant=tenant, plan_version=versions["pro"], started_at=OCT, with_trial=False)
    add_usage(tenant, "api_calls", OCT + timedelta(days=1), 12000)
    draft = billing_run(as_of=NOV, sync=False).created[0]
    return invoice_finalize(invoice=draft, at=NOV)


@pytest.fixture
def staff_client(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("staff", "s@example.com", "pw-for-tests-1"))
    return client


def _tenant_login(client, django_user_model, tenant, email):
    user = django_user_model.objects.create_user(email, email, "pw-for-tests-1")
    TenantUser.objects.create(tenant=tenant, username=f"u-{email}", email=email, user=user)
    client.force_login(user)
    return client


def test_document_shows_provider_tenant_period_lines_and_total(staff_client, invoice, settings):
    page = staff_client.get(invoice.get_absolute_url())
    assert page.status_code == 200
    html = page.content.decode()
    for text in (settings.PROVIDER_NAME, "Acme Corp", invoice.number, "2026-10-01", "2026-11-01",
                 "Pro base fee", "49.00", "12000", "Minimum commitment true-up", "100.00 USD"):
        assert text in html, text


def test_document_is_visible_to_its_tenant_and_hidden_from_others(client, django_user_model, invoice):
    _tenant_login(client, django_user_model, invoice.tenant, "owner@acme.example")
    assert client.get(invoice.get_absolute_url()).status_code == 200
    other = TenantFactory(slug="globex")
    _tenant_login(client, django_user_model, other, "owner@globex.example")
    assert client.get(invoice.get_absolute_url()).status_code == 404


def test_document_needs_a_login(client, invoice):
    response = client.get(invoice.get_absolute_url())
    assert response.status_code == 302 and "login" in response["Location"]


def test_invoice_admin_pages_and_filters(staff_client, invoice):
    changelist = reverse("admin:metering_invoice_changelist")
    for params in ({}, {"status__exact": "finalized"}, {"late": "yes"}, {"q": "acme"}):
        assert staff_client.get(changelist, params).status_code == 200
    page = staff_client.get(reverse("admin:metering_invoice_change", args=[invoice.pk]))
    assert page.status_code == 200 and "Minimum commitment true-up" in page.content.decode()
    assert staff_client.get(reverse("admin:metering_billingrun_changelist")).status_code == 200


def test_admin_actions_mark_paid_void_and_reissue(staff_client, invoice):
    changelist = reverse("admin:metering_invoice_changelist")
    staff_client.post(changelist, {"action": "mark_paid", "_selected_action": [invoice.pk]}, follow=True)
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID
    response = staff_client.post(changelist, {"action": "void", "_selected_action": [invoice.pk]}, follow=True)
    text = response.content.decode()
    assert "Only a finalized, unpaid invoice can be voided" in text and "issue a credit note instead" in text


def test_admin_reissue_creates_a_replacement(staff_client, invoice):
    changelist = reverse("admin:metering_invoice_changelist")
    staff_client.post(changelist, {"action": "reissue", "_selected_action": [invoice.pk]}, follow=True)
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.VOID
    assert Invoice.objects.get(replaces=invoice).status == InvoiceStatus.DRAFT


def test_admin_csv_exports(staff_client, invoice):
    changelist = reverse("admin:metering_invoice_changelist")
    response = staff_client.post(changelist, {"action": "export_invoices_csv", "_selected_action": [invoice.pk]})
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[0][:3] == ["number", "tenant", "period_start"]
    assert rows[1][0] == invoice.number and rows[1][6] == "100.00"
    response = staff_client.post(changelist, {"action": "export_lines_csv", "_selected_action": [invoice.pk]})
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert [r[3] for r in rows[1:]] == ["base_fee", "usage", "usage", "minimum_commitment"]


def test_run_billing_now_button(staff_client, settings):
    versions = import_sample_plans()
    subscription_create(tenant=TenantFactory(slug="button"), plan_version=versions["starter"],
                        started_at=datetime(2026, 8, 1, tzinfo=UTC), with_trial=False)
    settings.LAKE_WAREHOUSE_DIR = str(settings.VAR_DIR / "test-lake-button")
    get_lake().ensure_table()  # the run's final sync reads it: an existing lake, even empty (a missing one fails)
    page = staff_client.get(reverse("admin:metering_invoice_changelist"))
    assert "Run billing now" in page.content.decode()
    response = staff_client.post(reverse("admin:metering_invoice_run_billing"), follow=True)
    assert response.status_code == 200
    assert "invoices created" in response.content.decode()
    assert Invoice.objects.filter(tenant__slug="button").exists()
