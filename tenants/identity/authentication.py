"""DRF authentication by identity token: `Authorization: <token>` (as the AWS sample sends it) or `Bearer <token>`.

Both backends' tokens go through tenants.identity.tokens. Beyond the token itself, the tenant user it
names must exist, be enabled and belong to the tenant the token claims, and that tenant must be trialing
or active: a suspended tenant's still-unexpired tokens stop working at once.
"""

from __future__ import annotations

import logging

from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication

from tenants.identity import get_identity_backend
from tenants.identity.tokens import TokenError, verify_token

logger = logging.getLogger(__name__)


def _refuse(reason: str):
    logger.info("token refused: %s", reason)
    # One message for every reason: nothing tells a caller which check failed.
    return exceptions.AuthenticationFailed("Invalid or expired token.")


def token_from_header(header: str) -> str | None:
    """The token of an Authorization header value, raw or after `Bearer`; None when it is another scheme."""
    parts = header.split()
    if len(parts) == 1 and parts[0].count(".") == 2:
        return parts[0]
    if len(parts) == 2 and parts[0].lower() == "bearer":
        return parts[1]
    return None


class TokenAuthentication(BaseAuthentication):
    """On success `request.user` is the tenant user's portal login and `request.auth` the verified claims."""

    token_use = "id"

    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        token = token_from_header(header)
        if token is None:
            if header.split()[0].lower() in ("basic", "token", "digest"):
                return None  # another scheme: leave it to another authentication class
            raise _refuse("malformed Authorization header")
        return self.authenticate_token(token)

    def authenticate_token(self, token: str):
        from tenants.models import USABLE_TENANT_STATUSES
        from tenants.selectors import tenant_user_with_login

        try:
            config = get_identity_backend().verifier_config()
            claims = verify_token(token, config, token_use=self.token_use)
        except TokenError as exc:
            raise _refuse(str(exc)) from None
        username = claims.get("cognito:username") or claims.get("username")
        tenant_user = tenant_user_with_login(username=username) if username else None
        if tenant_user is None:
            raise _refuse(f"no tenant user {username!r}")
        if not tenant_user.is_active or tenant_user.user is None or not tenant_user.user.is_active:
            raise _refuse(f"tenant user {username} is disabled")
        if tenant_user.tenant.status not in USABLE_TENANT_STATUSES:
            raise _refuse(f"tenant {tenant_user.tenant.slug} is {tenant_user.tenant.status}")
        if self.token_use == "id" and claims.get("custom:tenant_id") != tenant_user.tenant.slug:
            raise _refuse(f"token tenant {claims.get('custom:tenant_id')!r} is not {tenant_user.tenant.slug!r}")
        claims.setdefault("custom:tenant_id", tenant_user.tenant.slug)
        return tenant_user.user, claims

    def authenticate_header(self, request):
        # A WWW-Authenticate value makes DRF answer 401 rather than 403.
        return 'Bearer realm="api"'
