"""Credit notes: give back some or all of a finalized or paid invoice (docs/plans.md, "Credit notes").

A credit note credits chosen lines of the invoice (all of a line, or part of it) and/or an amount on the
invoice as a whole. It is issued under the invoice's row lock, so concurrent issuers queue and each sees
what the others credited; the invoice's running figures are checked by the database too
(``invoice_credited_within_total``). The outcome says where the money goes:

- ``invoice``: taken off what is left to pay (finalized invoices; at most the amount due). The note that
  brings the amount due to 0 marks the invoice paid.
- ``refunded``: paid back to the tenant, recorded here (at most what was received and not yet given back).
- ``balance``: credited to the tenant's prepaid balance, drawn by its next invoices (at most what was
  received and not yet given back); only where prepaid credits exist.

A credit note is never edited or deleted; a wrong one is corrected by none: credit notes only give back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation

from django.conf import settings
from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from metering.models import CreditNote, CreditNoteLine, CreditNoteOutcome, Invoice, InvoiceLine, InvoiceStatus
from metering.pricing import format_amount
from metering.pricing.currency import quantize_amount
from metering.services.billing.invoices import invoice_mark_paid, next_numbers
from portal.kernel import ApplicationError
from tenants.webhooks.events import webhook_emit


@dataclass(frozen=True)
class CreditRequest:
    """One line of a credit note to be: an invoice line (its id), or None for the invoice as a whole; `amount`
    None credits all that remains of the line."""

    invoice_line_id: int | None
    amount: Decimal | str | None = None
    description: str = ""


def balance_outcome_available() -> bool:
    """Whether the tenant's prepaid balance exists to credit (the prepaid credits of docs/plans.md)."""
    return False


def _amount(value, currency: str, what: str) -> Decimal:
    try:
        amount = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise ApplicationError(f"{what}: an amount, not {str(value)[:40]!r}.") from None
    if not amount.is_finite() or amount <= 0 or amount != quantize_amount(amount, currency):
        raise ApplicationError(f"{what}: an amount above 0 in {currency}'s minor units, not {str(value)[:40]!r}.")
    return amount


def line_credited(line_ids) -> dict[int, Decimal]:
    """What credit notes gave back so far on each of these invoice lines."""
    rows = (CreditNoteLine.objects.filter(invoice_line_id__in=list(line_ids)).values("invoice_line_id")
            .annotate(credited=Sum("amount")).order_by())
    return {row["invoice_line_id"]: row["credited"] for row in rows}


def invoice_received(invoice: Invoice) -> Decimal:
    """What the tenant paid on the invoice: its payments, or all that was owed once it is marked paid."""
    if invoice.status == InvoiceStatus.PAID:
        return invoice.total - invoice.credited_against_due
    return invoice.payments.aggregate(paid=Sum("amount"))["paid"] or Decimal(0)


def invoice_creditable(invoice: Invoice) -> Decimal:
    """What credit notes may still give back on the invoice (0 unless finalized or paid)."""
    if invoice.status not in (InvoiceStatus.FINALIZED, InvoiceStatus.PAID):
        return Decimal(0)
    return invoice.total - invoice.credited_amount


def credit_note_issue(
    *, invoice: Invoice, outcome: str, lines: list[CreditRequest], reason: str = "", reference: str = "",
    by=None, at: datetime | None = None,
) -> CreditNote:
    """Issue a credit note on a finalized or paid invoice, never above what remains creditable."""
    if outcome not in CreditNoteOutcome.values:
        raise ApplicationError(f"Unknown credit note outcome {str(outcome)[:40]!r}.")
    if outcome == CreditNoteOutcome.BALANCE and not balance_outcome_available():
        raise ApplicationError("Crediting the tenant's balance needs prepaid credits, which this portal does not "
                               "have yet: refund it instead.")
    if not lines:
        raise ApplicationError("Choose the lines to credit, or an amount.")
    if settings.CREDIT_NOTE_NUMBER_PREFIX == settings.INVOICE_NUMBER_PREFIX:
        raise ApplicationError("CREDIT_NOTE_NUMBER_PREFIX must differ from INVOICE_NUMBER_PREFIX (credit notes are "
                               "numbered in a sequence of their own).")
    at = at or timezone.now()
    with transaction.atomic():
        locked = Invoice.objects.select_for_update(of=("self",)).select_related("tenant").get(pk=invoice.pk)
        if locked.status not in (InvoiceStatus.FINALIZED, InvoiceStatus.PAID):
            raise ApplicationError(f"Only a finalized or paid invoice takes credit notes ({locked} is "
                                   f"{locked.get_status_display().lower()}).")
        currency = locked.currency
        invoice_lines = {line.pk: line for line in InvoiceLine.objects.filter(invoice=locked)}
        credited = line_credited(invoice_lines)
        rows: list[tuple[InvoiceLine | None, str, Decimal]] = []
        seen: set[int] = set()
        for request in lines:
            if request.invoice_line_id is None:
                if request.amount in (None, ""):
                    raise ApplicationError("An amount on the invoice as a whole needs its amount.")
                amount = _amount(request.amount, currency, "The amount")
                rows.append((None, (request.description or "Credit on the invoice").strip()[:300], amount))
                continue
            line = invoice_lines.get(request.invoice_line_id)
            if line is None:
                raise ApplicationError(f"Line {request.invoice_line_id} is not a line of {locked}.")
            if line.pk in seen:
                raise ApplicationError(f"Line {line.position} is named twice.")
            seen.add(line.pk)
            left = line.amount - credited.get(line.pk, Decimal(0))
            amount = left if request.amount in (None, "") else _amount(request.amount, currency, f"Line {line.position}")
            if amount <= 0:
                raise ApplicationError(f"Line {line.position} ({line.description}) is credited in full already.")
            if amount > left:
                raise ApplicationError(
                    f"Line {line.position} ({line.description}): {format_amount(amount, currency)} is more than what "
                    f"remains creditable on it ({format_amount(left, currency)} {currency}).")
            rows.append((line, line.description, amount))
        total = sum((amount for _line, _description, amount in rows), Decimal(0))
        creditable = invoice_creditable(locked)
        if total > creditable:
            raise ApplicationError(f"{format_amount(total, currency)} is more than what remains creditable on "
                                   f"{locked} ({format_amount(creditable, currency)} {currency}).")
        received = invoice_received(locked)
        given_back = locked.credited_amount - locked.credited_against_due
        if outcome == CreditNoteOutcome.INVOICE:
            from metering.services.billing.payments import invoice_amount_due

            due = invoice_amount_due(locked)
            if total > due:
                raise ApplicationError(
                    f"{format_amount(total, currency)} is more than what is left to pay on {locked} "
                    f"({format_amount(due, currency)} {currency}): refund the rest instead.")
        elif total > received - given_back:
            raise ApplicationError(
                f"{format_amount(total, currency)} is more than was received on {locked} and not yet given back "
                f"({format_amount(received - given_back, currency)} {currency}): take it off what is left to pay instead.")
        number = next_numbers(at, 1, prefix=settings.CREDIT_NOTE_NUMBER_PREFIX)[0]
        note = CreditNote.objects.create(
            invoice=locked, tenant=locked.tenant, number=number, currency=currency, amount=total, outcome=outcome,
            reason=reason.strip(), reference=reference.strip()[:200], issued_at=at, issued_by=by)
        CreditNoteLine.objects.bulk_create(
            CreditNoteLine(credit_note=note, position=position, invoice_line=line, description=description,
                           amount=amount)
            for position, (line, description, amount) in enumerate(rows, start=1))
        locked.credited_amount += total
        if outcome == CreditNoteOutcome.INVOICE:
            locked.credited_against_due += total
        locked.save(update_fields=["credited_amount", "credited_against_due", "updated_at"])
        webhook_emit(type="invoice.credited", resource=locked, tenant=locked.tenant)
        if outcome == CreditNoteOutcome.INVOICE and locked.status == InvoiceStatus.FINALIZED:
            from metering.services.billing.payments import invoice_amount_due

            if invoice_amount_due(locked) == 0:
                invoice_mark_paid(invoice=locked, at=at)
    return note
