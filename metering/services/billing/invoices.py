"""Invoices: the lines of a period's invoice, the draft written and re-priced, numbering, finalizing with its
email, payment and voiding (docs/plans.md, "A period's invoice").

- A period is billed on one invoice: a partial unique constraint makes a second live (not void) invoice
  for the same subscription and period impossible; invoice_create returns None when one exists.
- An invoice's lines are the period priced by the pricing engine (metering.services.billing.periods),
  then the late usage of earlier periods (metering.services.billing.late); its total is their sum.
- A new invoice is a draft until ``BILLING_GRACE_PERIOD_MINUTES`` have passed; finalizing re-prices it
  with the usage known then (late records count), gives it the next number of the year's sequence,
  fixes its payment terms and due date, and records its email in the same transaction.
- Only a finalized invoice can be paid or voided; reissuing voids it and writes a draft replacement.

How the batch run calls these, and what it locks, is written in metering.services.billing.run.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, transaction
from django.template.loader import render_to_string
from django.utils import timezone

from metering.models import BillingRun, Invoice, InvoiceDiscount, InvoiceLine, InvoiceSequence, InvoiceStatus
from metering.pricing import (
    InvoiceTotals,
    PricedPeriod,
    format_amount,
    invoice_totals,
    tier_breakdown,
    tiers_document,
)
from metering.services.billing.catalog import Catalog
from metering.services.billing.late import late_usage_rows
from metering.services.billing.order import draw_invoice_credits, restore_invoice_credits
from metering.services.billing.periods import price_subscription_period, with_metric_names
from portal.kernel import ApplicationError
from tenants.models import EmailKind, Subscription
from tenants.services.email import EmailDraft, email_deliveries_cancel, email_queue_many
from tenants.webhooks.events import webhook_emit

# --- the lines -------------------------------------------------------------------------------------


def _line_rows(priced: PricedPeriod) -> list[dict]:
    rows = []
    for line in priced.lines:
        tiers = [] if line.charge is None else tiers_document(
            tier_breakdown(line.charge, line.quantity, priced.currency), priced.currency)
        rows.append({
            "type": line.type,
            "description": line.description,
            "plan_code": line.plan,
            "metric_code": line.metric or "",
            "model": line.model or "",
            "quantity": line.quantity,
            "unit_amount": line.unit_amount,
            "amount": line.amount,
            "tiers": tiers,
            "period_start": line.period_start or priced.period_start,
            "period_end": line.period_end or priced.period_end,
            "adjusts": None,
        })
    return rows


def _invoice_rows(
    subscription: Subscription, start: datetime, end: datetime, catalog: Catalog, sent: list[Invoice] | None = None
) -> tuple[str, list[dict]]:
    """(currency, line rows) of one period: the priced period, then late usage of earlier periods."""
    priced = price_subscription_period(subscription, start, end, catalog)
    late = late_usage_rows(subscription, start + timedelta(seconds=1), catalog, sent)
    rows = _line_rows(with_metric_names(priced, catalog.metric_names())) + late
    return priced.currency, rows


# --- writing and re-pricing drafts -----------------------------------------------------------------


def _write_lines(invoice: Invoice, rows: list[dict], totals: InvoiceTotals, catalog: Catalog, *,
                 replace: bool) -> None:
    if replace:
        invoice.lines.all().delete()
        invoice.discounts.all().delete()
    InvoiceLine.objects.bulk_create(
        InvoiceLine(invoice=invoice, position=position, **row) for position, row in enumerate(rows, start=1)
    )
    discounts = [discount for discount in totals.discounts if discount.amount > 0]
    if discounts:
        InvoiceDiscount.objects.bulk_create(
            InvoiceDiscount(invoice=invoice, position=position, subscription_coupon=discount.key,
                            coupon_code=discount.key.coupon.code, description=discount.label, amount=discount.amount)
            for position, discount in enumerate(discounts, start=1)
        )
        for discount in discounts:
            catalog.coupons.note(discount.key, invoice.period_start)


def _total(rows: list[dict]) -> Decimal:
    return sum((row["amount"] for row in rows), Decimal(0))


def _totals(subscription: Subscription, start: datetime, end: datetime, currency: str, rows: list[dict],
            catalog: Catalog) -> InvoiceTotals:
    """Subtotal, discounts and tax of a period's lines (credits are drawn when the invoice is finalized)."""
    return invoice_totals(_total(rows), currency, coupons=catalog.coupons.terms(subscription, start, end, currency),
                          tax=catalog.taxes.terms(subscription.tenant))


def _set_figures(invoice: Invoice, totals: InvoiceTotals) -> None:
    invoice.subtotal, invoice.discount, invoice.tax, invoice.total = (
        totals.subtotal, totals.discount, totals.tax, totals.total)
    terms = totals.tax_terms
    invoice.tax_name = terms.name if terms else ""
    invoice.tax_percentage = terms.percentage if terms else None
    invoice.tax_inclusive = bool(terms and terms.inclusive and totals.shows_tax)
    invoice.credits_applied = Decimal(0)


def reprice_draft(invoice: Invoice, catalog: Catalog) -> None:
    """Re-price a draft the caller has locked with the usage known now (lines, discounts and tax)."""
    _price_into(invoice, catalog)


def _price_into(invoice: Invoice, catalog: Catalog) -> None:
    """Re-price a draft in place (its lines and discounts are replaced)."""
    subscription = invoice.subscription
    invoice.currency, rows = _invoice_rows(subscription, invoice.period_start, invoice.period_end, catalog)
    totals = _totals(subscription, invoice.period_start, invoice.period_end, invoice.currency, rows, catalog)
    _set_figures(invoice, totals)
    _write_lines(invoice, rows, totals, catalog, replace=True)


def invoice_create(
    *, subscription: Subscription, period_start: datetime, period_end: datetime, as_of: datetime,
    billing_run: BillingRun | None = None, replaces: Invoice | None = None, catalog: Catalog | None = None,
    checked: bool = False, sent: list[Invoice] | None = None,
) -> Invoice | None:
    """Write the draft invoice of one period, or return None when a live one exists already.

    `checked`: the caller holds the subscription's lock and knows there is no live invoice yet.
    """
    if not checked and Invoice.objects.filter(subscription=subscription, period_start=period_start).exclude(
        status=InvoiceStatus.VOID
    ).exists():
        return None
    catalog = catalog or Catalog()
    currency, rows = _invoice_rows(subscription, period_start, period_end, catalog, sent)
    totals = _totals(subscription, period_start, period_end, currency, rows, catalog)
    invoice = Invoice(
        tenant_id=subscription.tenant_id, subscription=subscription, period_start=period_start,
        period_end=period_end, currency=currency, billing_run=billing_run,
        finalize_after=as_of + timedelta(minutes=settings.BILLING_GRACE_PERIOD_MINUTES), replaces=replaces,
    )
    _set_figures(invoice, totals)
    try:
        with transaction.atomic():
            invoice.save()
            _write_lines(invoice, rows, totals, catalog, replace=False)
            webhook_emit(type="invoice.created", resource=invoice, tenant=subscription.tenant)
    except IntegrityError:
        # Another worker wrote this period's invoice between our check and our insert.
        if Invoice.objects.filter(subscription=subscription, period_start=period_start).exclude(
            status=InvoiceStatus.VOID
        ).exists():
            return None
        raise
    return invoice


# --- numbering and finalizing ----------------------------------------------------------------------


def next_numbers(at: datetime, count: int) -> list[str]:
    """`count` consecutive invoice numbers of `at`'s year; the counter stays locked until the caller commits."""
    if count == 0:
        return []
    prefix = settings.INVOICE_NUMBER_PREFIX
    sequence = InvoiceSequence.objects.select_for_update().filter(prefix=prefix, year=at.year).first()
    if sequence is None:  # the year's first invoice: create the counter, tolerating a concurrent creator
        InvoiceSequence.objects.bulk_create([InvoiceSequence(prefix=prefix, year=at.year)], ignore_conflicts=True)
        sequence = InvoiceSequence.objects.select_for_update().get(prefix=prefix, year=at.year)
    first = sequence.last_number + 1
    sequence.last_number += count
    sequence.save(update_fields=["last_number"])
    return [f"{prefix}-{at.year}-{n:06d}" for n in range(first, first + count)]


def invoice_finalize(
    *, invoice: Invoice, at: datetime | None = None, reprice: bool = True, catalog: Catalog | None = None
) -> Invoice:
    """Re-price a draft with the usage known now, number it and send it to the tenant's billing contact.

    `reprice=False` is for a draft priced moments ago by the same run (finalize_now), to not price it twice.
    """
    at = at or timezone.now()
    with transaction.atomic():
        locked = (
            Invoice.objects.select_for_update(of=("self",))
            .select_related("subscription__tenant__tax_rate", "subscription__plan_version")
            .get(pk=invoice.pk)
        )
        if locked.status != InvoiceStatus.DRAFT:
            return locked  # finalized by someone else: nothing to do
        finalize_locked(locked, at=at, reprice=reprice, catalog=catalog or Catalog())
        queue_invoice_emails([locked])
    return locked


def payment_terms_days(invoice: Invoice) -> int:
    """The days a tenant has to pay this invoice: INVOICE_PAYMENT_TERMS_DAYS for every tenant (the one place
    where per-tenant terms would be looked up)."""
    return settings.INVOICE_PAYMENT_TERMS_DAYS


def due_date_for(issued_at: datetime, terms_days: int) -> date:
    """The issue date (UTC) plus the payment terms."""
    return issued_at.astimezone(UTC).date() + timedelta(days=terms_days)


def finalize_locked(invoice: Invoice, *, at: datetime, reprice: bool, catalog: Catalog, number: str | None = None,
                    drawn: bool = False) -> None:
    """Finalize a draft whose row the caller has locked, inside the caller's transaction (which queues its email).

    The payment terms and the due date are fixed here, with the number: a later change of the terms applies
    to invoices finalized after it, never to one already sent. The tenant's prepaid credits are drawn here
    (`drawn`: the caller drew them for a batch already); an invoice they pay whole is finalized as paid."""
    if reprice:
        _price_into(invoice, catalog)
    if not drawn:
        draw_invoice_credits([invoice], at=at)
    invoice.number = number or next_numbers(at, 1)[0]
    paid = invoice.total - invoice.credits_applied <= 0
    invoice.status = InvoiceStatus.PAID if paid else InvoiceStatus.FINALIZED
    invoice.finalized_at = at
    if paid:
        invoice.paid_at = at
    invoice.payment_terms_days = payment_terms_days(invoice)
    invoice.due_date = due_date_for(at, invoice.payment_terms_days)
    invoice.save()
    webhook_emit(type="invoice.finalized", resource=invoice, tenant=invoice.subscription.tenant)
    if paid:
        webhook_emit(type="invoice.paid", resource=invoice, tenant=invoice.subscription.tenant)


def queue_invoice_emails(invoices: list[Invoice]) -> None:
    """Record the email of each just-finalized invoice in the caller's transaction (so no invoice is
    finalized without its email); a worker sends them once it commits, retrying while the mail server is down."""
    if not invoices:
        return
    lines: dict[int, list[InvoiceLine]] = {invoice.pk: [] for invoice in invoices}
    for line in InvoiceLine.objects.filter(invoice__in=list(lines)).order_by("invoice_id", "position"):
        lines[line.invoice_id].append(line)
    drafts = []
    for invoice in invoices:
        invoice.tenant = tenant = invoice.subscription.tenant  # loaded with the subscription: no query each
        currency = invoice.currency
        order = [(f"Discount: {d.description}", "-" + format_amount(d.amount, currency))
                 for d in invoice.discounts.all()] if invoice.discount else []
        if invoice.shows_tax:
            order.append((f"{invoice.tax_name} ({invoice.tax_percentage.normalize():f} %"
                           f"{', included' if invoice.tax_inclusive else ''})", format_amount(invoice.tax, currency)))
        context = {"invoice": invoice, "total": format_amount(invoice.total, currency),
                   "lines": [(line.description, format_amount(line.amount, invoice.currency)) for line in lines[invoice.pk]],
                   "subtotal": format_amount(invoice.subtotal, currency) if order else "", "order": order,
                   "credits_applied": format_amount(invoice.credits_applied, currency) if invoice.credits_applied else "",
                   "amount_due": format_amount(invoice.total - invoice.credits_applied, currency),
                   "provider_name": settings.PROVIDER_NAME,
                   "url": settings.PORTAL_BASE_URL.rstrip("/") + invoice.get_absolute_url()}
        drafts.append(EmailDraft(
            kind=EmailKind.INVOICE, recipient=tenant.contact_email, tenant=tenant, about=invoice,
            subject=f"{settings.PROVIDER_NAME} invoice {invoice.number}",
            body=render_to_string("metering/invoice_email.txt", context),
        ))
    email_queue_many(drafts=drafts)


# --- payment, voiding, reissuing -------------------------------------------------------------------


def invoice_mark_paid(*, invoice: Invoice, at: datetime | None = None) -> Invoice:
    with transaction.atomic():
        locked = Invoice.objects.select_for_update().get(pk=invoice.pk)
        if locked.status == InvoiceStatus.PAID:
            return locked
        if locked.status != InvoiceStatus.FINALIZED:
            raise ApplicationError(f"Only a finalized invoice can be paid ({locked} is {locked.status}).")
        locked.status = InvoiceStatus.PAID
        locked.paid_at = at or timezone.now()
        locked.save()
        webhook_emit(type="invoice.paid", resource=locked, tenant=locked.tenant)
    return locked


def invoice_void(*, invoice: Invoice, reason: str = "", at: datetime | None = None) -> Invoice:
    with transaction.atomic():
        locked = Invoice.objects.select_for_update().get(pk=invoice.pk)
        if locked.status == InvoiceStatus.VOID:
            return locked
        if locked.status != InvoiceStatus.FINALIZED:
            raise ApplicationError(
                f"Only a finalized invoice can be voided ({locked} is {locked.status}); a draft is re-priced when finalized."
            )
        locked.status = InvoiceStatus.VOID
        locked.voided_at = at or timezone.now()
        locked.void_reason = reason
        locked.save()
        restore_invoice_credits(locked, at=locked.voided_at)
        # Not sent yet (mail server down): a voided invoice is no longer worth sending.
        email_deliveries_cancel(about=locked, reason=f"Invoice {locked.number} was voided before its email went out.")
        webhook_emit(type="invoice.voided", resource=locked, tenant=locked.tenant)
    return locked


def invoice_reissue(*, invoice: Invoice, reason: str = "", at: datetime | None = None) -> Invoice:
    """Void a finalized invoice and issue a draft replacement for the same period, pointing to it."""
    at = at or timezone.now()
    with transaction.atomic():
        voided = invoice_void(invoice=invoice, reason=reason or "reissued", at=at)
        existing = Invoice.objects.filter(replaces=voided).first()
        if existing is not None:
            return existing
        replacement = invoice_create(
            subscription=voided.subscription, period_start=voided.period_start, period_end=voided.period_end,
            as_of=at, replaces=voided,
        )
        if replacement is None:
            raise ApplicationError(f"A live invoice for this period exists already; {voided.number} was voided.")
    return replacement
