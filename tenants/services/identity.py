"""Tenant users: the services that keep the identity backend and the portal's TenantUser mirror in step."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from portal.kernel import ApplicationError, end_sentence
from tenants.identity import IdentityError, get_identity_backend
from tenants.identity.base import generate_temporary_password
from tenants.models import USABLE_TENANT_STATUSES, EmailKind, Tenant, TenantRole, TenantStatus, TenantUser
from tenants.services.email import email_queue

logger = logging.getLogger(__name__)


def _portal_login(username: str, email: str):
    """The auth User a tenant user signs in to the tenant area with. The local backend made it already;
    for Cognito it has no usable password (TenantUserBackend checks passwords against the pool)."""
    User = get_user_model()
    user, created = User.objects.get_or_create(username=username, defaults={"email": email})
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    return user


def tenant_user_create(
    *, tenant: Tenant, email: str, role: str = TenantRole.MEMBER, password: str | None = None
) -> tuple[TenantUser, str | None]:
    """Create the identity user and its mirror; returns (tenant user, temporary password or None).

    Without a password one is generated (an invitation) and the user must change it at first sign-in.
    If the database refuses after the identity user was made, the identity user is deleted again.
    """
    email = email.strip().lower()
    if role not in TenantRole.values:
        raise ApplicationError(f"Unknown role {role!r}.")
    if TenantUser.objects.filter(email__iexact=email).exists():
        raise ApplicationError("A user with this email already exists.")
    temporary = None
    if password is None:
        password = temporary = generate_temporary_password()
    backend = get_identity_backend()
    identity = None
    try:
        with transaction.atomic():
            identity = backend.create_user(tenant_id=tenant.slug, email=email, role=role, password=password)
            tenant_user = TenantUser.objects.create(
                tenant=tenant,
                username=identity.username,
                email=email,
                role=role,
                user=_portal_login(identity.username, email),
                password_change_required=temporary is not None,
            )
    except Exception:
        # The local store rolled back with the transaction; a remote one needs undoing by hand.
        if identity is not None and backend.name != "local":
            try:
                backend.delete_user(username=identity.username)
            except IdentityError:
                logger.error("identity user %s left behind after a failed creation", identity.username)
        raise
    return tenant_user, temporary


def _set_enabled(tenant_user: TenantUser, enabled: bool, *, with_tenant: bool = False) -> TenantUser:
    backend = get_identity_backend()
    if enabled:
        backend.enable_user(username=tenant_user.username)
    else:
        backend.disable_user(username=tenant_user.username)
    tenant_user.is_active = enabled
    tenant_user.disabled_at = None if enabled else timezone.now()
    tenant_user.disabled_with_tenant = with_tenant and not enabled
    tenant_user.save(update_fields=["is_active", "disabled_at", "disabled_with_tenant", "updated_at"])
    if tenant_user.user is not None and tenant_user.user.is_active != enabled:
        # An inactive login also ends its open sessions (Django refuses inactive users on each request).
        tenant_user.user.is_active = enabled
        tenant_user.user.save(update_fields=["is_active"])
    return tenant_user


def tenant_user_disable(*, tenant_user: TenantUser) -> TenantUser:
    return _set_enabled(tenant_user, False)


def tenant_user_enable(*, tenant_user: TenantUser) -> TenantUser:
    if tenant_user.identity_deleted_at is not None:
        raise ApplicationError(f"The user {tenant_user.email} was deleted from the identity provider.")
    if tenant_user.tenant.status not in USABLE_TENANT_STATUSES:
        raise ApplicationError(f"Tenant {tenant_user.tenant.slug} is {tenant_user.tenant.status}: reactivate it first.")
    return _set_enabled(tenant_user, True)


def tenant_user_remove(*, tenant_user: TenantUser) -> None:
    """Delete a member from the identity store and the portal (an owner is never removed this way)."""
    if tenant_user.role == TenantRole.OWNER:
        raise ApplicationError("The tenant's owner cannot be removed.")
    get_identity_backend().delete_user(username=tenant_user.username)
    with transaction.atomic():
        login = tenant_user.user
        tenant_user.delete()
        if login is not None and not login.is_staff:
            login.delete()


def tenant_user_set_password(*, tenant_user: TenantUser, password: str) -> TenantUser:
    get_identity_backend().set_password(username=tenant_user.username, password=password)
    if tenant_user.password_change_required:
        tenant_user.password_change_required = False
        tenant_user.save(update_fields=["password_change_required", "updated_at"])
    return tenant_user


def tenant_user_reset_password(*, tenant_user: TenantUser) -> TenantUser:
    """Set a temporary password and email it; the user must choose a new one at sign-in."""
    temporary = generate_temporary_password()
    get_identity_backend().set_password(username=tenant_user.username, password=temporary)
    tenant_user.password_change_required = True
    with transaction.atomic():
        tenant_user.save(update_fields=["password_change_required", "updated_at"])
        send_temporary_password(tenant_user=tenant_user, password=temporary, reason="Your password was reset.")
    return tenant_user


def send_temporary_password(*, tenant_user: TenantUser, password: str, reason: str) -> None:
    """Record the email in the caller's transaction (encrypted until sent; a newer password supersedes it)."""
    email_queue(
        kind=EmailKind.TEMPORARY_PASSWORD,
        recipient=tenant_user.email,
        subject=f"{settings.PROVIDER_NAME}: your temporary password",
        body=(
            f"{reason}\n\nSign in at {settings.PORTAL_BASE_URL.rstrip('/')}/tenant/ with {tenant_user.email} "
            "and this temporary password:\n\n"
            f"    {password}\n\nYou will be asked to choose your own password.\n"
        ),
        about=tenant_user,
        tenant=tenant_user.tenant,
    )


def tenant_user_invite(*, tenant: Tenant, email: str, invited_by: TenantUser | None = None) -> TenantUser:
    """An owner (or staff) adds a member: created with a temporary password that is emailed to them."""
    if invited_by is not None and (invited_by.tenant_id != tenant.pk or invited_by.role != TenantRole.OWNER):
        raise ApplicationError("Only the tenant's owner can invite users.")
    if tenant.status not in USABLE_TENANT_STATUSES:
        raise ApplicationError(f"Tenant {tenant.slug} is {tenant.status}.")
    with transaction.atomic():  # the user and its invitation email stand or fall together
        tenant_user, temporary = tenant_user_create(tenant=tenant, email=email, role=TenantRole.MEMBER)
        send_temporary_password(
            tenant_user=tenant_user, password=temporary, reason=end_sentence(f"You were invited to {tenant.name} on {settings.PROVIDER_NAME}")
        )
    return tenant_user


def tenant_user_add(*, tenant: Tenant, email: str, role: str = TenantRole.MEMBER) -> TenantUser:
    """Staff add a user of any role to a tenant: created with a temporary password that is emailed to them."""
    with transaction.atomic():  # the user and its email stand or fall together
        tenant_user, temporary = tenant_user_create(tenant=tenant, email=email, role=role)
        send_temporary_password(
            tenant_user=tenant_user, password=temporary,
            reason=end_sentence(f"An account was made for you at {tenant.name}"),
        )
    return tenant_user


def tenant_user_issue_token(*, tenant_user: TenantUser, password: str | None = None) -> str:
    """A fresh ID token for the API. The local backend signs one; Cognito needs the user's password,
    since the portal keeps none."""
    tenant_user.refresh_from_db()
    tenant = Tenant.objects.get(pk=tenant_user.tenant_id)
    if tenant.status not in USABLE_TENANT_STATUSES or not tenant_user.is_active:
        raise ApplicationError("This account is suspended: no token can be issued.")
    backend = get_identity_backend()
    if backend.name == "local":
        return backend.issue_id_token(username=tenant_user.username)
    if not password:
        raise ApplicationError("Enter your password to get a token.")
    return backend.authenticate(username=tenant_user.username, password=password)


def tenant_users_disable_all(*, tenant: Tenant) -> int:
    """Suspension: disable every enabled user, marking them so that reactivation enables only them."""
    count = 0
    for tenant_user in TenantUser.objects.select_related("user", "tenant").filter(tenant=tenant, is_active=True):
        _set_enabled(tenant_user, False, with_tenant=True)
        count += 1
    return count


def tenant_users_enable_all(*, tenant: Tenant) -> int:
    """Reactivation: enable the users the suspension disabled (not those an owner disabled)."""
    count = 0
    for tenant_user in TenantUser.objects.select_related("user", "tenant").filter(
        tenant=tenant, is_active=False, disabled_with_tenant=True, identity_deleted_at__isnull=True
    ):
        _set_enabled(tenant_user, True)
        count += 1
    return count


def tenant_users_purge_cancelled(*, now: datetime | None = None) -> int:
    """Delete the identity users of tenants cancelled more than IDENTITY_USER_RETENTION_DAYS ago.

    The TenantUser rows stay (disabled, identity_deleted_at set): old access-log records name users by
    cognito:username and are still attributed through them. Safe to run twice: done users are skipped.
    """
    now = now or timezone.now()
    cutoff = now - timedelta(days=settings.IDENTITY_USER_RETENTION_DAYS)
    backend = get_identity_backend()
    due = TenantUser.objects.select_related("user").filter(
        tenant__status=TenantStatus.CANCELLED, tenant__status_changed_at__lte=cutoff, identity_deleted_at__isnull=True
    )
    count = 0
    for tenant_user in due:
        backend.delete_user(username=tenant_user.username)
        login = tenant_user.user
        tenant_user.is_active = False
        tenant_user.identity_deleted_at = now
        tenant_user.disabled_at = tenant_user.disabled_at or now
        tenant_user.user = None
        tenant_user.save(update_fields=["is_active", "identity_deleted_at", "disabled_at", "user", "updated_at"])
        if login is not None and not login.is_staff:
            login.delete()
        count += 1
    return count


def tenant_users_reconcile() -> int:
    """Disable users still enabled in a suspended or cancelled tenant (a status change whose identity
    calls failed, e.g. Cognito unreachable at the time). Returns how many were fixed."""
    count = 0
    for tenant in Tenant.objects.filter(
        status__in=(TenantStatus.SUSPENDED, TenantStatus.CANCELLED), users__is_active=True
    ).distinct():
        count += tenant_users_disable_all(tenant=tenant)
    return count
