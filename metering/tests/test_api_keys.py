"""API keys on /api/v1/: a key made in the tenant area, the admin or the command reads its tenant's usage (200);
a revoked key, a key of a suspended or cancelled tenant (401) or a key without the scope (403) gets no data;
a key never reaches another tenant's data; its use is recorded; it is throttled per key."""

import re
from io import StringIO

import pytest
from django.core.cache import cache
from django.core.management import call_command
from django.urls import reverse
from rest_framework.test import APIClient

from metering.tests.api_fixtures import *  # noqa: F403
from metering.tests.test_api_security import api_routes, fill, other_tenants_values, secrets_of
from tenants.models import ApiKey
from tenants.services.api_keys import api_key_create, api_key_revoke
from tenants.services.lifecycle import tenant_cancel, tenant_suspend

pytestmark = pytest.mark.django_db
KEY_RE = re.compile(r"mk_[a-z0-9]{8}_[A-Za-z0-9_-]{40,}")
OCTOBER = {"start": "2026-10-01", "end": "2026-11-01", "metric": "api_calls"}


def key_client(raw_key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    return client


def acme_usage(raw_key: str):
    return key_client(raw_key).get("/api/v1/usage/", {**OCTOBER, "granularity": "month"})


def assert_reads_acme(raw_key: str):
    response = acme_usage(raw_key)
    assert response.status_code == 200, response.content
    assert response.json()["results"] == [
        {"metric": "api_calls", "unit": "", "start": "2026-10-01T00:00:00Z", "value": str(10 * 31 * 24)}]


def test_a_key_made_in_the_tenant_area_reads_usage(world):
    browser = APIClient()
    browser.force_login(world.users["acme"].user)
    page = browser.post("/tenant/api-keys/", {"name": "export", "scopes": ["usage:read"], "once": "form-1"}).content.decode()
    assert_reads_acme(KEY_RE.search(page).group(0))


def test_a_key_made_in_the_admin_reads_usage(world, django_user_model):
    browser = APIClient()
    browser.force_login(django_user_model.objects.create_superuser("root", "root@provider.example", "pw-1-for-tests"))
    page = browser.post(reverse("admin:tenants_apikey_add"),
                        {"tenant": world.tenants["acme"].pk, "name": "ops", "scopes": ["usage:read"]}).content.decode()
    assert_reads_acme(KEY_RE.search(page).group(0))


def test_a_key_made_by_the_command_reads_usage_and_its_use_is_recorded(world):
    out = StringIO()
    call_command("api_key_create", "--tenant", "acme", "--name", "cron", stdout=out)
    raw_key = out.getvalue().splitlines()[-1]
    assert ApiKey.objects.get().last_used_at is None
    assert_reads_acme(raw_key)
    assert ApiKey.objects.get().last_used_at is not None
    for path in ("/api/v1/usage/current/", "/api/v1/projected-bill/", "/api/v1/invoices/", "/api/v1/plan/",
                 "/api/v1/metrics/", f"/api/v1/invoices/{world.invoices['acme'].public_id}/lines/"):
        assert key_client(raw_key).get(path).status_code == 200, path


def test_a_revoked_key_gets_401(world):
    api_key, raw_key = api_key_create(tenant=world.tenants["acme"], name="k")
    assert acme_usage(raw_key).status_code == 200
    api_key_revoke(api_key=api_key)
    response = acme_usage(raw_key)
    assert response.status_code == 401 and "results" not in response.json()
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("end", [tenant_suspend, tenant_cancel])
def test_a_key_of_a_suspended_or_cancelled_tenant_gets_401(world, end):
    _, raw_key = api_key_create(tenant=world.tenants["acme"], name="k")
    end(tenant=world.tenants["acme"])
    assert acme_usage(raw_key).status_code == 401


def test_unknown_and_malformed_keys_get_401(world):
    _, raw_key = api_key_create(tenant=world.tenants["acme"], name="k")
    for bad in (raw_key[:-2], "mk_", "mk_abcdefgh_" + "x" * 43, raw_key.replace("mk_", "mk_0", 1)):
        assert acme_usage(bad).status_code == 401, bad


def test_a_key_without_the_scope_gets_403(world):
    _, raw_key = api_key_create(tenant=world.tenants["acme"], name="sender", scopes=["events:write"])
    response = acme_usage(raw_key)
    assert response.status_code == 403 and "usage:read" in response.json()["detail"]
    assert "results" not in response.json()
    for path in ("/api/v1/invoices/", "/api/v1/projected-bill/", "/api/v1/usage/current/"):
        assert key_client(raw_key).get(path).status_code == 403, path


def test_the_tenants_users_and_the_staff_endpoints_are_not_for_keys(world):
    _, raw_key = api_key_create(tenant=world.tenants["acme"], name="k")
    client = key_client(raw_key)
    for path in ("/api/v1/users/", f"/api/v1/users/{world.users['acme'].pk}/", "/api/v1/admin/tenants/",
                 "/api/v1/admin/tenants/acme/usage/", "/api/v1/admin/usage/top/"):
        response = client.get(path)
        assert response.status_code == 403, path
        assert "ann@acme.example" not in response.content.decode()


def test_a_key_never_gets_another_tenants_data(world):
    """test_api_security's walk over every endpoint, with a key of acme instead of an ID token."""
    _, raw_key = api_key_create(tenant=world.tenants["acme"], name="k")
    client = key_client(raw_key)
    values, secrets = other_tenants_values(world), secrets_of(world)
    tried = 0
    for route, view in api_routes():
        path = fill(route, values)
        for method in [m for m in ("get", "post") if hasattr(view, m)] or ["get"]:
            if route.startswith("api/v1/admin/") or route.startswith("api/v1/users/"):
                expected, response = {403}, getattr(client, method)(path, format="json")
            elif "<" in route:
                expected, response = {403, 404}, getattr(client, method)(path, format="json")
            else:
                expected = {403, 404}
                response = getattr(client, method)(f"{path}?tenant={values['tenant']}", format="json")
            assert response.status_code in expected, f"{method.upper()} {path}: {response.status_code}"
            body = response.content.decode()
            assert not [s for s in secrets if s in body], f"{method.upper()} {path} shows another tenant's data"
            tried += 1
    assert tried >= 30
    # The control: the same reads without the other tenant answer the key's own data.
    assert client.get("/api/v1/invoices/").json()["results"][0]["id"] == str(world.invoices["acme"].public_id)
    assert client.get("/api/v1/invoices/", {"tenant": "acme"}).status_code == 200


def test_a_key_of_another_tenant_reads_that_tenant_only(world):
    _, raw_key = api_key_create(tenant=world.tenants["globex"], name="k")
    body = key_client(raw_key).get("/api/v1/usage/", {**OCTOBER, "granularity": "month"}).json()
    assert body["results"][0]["value"] == str(7 * 31 * 24)
    assert key_client(raw_key).get("/api/v1/usage/", {**OCTOBER, "tenant": "acme"}).status_code == 404


def test_id_tokens_keep_working_beside_keys(world):
    api_key_create(tenant=world.tenants["acme"], name="k")
    assert world.client("acme").get("/api/v1/users/").status_code == 200
    assert world.client("acme").get("/api/v1/usage/", OCTOBER).status_code == 200


@pytest.fixture
def low_rate(settings):
    settings.API_THROTTLE_RATE = "3/minute"
    cache.clear()
    yield
    cache.clear()


def test_keys_are_throttled_per_key(world, low_rate):
    _, first = api_key_create(tenant=world.tenants["acme"], name="a")
    _, second = api_key_create(tenant=world.tenants["acme"], name="b")
    assert [key_client(first).get("/api/v1/metrics/").status_code for _ in range(4)] == [200, 200, 200, 429]
    assert key_client(second).get("/api/v1/metrics/").status_code == 200


def test_the_schema_documents_the_key(db):
    schema = APIClient().get("/api/schema/", {"format": "json"}).json()
    scheme = schema["components"]["securitySchemes"]["apiKey"]
    assert scheme["scheme"] == "bearer" and "mk_" in scheme["description"]
    assert {"apiKey": []} in schema["paths"]["/api/v1/usage/"]["get"]["security"]
