"""The order of an invoice after its lines, as billing applies it (docs/plans.md, "After the lines: discounts,
tax, credits"): which coupons discount a period, the tenant's tax rate, the plan's included credit, and the
credits an invoice draws when it is finalized. The arithmetic is metering.pricing.totals' one pure function;
this module hands it what the database knows.

- A subscription's coupon discounts the periods that end after it was applied, in the order applied: a
  one-period coupon the first such period it takes something off, an N-periods coupon N of them (counted on
  the live invoices it discounted, so a voided invoice gives its period back), a forever coupon every one.
  A fixed coupon in another currency than the invoice's takes nothing.
- The tax rate is the tenant's, else the default rate (Admin → Tax rates), else none.
- A grant pays an invoice whose period ends by the grant's expiry; a plan's included credit (one grant per
  subscription and period, expiring at the period's end) pays only the invoice of its own period. Grants are
  drawn soonest expiry first (never-expiring last), then oldest first. They are locked (in primary-key order)
  while the draw is computed and written, and the database refuses a grant's remaining below 0.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime

from django.db.models import F, Q
from django.utils import timezone

from metering.models import (
    CreditEntry,
    CreditEntryKind,
    CreditGrant,
    CreditSource,
    Invoice,
    InvoiceDiscount,
    InvoiceStatus,
)
from metering.pricing import CouponTerms, TaxTerms, draw_credits
from metering.pricing import CreditSource as CreditBalance
from tenants.bulk import insert_rows, update_rows
from tenants.models import Coupon, CouponDuration, CouponKind, Subscription, SubscriptionCoupon, TaxRate

# --- coupons ---------------------------------------------------------------------------------------


class CouponBook:
    """The coupons of some subscriptions and the periods each already discounted (live invoices), read once
    for a batch; ``note`` records a discount written meanwhile so the next period of the batch sees it."""

    def __init__(self):
        self._redemptions: dict[int, list[SubscriptionCoupon]] = {}
        self._used: dict[int, set] = defaultdict(set)
        self._coupons: dict[int, Coupon] = {}

    def load(self, subscription_ids: Iterable[int]) -> None:
        wanted = [pk for pk in subscription_ids if pk not in self._redemptions]
        if not wanted:
            return
        for pk in wanted:
            self._redemptions[pk] = []
        redemptions = list(SubscriptionCoupon.objects.filter(subscription_id__in=wanted).order_by("applied_at", "pk"))
        # The coupons once each (a batch's redemptions share a few coupons): not one row per redemption.
        missing = {redemption.coupon_id for redemption in redemptions} - self._coupons.keys()
        if missing:
            self._coupons.update((coupon.pk, coupon) for coupon in Coupon.objects.filter(pk__in=missing))
        for redemption in redemptions:
            redemption.coupon = self._coupons[redemption.coupon_id]
            self._redemptions[redemption.subscription_id].append(redemption)
        if redemptions:
            for redemption_id, period_start in (
                InvoiceDiscount.objects.filter(subscription_coupon_id__in=[redemption.pk for redemption in redemptions])
                .exclude(invoice__status=InvoiceStatus.VOID)
                .order_by()  # a set: not sorted by the model's ordering
                .values_list("subscription_coupon_id", "invoice__period_start")
            ):
                self._used[redemption_id].add(period_start)

    def terms(self, subscription: Subscription, period_start: datetime, period_end: datetime,
              currency: str) -> list[CouponTerms]:
        """The coupons that may discount this period, in the order they were applied."""
        self.load([subscription.pk])
        found = []
        for redemption in self._redemptions[subscription.pk]:
            coupon = redemption.coupon
            if redemption.applied_at >= period_end:
                continue
            if coupon.duration != CouponDuration.FOREVER:
                limit = 1 if coupon.duration == CouponDuration.ONCE else coupon.duration_periods
                if len(self._used[redemption.pk] - {period_start}) >= limit:
                    continue
            if coupon.kind == CouponKind.PERCENT:
                found.append(CouponTerms(CouponKind.PERCENT, coupon.percent_off, coupon_label(coupon), redemption))
            elif coupon.currency == currency:
                found.append(CouponTerms(CouponKind.FIXED, coupon.amount_off, coupon_label(coupon), redemption))
        return found

    def note(self, redemption: SubscriptionCoupon, period_start: datetime) -> None:
        self._used[redemption.pk].add(period_start)


def coupon_label(coupon) -> str:
    return f"{coupon.name} ({coupon.code})" if coupon.name and coupon.name != coupon.code else coupon.code


# --- tax -------------------------------------------------------------------------------------------

_NO_DEFAULT = object()


class TaxBook:
    """The default tax rate, read once (a tenant's own rate comes with the tenant: select_related)."""

    def __init__(self):
        self._default = _NO_DEFAULT

    def terms(self, tenant) -> TaxTerms | None:
        rate = tenant.tax_rate if tenant.tax_rate_id else self.default()
        if rate is None:
            return None
        return TaxTerms(rate.name, rate.percentage, rate.inclusive)

    def default(self) -> TaxRate | None:
        if self._default is _NO_DEFAULT:
            self._default = TaxRate.objects.filter(is_default=True).first()
        return self._default


# --- plan credits ----------------------------------------------------------------------------------


def plan_credit_grants(wanted: Iterable[tuple[Subscription, datetime, datetime, object]]) -> None:
    """Make the included credit of each (subscription, period start, period end, plan spec) unless it exists:
    one grant per subscription and period (a partial unique constraint), so reruns and concurrent runs add
    nothing. A period wholly inside the trial gets none."""
    now = timezone.now()
    grants = [
        (subscription.tenant_id, spec.currency, spec.included_credit, spec.included_credit, end, CreditSource.PLAN,
         subscription.pk, start, f"Included in plan {spec.code}, period starting {start:%Y-%m-%d}", now)
        for subscription, start, end, spec in wanted
        if spec.included_credit > 0 and not (subscription.trial_ends_at and subscription.trial_ends_at >= end)
    ]
    insert_rows(CreditGrant, _GRANT_COLUMNS, grants, ignore_conflicts=True)


_GRANT_COLUMNS = ("tenant_id", "currency", "amount", "remaining", "expires_at", "source", "subscription_id",
                  "period_start", "note", "created_at")


# --- drawing credits -------------------------------------------------------------------------------


def usable_grants(tenant_id: int, currency: str, period_end: datetime):
    """The grants that may pay an invoice of this tenant whose period ends at `period_end`, in drawing order."""
    return (
        CreditGrant.objects.filter(tenant_id=tenant_id, currency=currency, remaining__gt=0)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gte=period_end))
        .filter(Q(period_start__isnull=True) | Q(period_start__lt=period_end))
        .order_by(F("expires_at").asc(nulls_last=True), "created_at", "pk")
    )


def _usable(grant: CreditGrant, invoice: Invoice) -> bool:
    return (grant.currency == invoice.currency and grant.remaining > 0
            and (grant.expires_at is None or grant.expires_at >= invoice.period_end)
            and (grant.period_start is None or grant.period_start < invoice.period_end))


def _order_key(grant: CreditGrant):
    return (grant.expires_at is None, grant.expires_at or grant.created_at, grant.created_at, grant.pk)


def draw_invoice_credits(invoices: list[Invoice], *, at: datetime) -> None:
    """Draw each invoice's credits from its tenant's grants, inside the caller's transaction (which holds the
    invoices' locks): sets ``credits_applied`` on the invoices (not saved) and writes the ledger."""
    if not invoices:
        return
    tenant_ids = sorted({invoice.tenant_id for invoice in invoices})
    # Only grants that may pay one of these invoices are locked and read (a later period's included credit is not).
    first_end = min(invoice.period_end for invoice in invoices)
    last_end = max(invoice.period_end for invoice in invoices)
    grants = list(CreditGrant.objects.select_for_update(of=("self",))
                  .filter(tenant_id__in=tenant_ids, remaining__gt=0,
                          currency__in=sorted({invoice.currency for invoice in invoices}))
                  .filter(Q(expires_at__isnull=True) | Q(expires_at__gte=first_end))
                  .filter(Q(period_start__isnull=True) | Q(period_start__lt=last_end))
                  .order_by("pk"))
    if not grants:
        return
    by_tenant: dict[int, list[CreditGrant]] = defaultdict(list)
    for grant in grants:
        by_tenant[grant.tenant_id].append(grant)
    for tenant_grants in by_tenant.values():
        tenant_grants.sort(key=_order_key)
    entries, touched = [], {}
    for invoice in invoices:
        usable = [grant for grant in by_tenant.get(invoice.tenant_id, ()) if _usable(grant, invoice)]
        if not usable or invoice.total <= 0:
            continue
        draws, applied, _due = draw_credits(invoice.total, invoice.currency,
                                            [CreditBalance(grant.remaining, grant) for grant in usable])
        for draw in draws:
            grant = draw.key
            grant.remaining -= draw.amount
            touched[grant.pk] = grant
            entries.append((grant.pk, invoice.pk, CreditEntryKind.DRAW, draw.amount, grant.remaining, at))
        invoice.credits_applied = applied
    if entries:
        update_rows(CreditGrant, list(touched.values()), ["remaining"])
        insert_rows(CreditEntry, ("grant_id", "invoice_id", "kind", "amount", "remaining_after", "created_at"), entries)


def restore_invoice_credits(invoice: Invoice, *, at: datetime) -> None:
    """Give back what a voided invoice drew (a restore entry per draw; once: a unique constraint)."""
    draws = list(CreditEntry.objects.filter(invoice=invoice, kind=CreditEntryKind.DRAW).order_by("grant_id"))
    restored = set(CreditEntry.objects.filter(invoice=invoice, kind=CreditEntryKind.RESTORE)
                   .values_list("grant_id", flat=True))
    todo = [draw for draw in draws if draw.grant_id not in restored]
    if not todo:
        return
    grants = {grant.pk: grant for grant in CreditGrant.objects.select_for_update(of=("self",))
              .filter(pk__in=[draw.grant_id for draw in todo]).order_by("pk")}
    for draw in todo:
        grant = grants[draw.grant_id]
        grant.remaining += draw.amount
        grant.save(update_fields=["remaining"])
        CreditEntry.objects.create(grant=grant, invoice=invoice, kind=CreditEntryKind.RESTORE, amount=draw.amount,
                                   remaining_after=grant.remaining, created_at=at)
