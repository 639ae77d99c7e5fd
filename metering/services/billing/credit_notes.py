"""Credit notes: give back some or all of a finalized or paid invoice (docs/plans.md, "Credit notes").

A credit note credits chosen lines of the invoice (all of a line, or part of it) and/or an amount on the
invoice as a whole. It is issued under the invoice's row lock, so concurrent issuers queue and each sees
what the others credited; the invoice's running figures are checked by the database too
(``invoice_credited_within_total``). The outcome says where the money goes:

- ``invoice``: taken off what is left to pay (finalized invoices; at most the amount due). The note that
  brings the amount due to 0 marks the invoice paid.
- ``refunded``: paid back to the tenant, recorded here (at most the money received and not yet refunded, nor
  given back otherwise).
- ``balance``: a prepaid credit grant of the amount for the tenant (metering.services.credits), drawn by its
  next invoices: at most what was received, in money or prepaid credits, and not yet given back.

Amounts are the invoice's own: a line's credit is capped at the line's amount, the note's at the invoice's
total (after discounts and tax); a credit note does not split itself into tax.

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
    """The money the tenant paid on the invoice: its payments, or all that was owed in money once it is paid
    (prepaid credits are counted apart: ``credits_applied``)."""
    if invoice.status == InvoiceStatus.PAID:
        return invoice.total - invoice.credits_applied - invoice.credited_against_due
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
        given_back = locked.credited_amount - locked.credited_against_due  # refunded or credited to the balance
        back_possible = received + locked.credits_applied - given_back
        if outcome == CreditNoteOutcome.INVOICE:
            from metering.services.billing.payments import invoice_amount_due

            due = invoice_amount_due(locked)
            if total > due:
                raise ApplicationError(
                    f"{format_amount(total, currency)} is more than what is left to pay on {locked} "
                    f"({format_amount(due, currency)} {currency}): refund the rest instead.")
        elif outcome == CreditNoteOutcome.REFUNDED:
            refunded = (CreditNote.objects.filter(invoice=locked, outcome=CreditNoteOutcome.REFUNDED)
                        .aggregate(total=Sum("amount"))["total"] or Decimal(0))
            refundable = min(received - refunded, back_possible)
            if total > refundable:
                raise ApplicationError(
                    f"{format_amount(total, currency)} is more than the money received on {locked} and not yet given "
                    f"back ({format_amount(refundable, currency)} {currency}): take it off what is left to pay, or "
                    "credit the tenant's balance, instead.")
        elif total > back_possible:
            raise ApplicationError(
                f"{format_amount(total, currency)} is more than was received on {locked} (money or prepaid credits) "
                f"and not yet given back ({format_amount(back_possible, currency)} {currency}): take it off what is "
                "left to pay instead.")
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
        if outcome == CreditNoteOutcome.BALANCE:
            from metering.services.credits import credit_grant_create

            credit_grant_create(tenant=locked.tenant, amount=total, currency=currency, by=by,
                                note=f"Credit note {number} on invoice {locked.number}")
        webhook_emit(type="invoice.credited", resource=locked, tenant=locked.tenant)
        if outcome == CreditNoteOutcome.INVOICE and locked.status == InvoiceStatus.FINALIZED:
            from metering.services.billing.payments import invoice_amount_due

            if invoice_amount_due(locked) == 0:
                invoice_mark_paid(invoice=locked, at=at)
    return note
