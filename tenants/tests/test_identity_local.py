"""The local identity backend: every operation, its signing key, and the services over it."""

import os
import stat

import jwt
import pytest

from portal.kernel import ApplicationError
from tenants.identity import IdentityError, InvalidCredentials, get_identity_backend
from tenants.identity.local import LocalIdentityBackend, local_jwks, signing_key_path
from tenants.models import LocalIdentity, TenantRole, TenantStatus, TenantUser
from tenants.services import identity as svc
from tenants.services.lifecycle import tenant_cancel, tenant_reactivate, tenant_suspend
from tenants.tests.factories import TenantFactory

PASSWORD = "Corr3ct-horse"


@pytest.fixture
def backend(local_identity):
    backend = get_identity_backend()
    assert isinstance(backend, LocalIdentityBackend)
    return backend


@pytest.mark.django_db
def test_create_user_carries_tenant_role_and_password(backend):
    user = backend.create_user(tenant_id="acme", email="ann@acme.example", role="owner", password=PASSWORD)
    assert (user.tenant_id, user.role, user.email, user.enabled) == ("acme", "owner", "ann@acme.example", True)
    assert backend.get_user(username=user.username) == user
    assert LocalIdentity.objects.get(username=user.username).user.check_password(PASSWORD)
    token = backend.authenticate(username=user.username, password=PASSWORD)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["custom:tenant_id"] == "acme"
    assert claims["cognito:username"] == claims["sub"] == user.username
    assert claims["token_use"] == "id"
    assert claims["cognito:groups"] == ["acme"]


@pytest.mark.django_db
def test_weak_password_is_refused_as_the_pool_would(backend):
    with pytest.raises(IdentityError, match="uppercase"):
        backend.create_user(tenant_id="acme", email="ann@acme.example", role="owner", password="weakpass1!")
    assert not LocalIdentity.objects.exists()


@pytest.mark.django_db
def test_set_password_disable_enable_delete_list(backend):
    ann = backend.create_user(tenant_id="acme", email="ann@acme.example", role="owner", password=PASSWORD)
    bob = backend.create_user(tenant_id="acme", email="bob@acme.example", role="member", password=PASSWORD)
    backend.create_user(tenant_id="other", email="eve@other.example", role="owner", password=PASSWORD)
    assert [u.email for u in backend.list_users(tenant_id="acme")] == ["ann@acme.example", "bob@acme.example"]

    backend.set_password(username=bob.username, password="N3w-password")
    with pytest.raises(InvalidCredentials):
        backend.authenticate(username=bob.username, password=PASSWORD)
    assert backend.authenticate(username=bob.username, password="N3w-password")

    backend.disable_user(username=bob.username)
    backend.disable_user(username=bob.username)  # idempotent
    assert backend.get_user(username=bob.username).enabled is False
    with pytest.raises(InvalidCredentials):
        backend.authenticate(username=bob.username, password="N3w-password")
    backend.enable_user(username=bob.username)
    assert backend.authenticate(username=bob.username, password="N3w-password")

    backend.delete_user(username=bob.username)
    backend.delete_user(username=bob.username)  # already gone: no error
    assert backend.get_user(username=bob.username) is None
    assert [u.username for u in backend.list_users(tenant_id="acme")] == [ann.username]


@pytest.mark.django_db
def test_signing_key_is_made_once_and_private(backend):
    first = local_jwks()
    path = signing_key_path()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert local_jwks() == first
    assert set(first["keys"][0]) >= {"kid", "kty", "n", "e", "alg", "use"}
    assert "d" not in first["keys"][0]  # never the private half


@pytest.mark.django_db
def test_jwks_endpoint_publishes_the_public_key(client, local_identity):
    response = client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    assert response.json() == local_jwks()


@pytest.mark.django_db
def test_services_create_invite_and_remove(local_identity, mailoutbox, django_capture_on_commit_callbacks):
    tenant = TenantFactory(slug="acme")
    owner, temporary = svc.tenant_user_create(tenant=tenant, email="Ann@Acme.example", role=TenantRole.OWNER, password=PASSWORD)
    assert temporary is None and owner.email == "ann@acme.example" and owner.user.username == owner.username
    with pytest.raises(ApplicationError, match="already exists"):
        svc.tenant_user_create(tenant=tenant, email="ann@acme.example", password=PASSWORD)

    with django_capture_on_commit_callbacks(execute=True):
        member = svc.tenant_user_invite(tenant=tenant, email="bob@acme.example", invited_by=owner)
    assert member.password_change_required
    assert len(mailoutbox) == 1 and "temporary password" in mailoutbox[0].body
    with pytest.raises(ApplicationError, match="owner"):
        svc.tenant_user_invite(tenant=tenant, email="carl@acme.example", invited_by=member)

    with pytest.raises(ApplicationError, match="owner"):
        svc.tenant_user_remove(tenant_user=owner)
    svc.tenant_user_remove(tenant_user=member)
    assert not TenantUser.objects.filter(email="bob@acme.example").exists()
    assert get_identity_backend().get_user(username=member.username) is None


@pytest.mark.django_db(transaction=True)
def test_suspension_disables_and_reactivation_enables_only_those(local_identity):
    tenant = TenantFactory(slug="acme")
    owner, _ = svc.tenant_user_create(tenant=tenant, email="ann@acme.example", role=TenantRole.OWNER, password=PASSWORD)
    member, _ = svc.tenant_user_create(tenant=tenant, email="bob@acme.example", password=PASSWORD)
    svc.tenant_user_disable(tenant_user=member)  # the owner disabled bob before the suspension

    tenant_suspend(tenant=tenant)
    owner.refresh_from_db()
    assert not owner.is_active and owner.disabled_with_tenant and not owner.user.is_active
    with pytest.raises(ApplicationError, match="suspended"):
        svc.tenant_user_issue_token(tenant_user=owner)

    tenant_reactivate(tenant=tenant)
    owner.refresh_from_db()
    member.refresh_from_db()
    assert owner.is_active and owner.user.is_active
    assert not member.is_active  # still disabled: the owner's decision stands
    assert svc.tenant_user_issue_token(tenant_user=owner)


@pytest.mark.django_db(transaction=True)
def test_cancellation_disables_then_purge_deletes_after_retention(local_identity):
    from datetime import timedelta

    from django.utils import timezone

    from tenants.tasks import purge_cancelled_users

    tenant = TenantFactory(slug="acme")
    owner, _ = svc.tenant_user_create(tenant=tenant, email="ann@acme.example", role=TenantRole.OWNER, password=PASSWORD)
    tenant_cancel(tenant=tenant)
    owner.refresh_from_db()
    assert not owner.is_active
    assert purge_cancelled_users() == {"disabled": 0, "deleted": 0}  # within the retention

    later = timezone.now() + timedelta(days=local_identity.IDENTITY_USER_RETENTION_DAYS + 1)
    assert svc.tenant_users_purge_cancelled(now=later) == 1
    assert svc.tenant_users_purge_cancelled(now=later) == 0  # safe to run twice
    owner.refresh_from_db()
    assert owner.identity_deleted_at is not None and owner.user is None
    assert get_identity_backend().get_user(username=owner.username) is None
    assert TenantStatus.CANCELLED == tenant.status
