"""Late usage: usage of a period that reached the portal after the period's invoice was sent (finalized or
paid), billed on the subscription's next invoice as a "late usage" line that names the invoice it belongs
to (docs/plans.md, "Drafts and late usage").

Each metric's added quantity is its quantity over the period now less what was billed for it (the sent
invoice's usage lines and the late lines that adjusted it since, drafts not counted), summed over the
period's parts; it is priced by the pricing engine (``price_added_usage``) under the charge of the plan
in force at the period's end: the charge at the whole quantity less the charge at the billed one.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from django.db.models import Q, Sum

from metering.models import Invoice, InvoiceLine, InvoiceStatus, LineType
from metering.pricing import price_added_usage, unit_amount_shown
from metering.services.billing.catalog import Catalog
from metering.services.billing.periods import period_segments
from tenants.models import Subscription

# How far back sent invoices are checked for late usage.
LATE_USAGE_HORIZON = timedelta(days=92)


def _billed_quantities(invoice: Invoice) -> dict[str, Decimal]:
    """What an invoice (with the late lines that adjusted it since) billed per metric."""
    billed: dict[str, Decimal] = {}
    for code, total in (
        InvoiceLine.objects.filter(Q(invoice=invoice, type=LineType.USAGE) | Q(adjusts=invoice))
        # Only what was sent counts as billed: a draft's late lines are recomputed when it is finalized.
        .filter(invoice__status__in=[InvoiceStatus.FINALIZED, InvoiceStatus.PAID])
        .values_list("metric_code")
        .annotate(total=Sum("quantity"))
    ):
        billed[code] = total or Decimal(0)
    return billed


def sent_invoices(subscriptions, since: datetime) -> dict[int, list[Invoice]]:
    """Finalized and paid invoices of these subscriptions whose period ended after `since`, per subscription."""
    sent: dict[int, list[Invoice]] = {subscription.pk: [] for subscription in subscriptions}
    for invoice in Invoice.objects.filter(
        subscription__in=list(sent), status__in=[InvoiceStatus.FINALIZED, InvoiceStatus.PAID], period_end__gt=since
    ).order_by("period_start"):
        sent[invoice.subscription_id].append(invoice)
    return sent


def late_usage_rows(
    subscription: Subscription, before: datetime, catalog: Catalog, sent: list[Invoice] | None = None
) -> list[dict]:
    """Invoice line rows for the late usage of the sent invoices whose period ended before `before`
    (within LATE_USAGE_HORIZON).

    `sent`: the subscription's sent invoices when the caller fetched them for a whole batch.
    """
    rows = []
    if sent is None:
        sent = sent_invoices([subscription], before - LATE_USAGE_HORIZON)[subscription.pk]
    earlier = [invoice for invoice in sent if before - LATE_USAGE_HORIZON < invoice.period_end <= before]
    names = catalog.metric_names()
    zone = subscription.tenant.zone  # the period's dates as the tenant's clock reads them
    for invoice in earlier:
        segments = period_segments(subscription, invoice.period_start, invoice.period_end, catalog)
        if not segments:
            continue
        now_quantities: dict[str, Decimal] = {}
        charges = {}
        for segment in segments:
            for charge in segment.plan.charges:
                charges[charge.metric] = (charge, segment.plan)  # the last part's plan wins
                now_quantities[charge.metric] = now_quantities.get(charge.metric, Decimal(0)) + segment.quantities.get(
                    charge.metric, Decimal(0)
                )
        billed = _billed_quantities(invoice)
        for code, quantity in now_quantities.items():
            already = billed.get(code, Decimal(0))
            if quantity - already <= 0:
                continue
            charge, plan = charges[code]
            rows.append({
                "type": LineType.LATE_USAGE,
                "description": f"Late usage for {invoice.number} ({invoice.period_start.astimezone(zone):%Y-%m-%d} to "
                f"{invoice.period_end.astimezone(zone):%Y-%m-%d}): {names.get(code, code)}",
                "plan_code": plan.code,
                "metric_code": code,
                "model": charge.model,
                "quantity": quantity - already,
                "unit_amount": unit_amount_shown(charge),
                "amount": price_added_usage(charge, billed=already, quantity=quantity, currency=plan.currency),
                "period_start": invoice.period_start,
                "period_end": invoice.period_end,
                "adjusts": invoice,
            })
    return rows
