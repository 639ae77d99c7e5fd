"""Tenant status changes reach the identity store: suspension disables the tenant's users, reactivation
enables them, cancellation disables them now (tenants.tasks.purge_cancelled_users deletes them later)."""

from __future__ import annotations

import logging

from django.dispatch import receiver

from tenants.models import TenantStatus
from tenants.signals import tenant_status_changed

logger = logging.getLogger(__name__)


@receiver(tenant_status_changed, dispatch_uid="tenants.identity.sync_users_with_tenant_status")
def sync_users_with_tenant_status(sender, tenant, from_status, to_status, **kwargs):
    from tenants.services import identity

    try:
        if to_status in (TenantStatus.SUSPENDED, TenantStatus.CANCELLED):
            identity.tenant_users_disable_all(tenant=tenant)
        elif to_status == TenantStatus.ACTIVE and from_status == TenantStatus.SUSPENDED:
            identity.tenant_users_enable_all(tenant=tenant)
    except Exception:
        # The status change is committed already. Token checks look at the tenant's status anyway, and
        # the periodic purge_cancelled_users task reconciles users that are still enabled.
        logger.exception("identity users of %s not updated after %s -> %s", tenant.slug, from_status, to_status)
