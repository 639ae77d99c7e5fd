"""Prepaid credits granted by staff (admin, API): a grant of a tenant's balance in one currency, optionally
expiring (docs/plans.md, "After the lines"). What invoices draw is metering.services.billing.order's."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation

from django.utils import timezone

from metering.models import CreditGrant, CreditSource
from metering.pricing import is_known_currency, quantize_amount
from portal.kernel import ApplicationError
from tenants.models import Tenant

MAX_GRANT = Decimal(10) ** 14


def credit_grant_create(*, tenant: Tenant, amount, currency: str, expires_at: datetime | None = None, note: str = "",
                        source: str = CreditSource.STAFF, by=None) -> CreditGrant:
    """Grant a tenant prepaid credit; every mistake is an ApplicationError naming its field."""
    currency = (currency or "").strip().upper()
    if not is_known_currency(currency):
        raise ApplicationError("The currency is an ISO 4217 code such as USD.", {"field": "currency"})
    try:
        amount = Decimal(str(amount).strip())
    except (InvalidOperation, ValueError):
        raise ApplicationError(f"The amount is a decimal number, not {str(amount)[:40]!r}.", {"field": "amount"}) from None
    if not amount.is_finite() or amount <= 0 or amount >= MAX_GRANT or amount != quantize_amount(amount, currency):
        raise ApplicationError(f"The amount is above 0, in {currency}'s minor units.", {"field": "amount"})
    if expires_at is not None and expires_at <= timezone.now():
        raise ApplicationError("The expiry is in the future (or empty: never).", {"field": "expires_at"})
    if source not in (CreditSource.STAFF, CreditSource.API):
        raise ApplicationError("Staff and the API grant credits; plans grant theirs themselves.", {"field": "source"})
    return CreditGrant.objects.create(tenant=tenant, currency=currency, amount=amount, remaining=amount,
                                      expires_at=expires_at, note=(note or "").strip()[:300], source=source,
                                      created_by=by)
