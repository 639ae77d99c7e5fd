"""A credit note issued in Chromium: staff open a paid invoice in the admin, follow "Issue a credit note", credit
one line in full and part of another, and see the credit note and the invoice's credited figures (skipped without
/usr/bin/chromium)."""

import re

from portal.tests.test_browser import (  # noqa: F401  (fixtures)
    ARTIFACTS,
    BROWSER,
    CHROMIUM,
    PASSWORD,
    browser_page,
    portal_env,
    staff_signed_in,
)

pytestmark = BROWSER


def test_staff_issue_a_credit_note_on_a_paid_invoice(  # noqa: F811
        live_server, transactional_db, browser_page, portal_env, django_user_model):  # noqa: F811
    from datetime import timedelta

    from metering.models import CreditNote
    from metering.services.billing.invoices import invoice_finalize, invoice_mark_paid
    from metering.services.billing.run import billing_run
    from metering.tests.test_billing import NOV, OCT, add_usage
    from tenants.services.subscriptions import subscription_create
    from tenants.tests.factories import TenantFactory, import_sample_plans

    tenant = TenantFactory(slug="acme", name="Acme Corp")
    subscription_create(tenant=tenant, plan_version=import_sample_plans()["pro"], started_at=OCT, with_trial=False)
    add_usage(tenant, "api_calls", OCT + timedelta(days=1), 12000)
    invoice = invoice_finalize(invoice=billing_run(as_of=NOV, sync=False).created[0], at=NOV + timedelta(days=1))
    invoice_mark_paid(invoice=invoice)
    django_user_model.objects.create_superuser("boss", "boss@example.com", PASSWORD)
    base, true_up = invoice.lines.get(position=1), invoice.lines.get(position=4)

    page = staff_signed_in(browser_page, live_server)
    page.goto(f"{live_server.url}/admin/metering/invoice/{invoice.pk}/change/")
    assert "credited 0.00 USD, 100.00 remains creditable" in page.inner_text("body")
    page.click("#issue-credit-note")
    page.wait_for_url(re.compile(r"/admin/metering/creditnote/issue/"))
    assert page.inner_text("#creditable") == "100.00 USD"
    page.check(f"input[name='line_{base.pk}_all']")
    page.fill(f"input[name='line_{true_up.pk}_amount']", "20.00")
    page.select_option("select[name='outcome']", "refunded")
    page.fill("textarea[name='reason']", "Two days of downtime")
    page.click("text=Issue the credit note")
    page.wait_for_url(re.compile(r"/admin/metering/creditnote/\d+/change/"))
    assert "Credit note CN-2026-000001 issued: 69.00 USD." in page.inner_text(".messagelist")
    note = CreditNote.objects.get()
    page.goto(f"{live_server.url}{note.get_absolute_url()}")
    assert page.inner_text("#credit-note-amount") == "69.00 USD"
    page.screenshot(path=str(ARTIFACTS / "credit-note.png"), full_page=True)
    page.goto(f"{live_server.url}{invoice.get_absolute_url()}")
    assert "In all 69.00 USD; 31.00 USD remains creditable." in page.inner_text("#credit-notes")
