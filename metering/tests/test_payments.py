"""Payments, overdue invoices, reminders and receivables, through their entry points: staff record payments in
the admin (in part, then the rest, which marks the invoice paid), the tenant's API and invoice page show what
is left and whether it is overdue, the beat's reminder task emails each step once, and the provider dashboard
shows what is owed by age."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from metering.models import InvoicePayment, InvoiceReminder, InvoiceStatus
from metering.services.billing.invoices import invoice_finalize
from metering.services.billing.payments import payment_reminders_send
from metering.services.billing.run import billing_run
from metering.tasks import send_payment_reminders
from metering.tests.test_billing import NOV, OCT, add_usage
from tenants.models import EmailDelivery, TenantUser
from tenants.services.subscriptions import subscription_create
from tenants.tests.factories import TenantFactory, import_sample_plans

pytestmark = pytest.mark.django_db


@pytest.fixture
def invoice():
    """Acme's October on Pro: 100.00 USD (the minimum commitment), finalized 2 November, due 2 December."""
    tenant = TenantFactory(slug="acme", name="Acme Corp", contact_email="billing@acme.example")
    subscription_create(tenant=tenant, plan_version=import_sample_plans()["pro"], started_at=OCT, with_trial=False)
    add_usage(tenant, "api_calls", OCT + timedelta(days=1), 12000)
    return invoice_finalize(invoice=billing_run(as_of=NOV, sync=False).created[0], at=NOV + timedelta(days=1))


@pytest.fixture
def staff(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("staff", "s@example.com", "pw-for-tests-1"))
    return client


def tenant_api(invoice, django_user_model) -> APIClient:
    user = django_user_model.objects.create_user("ann", "ann@acme.example", "pw-for-tests-1")
    TenantUser.objects.create(tenant=invoice.tenant, username="u-ann", email="ann@acme.example", user=user)
    api = APIClient()
    api.force_authenticate(user)
    return api


def pay(staff, invoice, amount, **extra):
    return staff.post(reverse("admin:metering_invoicepayment_add"), {
        "invoice": invoice.pk, "amount": amount, "received_at_0": "2026-12-05", "received_at_1": "10:00:00",
        "reference": "bank 1", **extra})


def test_staff_record_a_partial_payment_then_the_rest(invoice, staff, django_user_model):
    assert invoice.total == Decimal("100.00") and invoice.due_date.isoformat() == "2026-12-02"
    api = tenant_api(invoice, django_user_model)
    assert pay(staff, invoice, "40.00").status_code == 302
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.FINALIZED
    listed = api.get("/api/v1/invoices/").json()["results"][0]
    assert listed["amount_due"] == "60.00" and listed["total"] == "100.00"
    page = staff.get(invoice.get_absolute_url()).content.decode()
    assert "60.00 USD left to pay" in page and "Received: 40.00 USD on 2026-12-05" in page

    too_much = pay(staff, invoice, "60.01")
    assert too_much.status_code == 200 and "is more than what is left to pay (60.00 USD)" in too_much.content.decode()
    bad = pay(staff, invoice, "0.001")
    assert bad.status_code == 200 and "minor units" in bad.content.decode()
    assert pay(staff, invoice, "60.00").status_code == 302
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID and invoice.paid_at == datetime(2026, 12, 5, 10, tzinfo=UTC)
    assert api.get("/api/v1/invoices/").json()["results"][0]["amount_due"] == "0.00"
    after = pay(staff, invoice, "1.00")
    assert after.status_code == 200 and InvoicePayment.objects.count() == 2  # a paid invoice takes no more


def test_overdue_invoices_are_reminded_once_per_step(invoice, django_user_model):
    api = tenant_api(invoice, django_user_model)
    due = datetime(2026, 12, 2, 9, tzinfo=UTC)
    assert payment_reminders_send(now=due - timedelta(days=5)) == []  # before the first step (-3 days)
    assert [r.step for r in payment_reminders_send(now=due - timedelta(days=3))] == [-3]
    assert payment_reminders_send(now=due - timedelta(days=2)) == []  # that step is sent; the next is +1
    assert [r.step for r in payment_reminders_send(now=due + timedelta(days=1))] == [1]
    # The schedule paused for weeks: only the latest step due is sent, not every one missed.
    assert [r.step for r in payment_reminders_send(now=due + timedelta(days=20))] == [14]
    assert payment_reminders_send(now=due + timedelta(days=21)) == []
    emails = list(EmailDelivery.objects.filter(kind="invoice_reminder").order_by("pk"))
    assert [e.recipient for e in emails] == ["billing@acme.example"] * 3
    assert "invoice INV-2026-000001, 100.00 USD due" in emails[0].subject
    assert "was due on 2026-12-02, 20 days ago" in emails[2].body and "100.00 USD is left to pay" in emails[2].body
    # The beat's task, today (the invoice is long past due): the latest step, once.
    send_payment_reminders.apply()
    send_payment_reminders.apply()
    assert InvoiceReminder.objects.filter(step=30).count() == (1 if invoice.due_date + timedelta(days=30)
                                                                <= datetime.now(UTC).date() else 0)
    listed = api.get("/api/v1/invoices/").json()["results"][0]
    assert listed["overdue"] is (datetime.now(UTC).date() > invoice.due_date)


def test_a_paid_invoice_is_not_reminded(invoice, staff):
    assert pay(staff, invoice, "100.00").status_code == 302
    assert payment_reminders_send(now=datetime(2027, 1, 30, tzinfo=UTC)) == []


def test_the_provider_dashboard_shows_receivables_by_age(invoice, staff):
    assert pay(staff, invoice, "25.50").status_code == 302
    page = staff.get("/admin/dashboard/").content.decode()
    section = page[page.index('id="receivables"'):]
    section = section[:section.index("</section>")]
    assert "USD: 74.50 on 1 invoice" in section
    late = (datetime.now(UTC).date() - invoice.due_date).days
    label = ("Not due yet" if late <= 0 else "1–30 days late" if late <= 30 else "31–60 days late" if late <= 60
             else "61–90 days late" if late <= 90 else "Over 90 days late")
    row = section[section.index(label):]
    assert row[:row.index("</tr>")].endswith('<td class="num">1</td><td class="num">74.50</td>')


def test_the_receivables_add_up_every_payment_and_follow_the_tenant_filter(invoice, staff):
    """The payments of an invoice are summed once (grouped and joined, not asked per invoice), and the
    tenant filter keeps that tenant's invoices only."""
    assert pay(staff, invoice, "25.50").status_code == 302
    assert pay(staff, invoice, "10.25", reference="bank 2").status_code == 302
    other = TenantFactory(slug="other", name="Other Ltd")

    def section(params):
        page = staff.get("/admin/dashboard/", params).content.decode()
        part = page[page.index('id="receivables"'):]
        return part[:part.index("</section>")]

    assert "USD: 64.25 on 1 invoice" in section({})
    assert "USD: 64.25 on 1 invoice" in section({"tenant": "acme"})
    assert "Nothing is owed." in section({"tenant": other.slug})
    assert pay(staff, invoice, "64.25", reference="bank 3").status_code == 302  # the rest: paid
    assert "Nothing is owed." in section({})
