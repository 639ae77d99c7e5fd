"""Token verification and the DRF authentication class: what is accepted, and every refusal."""

import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from django.urls import path
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.test import APIClient
from rest_framework.views import APIView

from tenants.identity import get_identity_backend, tokens
from tenants.identity.authentication import TokenAuthentication
from tenants.identity.base import VerifierConfig
from tenants.identity.local import local_jwks, signing_key
from tenants.models import TenantRole
from tenants.services import identity as svc
from tenants.services.lifecycle import tenant_suspend
from tenants.tests.factories import TenantFactory

PASSWORD = "Corr3ct-horse"


class WhoAmI(APIView):
    authentication_classes = [TokenAuthentication]
    permission_classes = [IsAuthenticated]

    def get(self, request):
        return Response({"user": request.user.username, "tenant": request.auth["custom:tenant_id"]})


urlpatterns = [path("whoami", WhoAmI.as_view())]


@pytest.fixture
def owner(local_identity, db):
    tenant = TenantFactory(slug="acme")
    tenant_user, _ = svc.tenant_user_create(tenant=tenant, email="ann@acme.example", role=TenantRole.OWNER, password=PASSWORD)
    return tenant_user


@pytest.fixture
def api(settings):
    settings.ROOT_URLCONF = __name__
    return APIClient()


def _claims(owner, **overrides):
    now = int(time.time())
    claims = {
        "sub": owner.username, "cognito:username": owner.username, "email": owner.email,
        "custom:tenant_id": owner.tenant.slug, "token_use": "id", "aud": "portal-local",
        "iss": "http://127.0.0.1:8000/local-identity", "iat": now, "exp": now + 600,
    }
    claims.update(overrides)
    return claims


def _sign(claims, key=None, kid=None):
    kid = kid or local_jwks()["keys"][0]["kid"]
    return jwt.encode(claims, key or signing_key(), algorithm="RS256", headers={"kid": kid})


def test_raw_and_bearer_headers_are_accepted(owner, api):
    token = svc.tenant_user_issue_token(tenant_user=owner)
    for header in (token, f"Bearer {token}"):
        response = api.get("/whoami", HTTP_AUTHORIZATION=header)
        assert response.status_code == 200, response.content
        assert response.json() == {"user": owner.username, "tenant": "acme"}


@pytest.mark.parametrize(
    "case",
    ["expired", "other_issuer", "access_token", "wrong_audience", "tampered", "foreign_key", "alg_none", "hs256",
     "garbage", "other_tenant_claim"],
)
def test_refusals_are_401_without_detail(owner, api, case):
    good = _sign(_claims(owner))
    token = {
        "expired": lambda: _sign(_claims(owner, exp=int(time.time()) - 3600)),
        "other_issuer": lambda: _sign(_claims(owner, iss="https://cognito-idp.us-east-1.amazonaws.com/us-east-1_other")),
        "access_token": lambda: _sign(_claims(owner, token_use="access", client_id="portal-local")),
        "wrong_audience": lambda: _sign(_claims(owner, aud="another-client")),
        "tampered": lambda: good.rsplit(".", 2)[0] + "." + jwt.utils.base64url_encode(
            jwt.utils.base64url_decode(good.split(".")[1]).replace(b'"acme"', b'"evil"')).decode() + "." + good.split(".")[2],
        "foreign_key": lambda: _sign(_claims(owner), key=rsa.generate_private_key(public_exponent=65537, key_size=2048)),
        "alg_none": lambda: jwt.encode(_claims(owner), None, algorithm="none"),
        "hs256": lambda: jwt.encode(_claims(owner), "secret-that-is-long-enough-for-hmac-256!", algorithm="HS256",
                                    headers={"kid": local_jwks()["keys"][0]["kid"]}),
        "garbage": lambda: "not.a.token",
        "other_tenant_claim": lambda: _sign(_claims(owner, **{"custom:tenant_id": "other"})),
    }[case]()
    response = api.get("/whoami", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 401
    assert response.json() == {"detail": "Invalid or expired token."}


def test_no_header_is_not_authenticated(owner, api):
    assert api.get("/whoami").status_code == 401


def test_disabled_user_and_suspended_tenant_are_refused(owner, api, django_capture_on_commit_callbacks):
    token = svc.tenant_user_issue_token(tenant_user=owner)
    svc.tenant_user_disable(tenant_user=owner)
    assert api.get("/whoami", HTTP_AUTHORIZATION=token).status_code == 401
    svc.tenant_user_enable(tenant_user=owner)
    assert api.get("/whoami", HTTP_AUTHORIZATION=token).status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        tenant_suspend(tenant=owner.tenant)
    # The token was issued before the suspension and has not expired: refused all the same.
    assert api.get("/whoami", HTTP_AUTHORIZATION=token).status_code == 401


def test_jwks_is_cached_and_refreshed_on_unknown_kid(monkeypatch):
    keys = [rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(2)]
    published = {"keys": [dict(jwt.algorithms.RSAAlgorithm.to_jwk(keys[0].public_key(), as_dict=True), kid="k0")]}
    fetches = []

    def fetch():
        fetches.append(1)
        return published

    config = VerifierConfig(issuer="https://issuer.example/test-cache", client_id="c", fetch_jwks=fetch)
    tokens.clear_jwks_cache()
    claims = {"sub": "u", "iss": config.issuer, "aud": "c", "token_use": "id", "exp": int(time.time()) + 60}
    t0 = jwt.encode(claims, keys[0], algorithm="RS256", headers={"kid": "k0"})
    assert tokens.verify_token(t0, config)["sub"] == "u"
    assert tokens.verify_token(t0, config)["sub"] == "u"
    assert len(fetches) == 1  # fetched once, then cached

    # The issuer rotates: a token with a new kid makes the verifier fetch again (once the refresh
    # interval allows), and finds the key.
    published = {"keys": published["keys"] + [dict(jwt.algorithms.RSAAlgorithm.to_jwk(keys[1].public_key(), as_dict=True), kid="k1")]}
    t1 = jwt.encode(claims, keys[1], algorithm="RS256", headers={"kid": "k1"})
    with pytest.raises(tokens.TokenError):
        tokens.verify_token(t1, config)  # refreshed too recently: refused without a fetch
    assert len(fetches) == 1
    monkeypatch.setattr(tokens, "JWKS_MIN_REFRESH_SECONDS", 0)
    assert tokens.verify_token(t1, config)["sub"] == "u"
    assert len(fetches) == 2
    tokens.clear_jwks_cache()


def test_local_tokens_go_through_the_verifier(owner):
    token = svc.tenant_user_issue_token(tenant_user=owner)
    claims = tokens.verify_token(token, get_identity_backend().verifier_config())
    assert claims["custom:tenant_id"] == "acme" and claims["aud"] == "portal-local"
    with pytest.raises(tokens.TokenError):
        tokens.verify_token(token, get_identity_backend().verifier_config(), token_use="access")
