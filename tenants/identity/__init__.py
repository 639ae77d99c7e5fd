"""Tenant identities: one interface (base.py) with a local and a Cognito backend, chosen by IDENTITY_BACKEND."""

from __future__ import annotations

from django.conf import settings

from tenants.identity.base import IdentityBackend, IdentityError, IdentityUser, InvalidCredentials

__all__ = ["IdentityBackend", "IdentityError", "IdentityUser", "InvalidCredentials", "get_identity_backend"]


def get_identity_backend() -> IdentityBackend:
    """The configured backend (a new, cheap instance each call, so a changed setting takes effect in tests)."""
    name = settings.IDENTITY_BACKEND
    if name == "local":
        from tenants.identity.local import LocalIdentityBackend

        return LocalIdentityBackend()
    if name == "cognito":
        from tenants.identity.cognito import CognitoIdentityBackend

        return CognitoIdentityBackend()
    raise IdentityError(f"IDENTITY_BACKEND must be 'local' or 'cognito', not {name!r}.")
