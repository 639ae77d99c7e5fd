"""Invoice documents: a printable HTML page for staff and for the users of the invoice's tenant."""

from decimal import Decimal

from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import get_object_or_404, render

from metering.models import Invoice, InvoiceStatus
from metering.pricing import format_amount, format_plain, format_unit_amount


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


@login_required
def invoice_document(request, public_id):
    invoice = get_object_or_404(Invoice.objects.select_related("tenant", "subscription__plan_version__plan"), public_id=public_id)
    if not _visible_to(request.user, invoice):
        raise Http404("No such invoice")  # the same answer as a wrong id: nothing to learn from it
    currency = invoice.currency
    lines = [
        {"line": line, "amount": format_amount(line.amount, currency),
         "unit_amount": None if line.unit_amount is None else format_unit_amount(line.unit_amount, currency),
         "quantity": None if line.quantity is None else format_plain(line.quantity),
         "tiers": [{**tier, "has_flat": bool(Decimal(tier["flat_amount"]))} for tier in line.tiers]}
        for line in invoice.lines.select_related("adjusts")
    ]
    return render(request, "metering/invoice.html", {
        "invoice": invoice, "lines": lines, "total": format_amount(invoice.total, currency),
        "has_tiers": any(row["tiers"] for row in lines),
    })
