"""Payments and reminders: record money received against an invoice (in part or in full), and remind tenants
of what they owe on the schedule INVOICE_REMINDER_DAYS sets.

A payment is recorded under the invoice's row lock, never above what is left to pay; the payment that
brings the paid amount to the total marks the invoice paid (invoice_mark_paid), in the same transaction.
A reminder is written with its email in one transaction under a unique (invoice, step) constraint, so a
daily task run twice, or by two workers, sends each reminder once.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.utils import timezone

from metering.models import Invoice, InvoicePayment, InvoiceReminder, InvoiceStatus
from metering.pricing import format_amount
from metering.pricing.currency import quantize_amount
from metering.services.billing.invoices import invoice_mark_paid
from portal.kernel import ApplicationError
from tenants.services.email import EmailDraft, email_queue_many


def invoice_amount_paid(invoice: Invoice) -> Decimal:
    """The payments' sum (from the queryset's ``amount_paid_sum`` annotation when it has one)."""
    if hasattr(invoice, "amount_paid_sum"):
        return invoice.amount_paid_sum or Decimal(0)
    return invoice.payments.aggregate(paid=Sum("amount"))["paid"] or Decimal(0)


def invoice_amount_due(invoice: Invoice) -> Decimal:
    """What is left to pay: nothing on a paid, void or draft invoice; else the total less the prepaid credits
    it drew, the credit notes taken off it and the payments."""
    if invoice.status != InvoiceStatus.FINALIZED:
        return Decimal(0)
    return max(invoice.total - invoice.credits_applied - invoice.credited_against_due - invoice_amount_paid(invoice),
               Decimal(0))


def invoice_payment_record(*, invoice: Invoice, amount, received_at: datetime | None = None, reference: str = "",
                           by=None) -> InvoicePayment:
    """Record a payment of a finalized invoice; the one that completes it marks the invoice paid."""
    try:
        amount = Decimal(str(amount).strip())
    except (InvalidOperation, ValueError):
        raise ApplicationError(f"A payment is an amount, not {str(amount)[:40]!r}.") from None
    received_at = received_at or timezone.now()
    with transaction.atomic():
        locked = Invoice.objects.select_for_update().get(pk=invoice.pk)
        if locked.status != InvoiceStatus.FINALIZED:
            raise ApplicationError(f"Only a finalized, unpaid invoice takes payments ({locked} is {locked.status}).")
        if not amount.is_finite() or amount <= 0 or amount != quantize_amount(amount, locked.currency):
            raise ApplicationError(f"A payment is an amount above 0 in {locked.currency}'s minor units.")
        left = locked.total - locked.credits_applied - locked.credited_against_due - invoice_amount_paid(locked)
        if amount > left:
            raise ApplicationError(f"{format_amount(amount, locked.currency)} is more than what is left to pay "
                                   f"({format_amount(left, locked.currency)} {locked.currency}).")
        payment = InvoicePayment.objects.create(invoice=locked, amount=amount, received_at=received_at,
                                                reference=reference.strip()[:200], recorded_by=by)
        if amount == left:
            invoice_mark_paid(invoice=locked, at=received_at)
    return payment


# --- reminders -------------------------------------------------------------------------------------------


def reminder_steps() -> list[int]:
    return sorted(set(settings.INVOICE_REMINDER_DAYS))


def payment_reminders_send(*, now: datetime | None = None) -> list[InvoiceReminder]:
    """Remind the tenant of each unpaid invoice whose latest reminder step is due and was not sent: one
    email per step (after a pause of the schedule, only the latest step due, not every one missed)."""
    now = now or timezone.now()
    today = now.date()
    steps = reminder_steps()
    if not steps:
        return []
    sent = []
    unpaid = (Invoice.objects.filter(status=InvoiceStatus.FINALIZED, due_date__lte=today - timedelta(days=steps[0]))
              .select_related("tenant").order_by("due_date", "pk"))
    for invoice in unpaid:
        due_steps = [step for step in steps if invoice.due_date + timedelta(days=step) <= today]
        if not due_steps or InvoiceReminder.objects.filter(invoice=invoice, step__gte=due_steps[-1]).exists():
            continue
        reminder = _remind(invoice, due_steps[-1], now)
        if reminder is not None:
            sent.append(reminder)
    return sent


def _remind(invoice: Invoice, step: int, now: datetime) -> InvoiceReminder | None:
    tenant = invoice.tenant
    due = invoice_amount_due(invoice)
    if due <= 0 or not tenant.contact_email:
        return None
    days = (now.date() - invoice.due_date).days
    when = (f"is due on {invoice.due_date:%Y-%m-%d}" if days < 0 else "is due today" if days == 0
            else f"was due on {invoice.due_date:%Y-%m-%d}, {days} days ago")
    amount = f"{format_amount(due, invoice.currency)} {invoice.currency}"
    body = (f"Hello {tenant.name},\n\nInvoice {invoice.number} from {settings.PROVIDER_NAME} {when}; "
            f"{amount} is left to pay.\n\nView or print it: "
            f"{settings.PORTAL_BASE_URL.rstrip('/')}{invoice.get_absolute_url()}\n\nIf you have paid it meanwhile, "
            f"thank you, and please ignore this reminder.\n\n{settings.PROVIDER_NAME}\n")
    try:
        with transaction.atomic():
            reminder = InvoiceReminder.objects.create(invoice=invoice, step=step, sent_at=now)
            email_queue_many(drafts=[EmailDraft(
                kind="invoice_reminder", recipient=tenant.contact_email, tenant=tenant, about=invoice,
                subject=f"{settings.PROVIDER_NAME}: invoice {invoice.number}, {amount} "
                        f"{'due' if days <= 0 else 'overdue'}", body=body)])
    except IntegrityError:
        return None  # another run sent this step
    return reminder
