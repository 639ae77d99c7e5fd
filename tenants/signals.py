"""Signals other parts of the portal listen to (the identity backend disables a suspended tenant's users)."""

from django.dispatch import Signal

# Sent after a tenant's status changed and the change committed; kwargs: tenant, from_status, to_status.
tenant_status_changed = Signal()
