"""Billing: each subscription's closed periods priced into invoices, exactly once, finalized after a grace period.

Where each thing lives:

- ``periods``: period calendars (calendar or anniversary), closed periods, the plan versions in force
  over a period, the hours each part counts, and ``price_subscription_period``.
- ``catalog``: the read cache of a run (metrics, parsed plan versions, prefetched quantities).
- ``invoices``: an invoice's lines, writing and re-pricing drafts, numbering, finalizing with the
  invoice's email, paying, voiding and reissuing.
- ``late``: usage that arrived after its period's invoice was sent, billed on the next invoice.
- ``run``: ``billing_run``, the batch run that the beat task, ``manage.py run_billing`` and the admin
  call, with its locking and transaction policy.
- The projected bill of the current period is a read: ``metering.selectors.billing.projected_bill``.

The names below are re-exported for callers that import them from the package; tests patch the
module that uses a name (e.g. ``metering.services.billing.run.BATCH_SIZE``), not the package.
"""

from metering.services.billing.invoices import (
    due_date_for,
    invoice_create,
    invoice_finalize,
    invoice_mark_paid,
    invoice_reissue,
    invoice_void,
    payment_terms_days,
)
from metering.services.billing.periods import (
    closed_periods,
    period_from_label,
    price_subscription_period,
    subscription_period,
)
from metering.services.billing.run import BillingResult, billing_run

__all__ = [
    "BillingResult",
    "billing_run",
    "closed_periods",
    "due_date_for",
    "invoice_create",
    "invoice_finalize",
    "invoice_mark_paid",
    "invoice_reissue",
    "invoice_void",
    "payment_terms_days",
    "period_from_label",
    "price_subscription_period",
    "projected_bill",
    "subscription_period",
]


def __getattr__(name: str):
    # The projected bill is imported on first use: metering.selectors.billing imports this package's
    # periods, so importing it here at start-up would be circular.
    if name == "projected_bill":
        from metering.selectors.billing import projected_bill

        return projected_bill
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
