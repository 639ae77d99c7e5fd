"""Invoice and credit note documents: a printable HTML page and its PDF, for staff and for the users of the
invoice's tenant."""

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, render

from metering.models import CreditNote, Invoice, InvoiceStatus
from metering.services.documents import (
    credit_note_context,
    credit_note_pdf_bytes,
    credit_note_pdf_name,
    invoice_context,
    invoice_pdf_bytes,
    invoice_pdf_name,
)
from portal.kernel import ApplicationError


def _visible_to(user, invoice: Invoice) -> bool:
    if user.is_staff:
        return True
    tenant_user = getattr(user, "tenant_user", None)
    return (
        tenant_user is not None
        and tenant_user.is_active
        and tenant_user.tenant_id == invoice.tenant_id
        and invoice.status != InvoiceStatus.DRAFT
    )


def _visible_invoice(request, public_id) -> Invoice:
    invoice = get_object_or_404(Invoice.objects.select_related("tenant", "subscription__plan_version__plan"), public_id=public_id)
    if not _visible_to(request.user, invoice):
        raise Http404("No such invoice")  # the same answer as a wrong id: nothing to learn from it
    return invoice


@login_required
def invoice_document(request, public_id):
    return render(request, "metering/invoice.html", invoice_context(_visible_invoice(request, public_id)))


def _pdf_response(render, name: str) -> HttpResponse:
    try:
        pdf = render()
    except ApplicationError as exc:
        return HttpResponse(exc.message, status=503, content_type="text/plain; charset=utf-8")
    response = HttpResponse(pdf, content_type="application/pdf")
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


@login_required
def invoice_pdf(request, public_id):
    invoice = _visible_invoice(request, public_id)
    return _pdf_response(lambda: invoice_pdf_bytes(invoice), invoice_pdf_name(invoice))


def _visible_credit_note(request, public_id) -> CreditNote:
    note = get_object_or_404(CreditNote.objects.select_related("invoice__tenant", "tenant"), public_id=public_id)
    if not _visible_to(request.user, note.invoice):
        raise Http404("No such credit note")
    return note


@login_required
def credit_note_document(request, public_id):
    return render(request, "metering/credit_note.html", credit_note_context(_visible_credit_note(request, public_id)))


@login_required
def credit_note_pdf(request, public_id):
    note = _visible_credit_note(request, public_id)
    return _pdf_response(lambda: credit_note_pdf_bytes(note), credit_note_pdf_name(note))
