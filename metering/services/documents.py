"""Invoice and credit note documents: the context of their templates, and each as PDF (WeasyPrint renders the
very template of the HTML page), for the pages' downloads and the invoice email's attachment."""

import logging
from decimal import Decimal

from django.conf import settings
from django.template.loader import render_to_string

from metering.models import CreditNote, Invoice
from metering.pricing import format_amount, format_plain, format_unit_amount
from portal.kernel import ApplicationError

logger = logging.getLogger(__name__)


def invoice_pdf_name(invoice: Invoice) -> str:
    return f"{invoice.number or f'draft-{invoice.public_id}'}.pdf"


def invoice_pdf_bytes(invoice: Invoice) -> bytes:
    """The invoice as PDF: WeasyPrint's rendering of the very template of the HTML page. ApplicationError
    when WeasyPrint cannot run here (its system library, Pango, is missing)."""
    return _pdf(render_to_string("metering/invoice.html", {**invoice_context(invoice), "pdf": True}))


def credit_note_pdf_name(note: CreditNote) -> str:
    return f"{note.number}.pdf"


def credit_note_pdf_bytes(note: CreditNote) -> bytes:
    """The credit note as PDF, from the template of its page (as the invoice's)."""
    return _pdf(render_to_string("metering/credit_note.html", {**credit_note_context(note), "pdf": True}))


def credit_note_context(note: CreditNote) -> dict:
    currency = note.currency
    return {
        "note": note, "invoice": note.invoice, "provider_name": settings.PROVIDER_NAME,
        "amount": format_amount(note.amount, currency),
        "lines": [{"line": line, "amount": format_amount(line.amount, currency)} for line in note.lines.all()],
    }


def _pdf(html: str) -> bytes:
    try:
        from weasyprint import HTML
    except OSError as exc:  # the Python package is there, the system's Pango is not
        logger.error("invoice PDF: WeasyPrint cannot run: %s", exc)
        raise ApplicationError("PDF documents are unavailable on this server (WeasyPrint needs the Pango "
                               "library); the invoice page can be printed to PDF instead.") from exc
    return HTML(string=html).write_pdf()


def _credit_summary(invoice: Invoice) -> dict:
    """What the invoice's credit notes gave back, and what remains creditable (shown on the invoice)."""
    from metering.services.billing.credit_notes import invoice_creditable

    currency = invoice.currency
    notes = [{"note": note, "amount": format_amount(note.amount, currency)}
             for note in invoice.credit_notes.order_by("issued_at", "pk")]
    return {"credit_notes": notes, "credited": format_amount(invoice.credited_amount, currency),
            "creditable": format_amount(invoice_creditable(invoice), currency)}


def invoice_context(invoice: Invoice) -> dict:
    """What the invoice template shows (the page, its PDF)."""
    currency = invoice.currency
    lines = [
        {"line": line, "amount": format_amount(line.amount, currency),
         "unit_amount": None if line.unit_amount is None else format_unit_amount(line.unit_amount, currency),
         "quantity": None if line.quantity is None else format_plain(line.quantity),
         "tiers": [{**tier, "has_flat": bool(Decimal(tier["flat_amount"]))} for tier in line.tiers]}
        for line in invoice.lines.select_related("adjusts")
    ]
    from metering.services.billing.payments import invoice_amount_due

    discounts = [{"description": d.description, "amount": format_amount(d.amount, currency)}
                 for d in invoice.discounts.all()]
    order = {
        "show_subtotal": bool(discounts) or invoice.shows_tax or bool(invoice.credits_applied),
        "subtotal": format_amount(invoice.subtotal, currency),
        "discounts": discounts,
        "tax": {"name": invoice.tax_name, "percentage": format_plain(invoice.tax_percentage),
                "inclusive": invoice.tax_inclusive, "amount": format_amount(invoice.tax, currency)}
        if invoice.shows_tax else None,
        "credits_applied": format_amount(invoice.credits_applied, currency) if invoice.credits_applied else "",
        "after_credits": format_amount(invoice.total - invoice.credits_applied, currency),
    }
    return {
        "invoice": invoice, "lines": lines, "total": format_amount(invoice.total, currency), "order": order,
        "has_tiers": any(row["tiers"] for row in lines), "provider_name": settings.PROVIDER_NAME,
        "payments": [{"amount": format_amount(p.amount, currency), "received_at": p.received_at}
                     for p in invoice.payments.all()],
        "amount_due": format_amount(invoice_amount_due(invoice), currency), "overdue": invoice.is_overdue(),
        **_credit_summary(invoice),
    }


def invoice_email_attachments(delivery) -> list[tuple[str, bytes, str]]:
    """The invoice email's attachment: the invoice as PDF (tenants.services.email.register_attachments)."""
    invoice = delivery.about
    return [(invoice_pdf_name(invoice), invoice_pdf_bytes(invoice), "application/pdf")]
