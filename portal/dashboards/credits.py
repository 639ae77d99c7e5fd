"""The tenant area's Credits page (/tenant/credits/): the prepaid balance per currency, every grant (with what
is left and when it expires) and the ledger of what invoices drew, for the signed-in tenant only. The provider
sees every tenant's in the admin (Credit grants, Credit entries) and through the API."""

from __future__ import annotations

from django.shortcuts import render
from django.utils import timezone

from metering.selectors.credits import credit_balances, credit_entries, grant_is_live
from tenants.views_tenant import tenant_view

SHOWN = 100


@tenant_view
def tenant_credits(request):
    tenant = request.tenant_user.tenant
    now = timezone.now()
    balances = credit_balances(tenant=tenant, at=now)
    grants = [(grant, grant_is_live(grant, now)) for balance in balances for grant in balance.grants]
    return render(request, "portal/dashboards/credits.html", {
        "tenant": tenant, "balances": balances, "grants": grants,
        "entries": list(credit_entries(tenant=tenant)[:SHOWN]), "shown": SHOWN,
    })
