"""Reads on prepaid credits: a tenant's balance per currency, its grants and the ledger of draw-downs."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from django.db.models import Q, QuerySet
from django.utils import timezone

from metering.models import CreditEntry, CreditGrant


@dataclass
class CreditBalance:
    currency: str
    balance: Decimal = Decimal(0)  # what unexpired grants have left
    granted: Decimal = Decimal(0)
    grants: list = field(default_factory=list)


def credit_grants(*, tenant) -> QuerySet[CreditGrant]:
    return CreditGrant.objects.filter(tenant=tenant).order_by("-created_at", "-pk")


def credit_entries(*, tenant) -> QuerySet[CreditEntry]:
    return (CreditEntry.objects.filter(grant__tenant=tenant).select_related("grant", "invoice")
            .order_by("-created_at", "-pk"))


def credit_balances(*, tenant, at: datetime | None = None) -> list[CreditBalance]:
    """Per currency: the balance of the grants not expired at `at` (now), and every grant."""
    at = at or timezone.now()
    found: dict[str, CreditBalance] = defaultdict(lambda: CreditBalance(""))
    for grant in credit_grants(tenant=tenant):
        balance = found[grant.currency]
        balance.currency = grant.currency
        balance.grants.append(grant)
        balance.granted += grant.amount
        if grant.expires_at is None or grant.expires_at > at:
            balance.balance += grant.remaining
    return sorted(found.values(), key=lambda b: b.currency)


def grant_is_live(grant: CreditGrant, at: datetime | None = None) -> bool:
    at = at or timezone.now()
    return grant.expires_at is None or grant.expires_at > at


def live_grants_filter(at: datetime) -> Q:
    return Q(expires_at__isnull=True) | Q(expires_at__gt=at)
