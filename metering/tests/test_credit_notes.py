"""Credit notes, through their entry points: staff issue them in the admin on a finalized or paid invoice (for
chosen lines or an amount, never above what remains creditable), numbered CN-YYYY-NNNNNN; the invoice page, its
PDF and the API show what was credited and what remains; the tenant reads and downloads the credit note; void
is only for unpaid mistakes; two staff issuing at once on PostgreSQL never credit more than the total."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction
from django.urls import reverse

from metering.models import CreditNote, CreditNoteOutcome, ImmutableCreditNoteError, Invoice, InvoiceStatus
from metering.services.billing.credit_notes import CreditRequest, credit_note_issue
from metering.services.billing.invoices import invoice_finalize, invoice_void
from metering.services.billing.run import billing_run
from metering.tests.processes import concurrently
from metering.tests.test_billing import NOV, OCT, add_usage
from metering.tests.test_payments import pay, staff, tenant_api  # noqa: F401  (the staff fixture)
from portal.kernel import ApplicationError
from tenants.services.subscriptions import subscription_create
from tenants.tests.factories import TenantFactory, import_sample_plans


def _invoice() -> Invoice:
    """Acme's October on Pro, finalized 2 November: base fee 49.00, api_calls 1.00, data_out 0.00, commitment
    true-up 50.00 = 100.00 USD."""
    tenant = TenantFactory(slug="acme", name="Acme Corp", contact_email="billing@acme.example")
    subscription_create(tenant=tenant, plan_version=import_sample_plans()["pro"], started_at=OCT, with_trial=False)
    add_usage(tenant, "api_calls", OCT + timedelta(days=1), 12000)
    return invoice_finalize(invoice=billing_run(as_of=NOV, sync=False).created[0], at=NOV + timedelta(days=1))


@pytest.fixture
def invoice(db):
    return _invoice()


def issue(staff, invoice, **fields):  # noqa: F811
    return staff.post(reverse("admin:metering_creditnote_issue", args=[invoice.pk]), fields)


def line(invoice, position):
    return invoice.lines.get(position=position)


@pytest.mark.django_db
def test_staff_credit_a_paid_invoice_line_by_line_never_above_what_remains(invoice, staff, django_user_model):  # noqa: F811
    assert pay(staff, invoice, "100.00").status_code == 302
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID
    page = staff.get(reverse("admin:metering_invoice_change", args=[invoice.pk])).content.decode()
    assert "credited 0.00 USD, 100.00 remains creditable" in page and 'id="issue-credit-note"' in page
    form = staff.get(reverse("admin:metering_creditnote_issue", args=[invoice.pk])).content.decode()
    # A paid invoice's money goes back as a refund or to the tenant's prepaid balance; nothing is left to pay
    # to take it off.
    assert 'value="refunded"' in form and 'value="balance"' in form and 'value="invoice"' not in form

    base = line(invoice, 1)  # Pro base fee, 49.00
    answer = issue(staff, invoice, outcome="refunded", **{f"line_{base.pk}_all": "on"}, reason="downtime",
                   reference="refund 7")
    assert answer.status_code == 302
    first = CreditNote.objects.get()
    assert (first.number, first.amount, first.outcome) == ("CN-2026-000001", Decimal("49.00"), "refunded")
    assert [(cl.invoice_line_id, cl.amount) for cl in first.lines.all()] == [(base.pk, Decimal("49.00"))]

    # The base fee is credited in full: a second credit on it is refused, naming what remains (0.00).
    again = issue(staff, invoice, outcome="refunded", **{f"line_{base.pk}_amount": "0.01"})
    assert again.status_code == 400 and "more than what remains creditable on it (0.00 USD)" in again.content.decode()
    # Part of the true-up line, and an amount on the whole: 20.00 + 31.01 = 51.01 > 51.00 remaining.
    true_up = line(invoice, 4)
    over = issue(staff, invoice, outcome="refunded", **{f"line_{true_up.pk}_amount": "20.00"}, amount="31.01")
    assert over.status_code == 400
    assert "51.01 is more than what remains creditable on INV-2026-000001 (51.00 USD)" in over.content.decode()
    bad = issue(staff, invoice, outcome="refunded", amount="1.001")
    assert bad.status_code == 400 and "minor units" in bad.content.decode()
    assert issue(staff, invoice, outcome="refunded", **{f"line_{true_up.pk}_amount": "20.00"}, amount="31.00",
                 description="Goodwill").status_code == 302
    second = CreditNote.objects.get(number="CN-2026-000002")
    assert second.amount == Decimal("51.00")
    assert [(cl.description, cl.amount) for cl in second.lines.all()] == [
        ("Minimum commitment true-up", Decimal("20.00")), ("Goodwill", Decimal("31.00"))]
    invoice.refresh_from_db()
    assert (invoice.credited_amount, invoice.status) == (Decimal("100.00"), InvoiceStatus.PAID)
    # All of it credited: nothing more, and the invoice page says so.
    assert issue(staff, invoice, outcome="refunded", amount="0.01").status_code == 400
    shown = staff.get(invoice.get_absolute_url()).content.decode()
    assert "In all 100.00 USD; 0.00 USD remains creditable." in shown and "CN-2026-000002" in shown

    # The tenant's API shows the figures and the credit notes, with their PDF.
    api = tenant_api(invoice, django_user_model)
    listed = api.get("/api/v1/invoices/").json()["results"][0]
    assert (listed["credited"], listed["creditable"], listed["amount_due"]) == ("100.00", "0.00", "0.00")
    detail = api.get(f"/api/v1/invoices/{invoice.public_id}/").json()
    assert [(c["number"], c["amount"], c["outcome"]) for c in detail["credit_notes"]] == [
        ("CN-2026-000001", "49.00", "refunded"), ("CN-2026-000002", "51.00", "refunded")]
    # A credit note is a ledger entry: never edited, never deleted.
    first.reason = "edited"
    with pytest.raises(ImmutableCreditNoteError):
        first.save()
    with pytest.raises(ImmutableCreditNoteError):
        first.delete()


@pytest.mark.django_db
def test_a_credit_note_taken_off_what_is_left_to_pay_settles_the_invoice(invoice, staff):  # noqa: F811
    assert pay(staff, invoice, "40.00").status_code == 302
    true_up = line(invoice, 4)
    # 40.00 was received: a refund of more than that is refused; taking 50.00 off the 60.00 left is not.
    refund = issue(staff, invoice, outcome="refunded", amount="40.01")
    assert refund.status_code == 400 and "more than the money received on INV-2026-000001" in refund.content.decode()
    too_much = issue(staff, invoice, outcome="invoice", amount="60.01")
    assert too_much.status_code == 400 and "more than what is left to pay" in too_much.content.decode()
    assert issue(staff, invoice, outcome="invoice", **{f"line_{true_up.pk}_all": "on"}).status_code == 302
    invoice.refresh_from_db()
    assert (invoice.status, invoice.credited_against_due) == (InvoiceStatus.FINALIZED, Decimal("50.00"))
    page = staff.get(invoice.get_absolute_url()).content.decode()
    assert "10.00 USD left to pay" in page
    dashboard = staff.get("/admin/dashboard/").content.decode()
    receivables = dashboard[dashboard.index('id="receivables"'):]
    assert "USD: 10.00 on 1 invoice" in receivables[:receivables.index("</section>")]
    # A payment is capped at what is left after the credit note.
    assert pay(staff, invoice, "10.01").status_code == 200
    assert issue(staff, invoice, outcome="invoice", amount="10.00").status_code == 302
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID  # nothing left to pay
    assert list(CreditNote.objects.order_by("number").values_list("number", flat=True)) == [
        "CN-2026-000001", "CN-2026-000002"]


@pytest.mark.django_db
def test_the_tenant_reads_and_downloads_its_credit_note_and_nobody_else(invoice, staff, client, django_user_model):  # noqa: F811
    note = credit_note_issue(invoice=invoice, outcome=CreditNoteOutcome.INVOICE,
                             lines=[CreditRequest(invoice_line_id=line(invoice, 1).pk)], reason="wrong base fee")
    user = django_user_model.objects.create_user("ann", "ann@acme.example", "pw-for-tests-1")
    from tenants.models import TenantUser

    TenantUser.objects.create(tenant=invoice.tenant, username="u-ann", email="ann@acme.example", user=user)
    client.force_login(user)
    page = client.get(note.get_absolute_url())
    assert page.status_code == 200
    text = page.content.decode()
    assert "CN-2026-000001" in text and "49.00 USD" in text and "Taken off what is left to pay" in text
    assert "INV-2026-000001" in text and "wrong base fee" in text
    pdf = client.get(reverse("credit-note-pdf", args=[note.public_id]))
    if pdf.status_code == 503:  # WeasyPrint without Pango here: the page says so, as the invoice's does
        assert b"PDF documents are unavailable" in pdf.content
    else:
        assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
        assert pdf["Content-Disposition"] == 'attachment; filename="CN-2026-000001.pdf"'
    invoice_page = client.get(invoice.get_absolute_url()).content.decode()
    assert "Credited: " in invoice_page and "CN-2026-000001" in invoice_page and "51.00 USD left to pay" in invoice_page
    # Another tenant's user: the same answer as an unknown id.
    other = TenantFactory(slug="globex")
    stranger = django_user_model.objects.create_user("bob", "bob@globex.example", "pw-for-tests-1")
    TenantUser.objects.create(tenant=other, username="u-bob", email="bob@globex.example", user=stranger)
    client.force_login(stranger)
    assert client.get(note.get_absolute_url()).status_code == 404
    assert client.get(reverse("credit-note-pdf", args=[note.public_id])).status_code == 404


@pytest.mark.django_db
def test_void_is_only_for_unpaid_mistakes(invoice, staff):  # noqa: F811
    changelist = reverse("admin:metering_invoice_changelist")
    assert pay(staff, invoice, "10.00").status_code == 302
    with pytest.raises(ApplicationError, match="has payments or credit notes recorded"):
        invoice_void(invoice=invoice)
    answer = staff.post(changelist, {"action": "void", "_selected_action": [invoice.pk]}, follow=True)
    assert "cannot be voided; issue a credit note instead" in answer.content.decode()
    assert pay(staff, invoice, "90.00").status_code == 302
    invoice.refresh_from_db()
    with pytest.raises(ApplicationError, match="issue a credit note instead"):
        invoice_void(invoice=invoice)
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID
    # A draft takes no credit note (it is re-priced when finalized) and cannot be voided either.
    draft = billing_run(as_of=NOV + timedelta(days=31), sync=False).created[0]
    with pytest.raises(ApplicationError, match="Only a finalized or paid invoice takes credit notes"):
        credit_note_issue(invoice=draft, outcome="refunded", lines=[CreditRequest(None, "1.00")])
    assert staff.get(reverse("admin:metering_creditnote_issue", args=[draft.pk])).status_code == 302


@pytest.mark.django_db
def test_an_unpaid_finalized_invoice_is_still_voided_and_the_database_refuses_over_crediting(invoice):
    with pytest.raises(IntegrityError), transaction.atomic():
        Invoice.objects.filter(pk=invoice.pk).update(credited_amount=Decimal("100.01"))
    with pytest.raises(IntegrityError), transaction.atomic():
        Invoice.objects.filter(pk=invoice.pk).update(credited_amount=Decimal("10"), credited_against_due=Decimal("11"))
    assert invoice_void(invoice=invoice, reason="wrong plan").status == InvoiceStatus.VOID


@pytest.mark.django_db
def test_a_credit_to_the_balance_is_a_prepaid_grant_the_next_invoice_draws(invoice, staff):  # noqa: F811
    from metering.models import CreditGrant

    # Nothing received yet: nothing to give back to the balance (what is owed is taken off instead).
    early = issue(staff, invoice, outcome="balance", amount="1.00")
    assert early.status_code == 400 and "(money or prepaid credits) and not yet given back (0.00 USD)" in (
        early.content.decode())
    assert pay(staff, invoice, "100.00").status_code == 302
    assert issue(staff, invoice, outcome="balance", amount="30.00", reason="SLA credit").status_code == 302
    note = CreditNote.objects.get()
    grant = CreditGrant.objects.get(tenant=invoice.tenant)
    assert (grant.amount, grant.remaining, grant.currency, grant.expires_at) == (
        Decimal("30.00"), Decimal("30.00"), "USD", None)
    assert grant.note == f"Credit note {note.number} on invoice INV-2026-000001"
    # 70.00 of the money is left to give back: a refund of 70.01 is refused, 70.00 is not.
    assert issue(staff, invoice, outcome="refunded", amount="70.01").status_code == 400
    assert issue(staff, invoice, outcome="refunded", amount="70.00").status_code == 302
    # The next period's invoice draws the grant (docs/plans.md, "Prepaid credits").
    nxt = invoice_finalize(invoice=billing_run(as_of=NOV + timedelta(days=31), sync=False).created[0],
                           at=NOV + timedelta(days=31))
    assert nxt.credits_applied == Decimal("30.00")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_staff_crediting_at_once_never_credit_more_than_the_total():
    invoice = _invoice()
    Invoice.objects.filter(pk=invoice.pk).update(status=InvoiceStatus.PAID, paid_at=NOV + timedelta(days=2))

    def credit():
        try:
            return credit_note_issue(invoice=invoice, outcome="refunded", lines=[CreditRequest(None, "60.00")]).number
        except ApplicationError as exc:
            return exc.message

    results = concurrently(credit, times=3)
    assert sorted(r[:3] for r in results) == ["60.", "60.", "CN-"], results
    assert all("more than what remains creditable" in r for r in results if not r.startswith("CN-"))
    invoice.refresh_from_db()
    assert invoice.credited_amount == Decimal("60.00") and CreditNote.objects.count() == 1
