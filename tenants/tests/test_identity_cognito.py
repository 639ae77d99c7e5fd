"""The Cognito identity backend against moto: every operation, its tokens through the verifier, the services."""

import pytest
from django.contrib.auth import authenticate
from django.test import RequestFactory

from portal.kernel import ApplicationError
from tenants.identity import IdentityError, InvalidCredentials, get_identity_backend
from tenants.identity.cognito import CognitoIdentityBackend
from tenants.identity.tokens import TokenError, verify_token
from tenants.models import TenantRole, TenantUser
from tenants.services import identity as svc
from tenants.services.lifecycle import tenant_reactivate, tenant_suspend
from tenants.tests.factories import TenantFactory


def _sign_in_request():
    # What the sign-in page hands authenticate(): the lockout backend (django-axes) needs the request.
    return RequestFactory().post("/account/login/")

PASSWORD = "Corr3ct-horse"


@pytest.fixture
def backend(cognito_pool):
    backend = get_identity_backend()
    assert isinstance(backend, CognitoIdentityBackend)
    return backend


def test_create_user_with_attributes_group_and_password(backend, cognito_pool, settings):
    user = backend.create_user(tenant_id="acme", email="ann@acme.example", role="owner", password=PASSWORD)
    assert (user.tenant_id, user.role, user.email) == ("acme", "owner", "ann@acme.example")
    assert user.username == user.attributes["sub"]  # email-username pool: cognito:username is the sub
    groups = cognito_pool.admin_list_groups_for_user(UserPoolId=settings.COGNITO_USER_POOL_ID, Username=user.username)
    assert [g["GroupName"] for g in groups["Groups"]] == ["acme"]

    token = backend.authenticate(username=user.username, password=PASSWORD)
    claims = verify_token(token, backend.verifier_config())
    assert claims["custom:tenant_id"] == "acme"
    assert claims["cognito:username"] == user.username
    assert claims["custom:role"] == "owner"


def test_a_second_user_of_the_tenant_reuses_its_group(backend):
    backend.create_user(tenant_id="acme", email="ann@acme.example", role="owner", password=PASSWORD)
    backend.create_user(tenant_id="acme", email="bob@acme.example", role="member", password=PASSWORD)
    backend.create_user(tenant_id="other", email="eve@other.example", role="owner", password=PASSWORD)
    assert [u.email for u in backend.list_users(tenant_id="acme")] == ["ann@acme.example", "bob@acme.example"]
    assert backend.list_users(tenant_id="nobody") == []


def test_duplicate_email_and_weak_password_are_identity_errors(backend, cognito_pool, settings):
    backend.create_user(tenant_id="acme", email="ann@acme.example", role="owner", password=PASSWORD)
    with pytest.raises(IdentityError):
        backend.create_user(tenant_id="acme", email="ann@acme.example", role="member", password=PASSWORD)
    with pytest.raises(IdentityError, match="password"):
        backend.create_user(tenant_id="acme", email="bob@acme.example", role="member", password="short")
    # The refused user was not left half made in the pool.
    users = cognito_pool.list_users(UserPoolId=settings.COGNITO_USER_POOL_ID)["Users"]
    assert len(users) == 1


def test_set_password_disable_enable_delete(backend):
    user = backend.create_user(tenant_id="acme", email="ann@acme.example", role="owner", password=PASSWORD)
    backend.set_password(username=user.username, password="N3w-password")
    with pytest.raises(InvalidCredentials):
        backend.authenticate(username=user.username, password=PASSWORD)
    assert backend.authenticate(username=user.username, password="N3w-password")

    backend.disable_user(username=user.username)
    assert backend.get_user(username=user.username).enabled is False
    with pytest.raises(InvalidCredentials):
        backend.authenticate(username=user.username, password="N3w-password")
    backend.enable_user(username=user.username)
    assert backend.authenticate(username=user.username, password="N3w-password")

    backend.delete_user(username=user.username)
    backend.delete_user(username=user.username)  # already gone: no error
    assert backend.get_user(username=user.username) is None


def test_missing_configuration_is_a_clear_error(settings):
    settings.IDENTITY_BACKEND = "cognito"
    settings.COGNITO_USER_POOL_ID = ""
    with pytest.raises(IdentityError, match="COGNITO_USER_POOL_ID"):
        get_identity_backend()


def test_tokens_of_another_pool_are_refused(backend, cognito_pool):
    other = cognito_pool.create_user_pool(
        PoolName="other", UsernameAttributes=["email"],
        Schema=[{"Name": "tenant_id", "AttributeDataType": "String", "Mutable": True},
                {"Name": "role", "AttributeDataType": "String", "Mutable": True}],
    )["UserPool"]
    client = cognito_pool.create_user_pool_client(
        UserPoolId=other["Id"], ClientName="x", ExplicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"]
    )["UserPoolClient"]
    from tenants.identity.cognito import CognitoPool

    foreign = CognitoIdentityBackend(pool=CognitoPool(other["Id"], client["ClientId"], "us-east-1"))
    user = foreign.create_user(tenant_id="acme", email="ann@acme.example", role="owner", password=PASSWORD)
    token = foreign.authenticate(username=user.username, password=PASSWORD)
    with pytest.raises(TokenError):
        verify_token(token, backend.verifier_config())


def test_access_tokens_verify_by_client_id(backend, cognito_pool, settings):
    user = backend.create_user(tenant_id="acme", email="ann@acme.example", role="owner", password=PASSWORD)
    result = cognito_pool.initiate_auth(
        ClientId=settings.COGNITO_CLIENT_ID, AuthFlow="USER_PASSWORD_AUTH",
        AuthParameters={"USERNAME": "ann@acme.example", "PASSWORD": PASSWORD},
    )["AuthenticationResult"]
    claims = verify_token(result["AccessToken"], backend.verifier_config(), token_use="access")
    assert claims["username"] == user.username
    with pytest.raises(TokenError):
        verify_token(result["AccessToken"], backend.verifier_config(), token_use="id")


@pytest.mark.django_db(transaction=True)
def test_services_and_tenant_area_sign_in(backend, cognito_pool, settings):
    tenant = TenantFactory(slug="acme")
    owner, _ = svc.tenant_user_create(tenant=tenant, email="ann@acme.example", role=TenantRole.OWNER, password=PASSWORD)
    assert not owner.user.has_usable_password()  # the portal keeps no Cognito password
    # The tenant area checks the password against the pool.
    assert authenticate(_sign_in_request(), username="ann@acme.example", password=PASSWORD) == owner.user
    assert authenticate(_sign_in_request(), username="ann@acme.example", password="Wrong-passw0rd") is None

    with pytest.raises(ApplicationError, match="password"):
        svc.tenant_user_issue_token(tenant_user=owner)
    token = svc.tenant_user_issue_token(tenant_user=owner, password=PASSWORD)
    assert verify_token(token, backend.verifier_config())["cognito:username"] == owner.username

    tenant_suspend(tenant=tenant)
    assert backend.get_user(username=owner.username).enabled is False
    assert authenticate(_sign_in_request(), username="ann@acme.example", password=PASSWORD) is None
    with pytest.raises(ApplicationError, match="suspended"):
        svc.tenant_user_issue_token(tenant_user=owner, password=PASSWORD)
    tenant_reactivate(tenant=tenant)
    assert backend.get_user(username=owner.username).enabled is True
    assert svc.tenant_user_issue_token(tenant_user=owner, password=PASSWORD)


@pytest.mark.django_db
def test_database_failure_after_cognito_user_deletes_it(backend, cognito_pool, settings, monkeypatch):
    tenant = TenantFactory(slug="acme")

    def broken_create(**kwargs):
        raise RuntimeError("database refused")

    monkeypatch.setattr(TenantUser.objects, "create", broken_create)
    with pytest.raises(RuntimeError):
        svc.tenant_user_create(tenant=tenant, email="ann@acme.example", role=TenantRole.OWNER, password=PASSWORD)
    assert cognito_pool.list_users(UserPoolId=settings.COGNITO_USER_POOL_ID)["Users"] == []
