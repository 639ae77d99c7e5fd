"""Tenant-area sign-in: a Django authentication backend that checks a tenant user's email and password
against the identity backend (the local store, or Cognito's initiate_auth), so the portal never keeps a
Cognito user's password. Staff sign in with Django's ModelBackend as before."""

from __future__ import annotations

from django.contrib.auth import get_user_model

from tenants.identity import IdentityError, get_identity_backend


class TenantUserBackend:
    def authenticate(self, request, username=None, password=None, **kwargs):
        from tenants.models import USABLE_TENANT_STATUSES, TenantUser

        if not username or not password:
            return None
        tenant_user = (
            TenantUser.objects.select_related("tenant", "user").filter(email__iexact=username.strip()).first()
        )
        if tenant_user is None or tenant_user.user is None:
            get_user_model()().set_password(password)  # same work as a real check: no timing hint of who exists
            return None
        if not tenant_user.is_active or not tenant_user.user.is_active:
            return None
        if tenant_user.tenant.status not in USABLE_TENANT_STATUSES:
            return None
        try:
            get_identity_backend().authenticate(username=tenant_user.username, password=password)
        except IdentityError:
            return None
        return tenant_user.user

    def get_user(self, user_id):
        user = get_user_model().objects.filter(pk=user_id, is_active=True).first()
        return user
