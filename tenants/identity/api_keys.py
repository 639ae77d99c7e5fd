"""DRF authentication by API key (`Authorization: Bearer mk_…`) and the scope check of the views that take keys.

`ApiKeyAuthentication` looks only at bearer tokens that start with `mk_`; any other token is left to
TokenAuthentication (ID tokens). On success `request.auth` is the ApiKey (with its tenant) and
`request.user` an `ApiKeyPrincipal`: authenticated, no portal login, no staff rights. An unknown or revoked
key, or a key of a tenant that is not trialing or active, is a 401 with one message for every reason.

`HasScopes` compares a view's `required_scopes` with the key's scopes (403 when one is missing). A view that
declares no `required_scopes` is not for keys at all. ID tokens and sessions of tenant users hold every
tenant scope, and staff keep exactly what their other permissions give them: HasScopes lets them through.
"""

from __future__ import annotations

import logging

from django.contrib.auth.models import AnonymousUser
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import BasePermission

from tenants.models import ApiKey
from tenants.services.api_keys import api_key_authenticate, looks_like_api_key

logger = logging.getLogger(__name__)


class ApiKeyPrincipal(AnonymousUser):
    """The `request.user` of a request made with an API key: no login behind it, so no staff or tenant-user rights."""

    def __init__(self, api_key: ApiKey):
        self.api_key = api_key
        self.username = f"key:{api_key.prefix}"

    @property
    def is_anonymous(self):
        return False

    @property
    def is_authenticated(self):
        return True

    def __str__(self):
        return self.username


def bearer_token(header: str) -> str | None:
    parts = header.split()
    if len(parts) == 2 and parts[0].lower() == "bearer":
        return parts[1]
    return None


class ApiKeyAuthentication(BaseAuthentication):
    def authenticate(self, request):
        token = bearer_token(request.META.get("HTTP_AUTHORIZATION", ""))
        if token is None or not looks_like_api_key(token):
            return None  # not a key: another authentication class may know it
        api_key = api_key_authenticate(token)
        if api_key is None:
            logger.info("API key refused: mk_%s…", token[3:11])
            raise exceptions.AuthenticationFailed("Invalid or revoked API key.")
        return ApiKeyPrincipal(api_key), api_key

    def authenticate_header(self, request):
        return 'Bearer realm="api"'


def request_api_key(request) -> ApiKey | None:
    """The API key a request was made with, or None (ID token, session, staff)."""
    auth = getattr(request, "auth", None)
    return auth if isinstance(auth, ApiKey) else None


class HasScopes(BasePermission):
    """A key needs every scope of the view's `required_scopes`; callers without a key are not concerned."""

    message = "This API key does not have the scope this endpoint needs."

    def has_permission(self, request, view):
        api_key = request_api_key(request)
        if api_key is None:
            return True
        required = getattr(view, "required_scopes", None)
        if not required:
            self.message = "This endpoint does not take API keys."
            return False
        missing = sorted(set(required) - set(api_key.scopes))
        if missing:
            self.message = f"This API key does not have the scope this endpoint needs ({', '.join(missing)})."
            return False
        return True
