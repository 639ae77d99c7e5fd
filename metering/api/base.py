"""The one base class of every tenant-facing API view: it resolves the caller's tenant and scopes querysets to it.

Two ways in, one class:
- /api/v1/<...>: a tenant user (ID token, or the tenant area's session), or a tenant's API key
  (`Bearer mk_…`, tenants.identity.api_keys) holding the view's `required_scopes`. The tenant is the caller's own (a key's: the key's tenant);
  a `tenant` query parameter naming any other tenant is answered 404, as is any object of another tenant
  (querysets are filtered by ``scope_queryset`` before a lookup, so an id of another tenant is "not found").
- /api/v1/admin/tenants/<tenant>/<...>: staff only (tenant tokens get 403); the tenant is the one named.

A view never filters by tenant itself: it calls ``self.tenant`` or ``self.scope_queryset(qs)``.
"""

from __future__ import annotations

from django.conf import settings
from django.shortcuts import get_object_or_404
from rest_framework import exceptions, permissions
from rest_framework.authentication import BasicAuthentication, SessionAuthentication
from rest_framework.generics import GenericAPIView
from rest_framework.pagination import PageNumberPagination
from rest_framework.throttling import SimpleRateThrottle

from tenants.identity.api_keys import ApiKeyAuthentication, HasScopes, request_api_key
from tenants.identity.authentication import TokenAuthentication
from tenants.models import USABLE_TENANT_STATUSES, Tenant

TENANT_URL_KWARG = "tenant"


class Pagination(PageNumberPagination):
    """PAGE_SIZE per page (`page_size` up to 1000); the next and previous pages also in a Link header (for CSV)."""

    page_size_query_param = "page_size"
    max_page_size = 1000

    def get_paginated_response(self, data):
        response = super().get_paginated_response(data)
        links = [f'<{url}>; rel="{rel}"' for rel, url in (("next", self.get_next_link()), ("prev", self.get_previous_link())) if url]
        if links:
            response["Link"] = ", ".join(links)
        return response


class TokenThrottle(SimpleRateThrottle):
    """API_THROTTLE_RATE per caller: the key's prefix for API keys, the token's `sub` for tenant tokens, the user
    for staff, the IP otherwise."""

    scope = "api"

    def get_rate(self):
        return settings.API_THROTTLE_RATE

    def get_cache_key(self, request, view):
        claims = request.auth if isinstance(request.auth, dict) else None
        api_key = request_api_key(request)
        if api_key is not None:
            ident = f"key:{api_key.prefix}"
        elif claims and claims.get("sub"):
            ident = f"sub:{claims['sub']}"
        elif request.user and request.user.is_authenticated:
            ident = f"user:{request.user.pk}"
        else:
            ident = f"ip:{self.get_ident(request)}"
        return self.cache_format % {"scope": self.scope, "ident": ident}


class IsTenantUser(permissions.BasePermission):
    message = ("This endpoint is for tenant users (an ID token) and tenant API keys; "
               "staff use /api/v1/admin/tenants/<tenant>/...")

    def has_permission(self, request, view):
        if request_api_key(request) is not None:
            return True  # the key's tenant is usable: ApiKeyAuthentication refuses the others
        tenant_user = caller_tenant_user(request)
        if tenant_user is None:
            return False
        if not tenant_user.is_active or tenant_user.tenant.status not in USABLE_TENANT_STATUSES:
            # A session of a suspended tenant's user (tokens are refused at authentication already).
            self.message = "This tenant's access is suspended."
            return False
        return True


class IsStaff(permissions.BasePermission):
    message = "This endpoint is for the provider's staff."

    def has_permission(self, request, view):
        return bool(request.user and request.user.is_authenticated and request.user.is_staff)


def caller_tenant_user(request):
    """The TenantUser behind the request's user, or None (anonymous, staff, other logins)."""
    user = request.user
    if not user or not user.is_authenticated:
        return None
    return getattr(user, "tenant_user", None)


def caller_tenant(request) -> Tenant | None:
    """The tenant a tenant-scope request acts for: its API key's, or its tenant user's; None otherwise."""
    api_key = request_api_key(request)
    if api_key is not None:
        return api_key.tenant
    tenant_user = caller_tenant_user(request)
    return tenant_user.tenant if tenant_user is not None else None


class APIBase(GenericAPIView):
    """Authentication, throttling and pagination shared by the tenant and the admin scope."""

    # ApiKeyAuthentication first: it takes only `Bearer mk_…` and leaves every other token to TokenAuthentication.
    authentication_classes = [ApiKeyAuthentication, TokenAuthentication, SessionAuthentication, BasicAuthentication]
    throttle_classes = [TokenThrottle]
    pagination_class = Pagination
    permission_classes = [IsStaff]


class TenantScopedView(APIBase):
    """Base of every view that shows one tenant's data (see the module docstring).

    `required_scopes`: what an API key must hold to call the view; None (the default) refuses keys.
    """

    required_scopes: tuple[str, ...] | None = None

    def is_admin_scope(self) -> bool:
        return TENANT_URL_KWARG in self.kwargs

    def get_permissions(self):
        return [IsStaff()] if self.is_admin_scope() else [IsTenantUser(), HasScopes()]

    def check_permissions(self, request):
        super().check_permissions(request)
        # A key's scopes are checked whatever permissions a subclass declares (a view that overrides
        # get_permissions cannot let a key past its scopes by forgetting HasScopes).
        if not self.is_admin_scope():
            scopes = HasScopes()
            if not scopes.has_permission(request, self):
                self.permission_denied(request, message=scopes.message, code=getattr(scopes, "code", None))

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)  # authentication, permissions, throttling
        self.tenant = self._resolve_tenant(request)

    def _resolve_tenant(self, request) -> Tenant:
        if self.is_admin_scope():
            return get_object_or_404(Tenant, slug=self.kwargs[TENANT_URL_KWARG])
        tenant = caller_tenant(request)
        asked = request.query_params.get(TENANT_URL_KWARG)
        if asked is not None and asked != tenant.slug:
            # Never confirm that another tenant exists: the same answer as for an unknown one.
            raise exceptions.NotFound("No such tenant.")
        return tenant

    def scope_queryset(self, queryset):
        """`queryset` limited to the caller's tenant (models with a `tenant` foreign key)."""
        return queryset.filter(tenant=self.tenant)

    def get_queryset(self):
        queryset = super().get_queryset()
        if getattr(self, "swagger_fake_view", False):  # the schema generator has no caller
            return queryset.none()
        return self.scope_queryset(queryset)
