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

import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, transaction
from django.urls import reverse
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
from tenants.bulk import insert_objects, insert_rows, update_rows
from tenants.models import BillingChannel, EmailKind, Subscription, zone_named
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
    _insert_parts([(invoice, rows, totals)], catalog)


_LINE_COLUMNS = ("invoice_id", "position", "type", "description", "plan_code", "metric_code", "model", "quantity",
                 "unit_amount", "amount", "tiers", "period_start", "period_end", "adjusts_id")
_DISCOUNT_COLUMNS = ("invoice_id", "position", "subscription_coupon_id", "coupon_code", "description", "amount")


def _insert_parts(built: list[tuple[Invoice, list[dict], InvoiceTotals]], catalog: Catalog) -> None:
    """Insert the lines and the discounts of saved invoices, one statement each (metering.services.billing.bulk)."""
    insert_rows(InvoiceLine, _LINE_COLUMNS, [_line_cells(invoice, position, row)
                                             for invoice, rows, _totals in built
                                             for position, row in enumerate(rows, start=1)])
    insert_rows(InvoiceDiscount, _DISCOUNT_COLUMNS, [
        (invoice.pk, position, discount.key.pk, discount.key.coupon.code, discount.label, discount.amount)
        for invoice, _rows, totals in built
        for position, discount in enumerate(_discounts_of(invoice, totals, catalog), start=1)])


def _line_cells(invoice: Invoice, position: int, row: dict) -> tuple:
    """A line row's values in _LINE_COLUMNS' order (a key a row leaves out takes the field's default)."""
    adjusts = row.get("adjusts")
    return (invoice.pk, position, row["type"], row["description"], row.get("plan_code", ""),
            row.get("metric_code", ""), row.get("model", ""), row.get("quantity"), row.get("unit_amount"),
            row["amount"], row.get("tiers", []), row["period_start"], row["period_end"],
            adjusts.pk if adjusts is not None else None)


def _discounts_of(invoice: Invoice, totals: InvoiceTotals, catalog: Catalog) -> list:
    """The invoice's discounts to write, those above 0 (the coupons' periods noted as used in the catalog)."""
    discounts = [discount for discount in totals.discounts if discount.amount > 0]
    for discount in discounts:
        catalog.coupons.note(discount.key, invoice.period_start)
    return discounts


def _insert_invoices(invoices: list[Invoice]) -> None:
    """Insert new invoices in one statement and give them their keys (their defaults were set when built)."""
    insert_objects(Invoice, invoices)


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


def _new_invoice(
    subscription: Subscription, period_start: datetime, period_end: datetime, *, as_of: datetime,
    billing_run: BillingRun | None, replaces: Invoice | None, catalog: Catalog, sent: list[Invoice] | None,
) -> tuple[Invoice, list[dict], InvoiceTotals]:
    """The unsaved draft of one period, its line rows and totals (ApplicationError when it cannot be priced)."""
    currency, rows = _invoice_rows(subscription, period_start, period_end, catalog, sent)
    totals = _totals(subscription, period_start, period_end, currency, rows, catalog)
    invoice = Invoice(
        tenant=subscription.tenant, subscription=subscription, period_start=period_start,
        period_end=period_end, currency=currency, billing_run=billing_run,
        finalize_after=as_of + timedelta(minutes=settings.BILLING_GRACE_PERIOD_MINUTES), replaces=replaces,
    )
    _set_figures(invoice, totals)
    return invoice, rows, totals


def _save_new(invoice: Invoice, rows: list[dict], totals: InvoiceTotals, catalog: Catalog) -> Invoice | None:
    """Write one new draft with its lines in a savepoint; None when another worker wrote this period's
    invoice between our check and our insert."""
    try:
        with transaction.atomic():
            invoice.save()
            _write_lines(invoice, rows, totals, catalog, replace=False)
            webhook_emit(type="invoice.created", resource=invoice, tenant=invoice.tenant)
    except IntegrityError:
        if Invoice.objects.filter(subscription=invoice.subscription_id, period_start=invoice.period_start).exclude(
            status=InvoiceStatus.VOID
        ).exists():
            return None
        raise
    return invoice


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
    invoice, rows, totals = _new_invoice(subscription, period_start, period_end, as_of=as_of, billing_run=billing_run,
                                         replaces=replaces, catalog=catalog, sent=sent)
    return _save_new(invoice, rows, totals, catalog)


def invoices_create_locked(
    *, periods: list[tuple[Subscription, datetime, datetime]], as_of: datetime, billing_run: BillingRun | None,
    catalog: Catalog, sent: dict[int, list[Invoice]],
) -> tuple[list[Invoice], list[str]]:
    """Write the drafts of many periods (a billing batch) with one insert each for the invoices, their lines
    and their discounts: (invoices written, errors). The caller holds the subscriptions' locks and knows these
    periods have no live invoice; a period whose pricing fails (ApplicationError) is left out with its error.
    When a concurrent writer (one that does not lock subscriptions, as a reissue) got a period first, the
    unique constraint refuses the insert and each draft is written on its own instead, that period's left out."""
    built, errors = [], []
    for subscription, start, end in periods:
        try:
            built.append(_new_invoice(subscription, start, end, as_of=as_of, billing_run=billing_run, replaces=None,
                                      catalog=catalog, sent=sent[subscription.pk]))
        except ApplicationError as exc:  # raised before any write for this subscription
            errors.append(f"subscription {subscription.pk}: {exc.message}")
    if not built:
        return [], errors
    try:
        with transaction.atomic():
            _insert_invoices([invoice for invoice, _rows, _totals in built])
            _insert_parts(built, catalog)
            for invoice, _rows, _totals in built:
                webhook_emit(type="invoice.created", resource=invoice, tenant=invoice.tenant)
    except IntegrityError:
        for invoice, _rows, _totals in built:
            invoice.pk = None
            invoice._state.adding = True
        written = [_save_new(invoice, rows, totals, catalog) for invoice, rows, totals in built]
        return [invoice for invoice in written if invoice is not None], errors
    return [invoice for invoice, _rows, _totals in built], errors


# --- numbering and finalizing ----------------------------------------------------------------------


def next_numbers(at: datetime, count: int, *, prefix: str | None = None) -> list[str]:
    """`count` consecutive invoice numbers of `at`'s year (or of the sequence `prefix` names, such as the credit
    notes'); the counter stays locked until the caller commits."""
    if count == 0:
        return []
    prefix = prefix or settings.INVOICE_NUMBER_PREFIX
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
    """The days a tenant has to pay this invoice: the tenant's own terms, else its plan version's
    ``payment_terms_days``, else INVOICE_PAYMENT_TERMS_DAYS (docs/plans.md, "Payment terms")."""
    subscription = invoice.subscription
    if subscription.tenant.payment_terms_days is not None:
        return subscription.tenant.payment_terms_days
    plan_terms = (subscription.plan_version.document or {}).get("payment_terms_days")
    if plan_terms is not None:
        return int(plan_terms)
    return settings.INVOICE_PAYMENT_TERMS_DAYS


def collected_through_marketplace(invoice: Invoice) -> bool:
    """AWS bills this invoice's tenant (from the usage reported hourly): the invoice is a record, never sent
    and never owed (docs/marketplace.md)."""
    return invoice.subscription.tenant.billing_channel == BillingChannel.AWS_MARKETPLACE


def due_date_for(issued_at: datetime, terms_days: int) -> date:
    """The issue date (UTC) plus the payment terms."""
    return issued_at.astimezone(UTC).date() + timedelta(days=terms_days)


def finalize_locked(invoice: Invoice, *, at: datetime, reprice: bool, catalog: Catalog, number: str | None = None,
                    drawn: bool = False, save: bool = True) -> None:
    """Finalize a draft whose row the caller has locked, inside the caller's transaction (which queues its email).

    The payment terms and the due date are fixed here, with the number: a later change of the terms applies
    to invoices finalized after it, never to one already sent. The tenant's prepaid credits are drawn here
    (`drawn`: the caller drew them for a batch already); an invoice they pay whole is finalized as paid.
    `save=False`: the caller writes the row with others of its batch (invoices_save_finalized, which then
    emits their webhooks) before its transaction commits."""
    if reprice:
        _price_into(invoice, catalog)
    if not drawn:
        draw_invoice_credits([invoice], at=at)
    invoice.number = number or next_numbers(at, 1)[0]
    # Paid as it is issued when prepaid credits pay it whole, or when AWS Marketplace collects it (then no
    # email, reminder or receivable ever follows).
    paid = invoice.total - invoice.credits_applied <= 0 or collected_through_marketplace(invoice)
    invoice.status = InvoiceStatus.PAID if paid else InvoiceStatus.FINALIZED
    invoice.finalized_at = at
    if paid:
        invoice.paid_at = at
    invoice.payment_terms_days = payment_terms_days(invoice)
    invoice.due_date = due_date_for(at, invoice.payment_terms_days)
    if save:
        invoice.save()
        _emit_finalized(invoice)


def _emit_finalized(invoice: Invoice) -> None:
    """The webhooks of a just-finalized invoice, once its row is written (their payload reads it)."""
    webhook_emit(type="invoice.finalized", resource=invoice, tenant=invoice.subscription.tenant)
    if invoice.status == InvoiceStatus.PAID:
        webhook_emit(type="invoice.paid", resource=invoice, tenant=invoice.subscription.tenant)


def invoices_save_finalized(invoices: list[Invoice]) -> None:
    """Write the rows of drafts finalized with ``finalize_locked(..., save=False)`` in one statement (the
    columns that changed on any of them since they were read; they were drafts, so no frozen field of a
    sent invoice changes), then emit their webhooks."""
    if not invoices:
        return
    now = timezone.now()
    missing = object()
    columns = {"updated_at"}
    for invoice in invoices:
        invoice.updated_at = now
        stored = getattr(invoice, "_stored", {})
        columns.update(field.name for field in Invoice._meta.concrete_fields
                       if not field.primary_key and stored.get(field.attname, missing) != getattr(invoice, field.attname))
    update_rows(Invoice, invoices, sorted(columns))
    for invoice in invoices:
        invoice._stored = {name: getattr(invoice, name) for name in ("status", *Invoice.FROZEN_FIELDS)}
        _emit_finalized(invoice)


def queue_invoice_emails(invoices: list[Invoice]) -> None:
    """Record the email of each just-finalized invoice in the caller's transaction (so no invoice is
    finalized without its email); a worker sends them once it commits, retrying while the mail server is down."""
    if not invoices:
        return
    # Read as (description, amount) pairs: the email needs no more of them (model rows parse each line's tiers).
    lines: dict[int, list[tuple]] = {invoice.pk: [] for invoice in invoices}
    for invoice_id, description, amount in InvoiceLine.objects.filter(invoice__in=list(lines)).order_by(
            "invoice_id", "position").values_list("invoice_id", "description", "amount"):
        lines[invoice_id].append((description, amount))
    discounts: dict[int, list[tuple]] = {invoice.pk: [] for invoice in invoices}
    if any(invoice.discount for invoice in invoices):
        for invoice_id, description, amount in InvoiceDiscount.objects.filter(invoice__in=list(discounts)).order_by(
                "invoice_id", "position").values_list("invoice_id", "description", "amount"):
            discounts[invoice_id].append((description, amount))
    # The document's address of each invoice, from one reverse() (its only variable part is the public id).
    placeholder = str(uuid.UUID(int=0))
    document_url = settings.PORTAL_BASE_URL.rstrip("/") + reverse("invoice-document", args=[placeholder])
    drafts = []
    for invoice in invoices:
        invoice.tenant = tenant = invoice.subscription.tenant  # loaded with the subscription: no query each
        if collected_through_marketplace(invoice):
            continue
        currency = invoice.currency
        order = [(f"Discount: {description}", "-" + format_amount(amount, currency))
                 for description, amount in discounts[invoice.pk]]
        if invoice.shows_tax:
            order.append((f"{invoice.tax_name} ({invoice.tax_percentage.normalize():f} %"
                           f"{', included' if invoice.tax_inclusive else ''})", format_amount(invoice.tax, currency)))
        body = invoice_email_body(
            invoice, tenant, lines=[(description, format_amount(amount, currency))
                                    for description, amount in lines[invoice.pk]],
            order=order, url=document_url.replace(placeholder, str(invoice.public_id)))
        drafts.append(EmailDraft(
            kind=EmailKind.INVOICE, recipient=tenant.contact_email, tenant=tenant, about=invoice,
            subject=f"{settings.PROVIDER_NAME} invoice {invoice.number}", body=body,
        ))
    email_queue_many(drafts=drafts)


def invoice_email_body(invoice: Invoice, tenant, *, lines: list[tuple[str, str]], order: list[tuple[str, str]],
                       url: str) -> str:
    """The text of an invoice's email: its lines (description, formatted amount), the order below the subtotal
    (discounts, tax) when there is one, the total, the credits drawn and what is left to pay, the due date and the
    document's address. Written here rather than as a template: a template's rendering was a tenth of a billing
    run's CPU. Plain text, like every other email of the portal: nothing is HTML-escaped (the template engine
    escaped it, so a tenant named "A & B" read "A &amp; B")."""
    currency = invoice.currency
    zone_name = str(tenant.time_zone)
    zone = zone_named(zone_name)
    provider = settings.PROVIDER_NAME
    out = [f"Hello {tenant.name},\n\n",
           f"Your invoice {invoice.number} from {provider} for {invoice.period_start.astimezone(zone):%Y-%m-%d}"
           f" to {invoice.period_end.astimezone(zone):%Y-%m-%d}"]
    if zone_name != "UTC":
        out.append(f" ({zone_name} time)")
    out.append(" is ready.\n\n")
    out.extend(f"- {description}: {amount} {currency}\n" for description, amount in lines)
    if order:
        out.append(f"\nSubtotal: {format_amount(invoice.subtotal, invoice.currency)} {currency}\n")
        out.extend(f"- {description}: {amount} {currency}\n" for description, amount in order)
    out.append(f"\nTotal: {format_amount(invoice.total, invoice.currency)} {currency}\n")
    if invoice.credits_applied:
        out.append(f"Prepaid credits applied: -{format_amount(invoice.credits_applied, invoice.currency)} "
                   f"{currency}\n")
        if invoice.status == InvoiceStatus.PAID:
            out.append("Nothing is left to pay: your credits paid this invoice.\n")
        else:
            due = format_amount(invoice.total - invoice.credits_applied, invoice.currency)
            out.append(f"Amount due: {due} {currency}\n")
    if invoice.due_date:
        days = invoice.payment_terms_days
        out.append(f"Due by {invoice.due_date:%Y-%m-%d} (payment terms: {days} day{'' if days == 1 else 's'} "
                   "from the issue date).\n")
    out.append(f"\nView or print it: {url}\n\n{provider}\n")
    return "".join(out)


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
    """Void an unpaid mistake: a finalized invoice nothing was paid or credited on. Money given back on an
    invoice that was paid (in full or in part) is a credit note (metering.services.billing.credit_notes)."""
    with transaction.atomic():
        locked = Invoice.objects.select_for_update().get(pk=invoice.pk)
        if locked.status == InvoiceStatus.VOID:
            return locked
        if locked.status != InvoiceStatus.FINALIZED:
            raise ApplicationError(
                f"Only a finalized, unpaid invoice can be voided ({locked} is {locked.status}); "
                + ("issue a credit note instead." if locked.status == InvoiceStatus.PAID
                   else "a draft is re-priced when finalized.")
            )
        if locked.payments.exists() or locked.credited_amount:
            raise ApplicationError(
                f"{locked} has payments or credit notes recorded: it cannot be voided; issue a credit note instead.")
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
