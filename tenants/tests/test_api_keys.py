"""API keys: made, listed and revoked by the tenant's owner (tenant area), by staff (admin) and by the command;
stored hashed; the database keeps the invariants; a key is recognised, recorded, and refused once revoked.

Using a key on /api/v1/ is tested in metering/tests/test_api_keys.py (the API is metering's).
"""

import hashlib
import re
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import IntegrityError, transaction
from django.urls import reverse

from portal.kernel import ApplicationError
from tenants.models import ApiKey, TenantRole
from tenants.services import identity as identity_services
from tenants.services.api_keys import api_key_authenticate, api_key_create, api_key_revoke
from tenants.services.lifecycle import tenant_cancel, tenant_suspend
from tenants.tests.factories import TenantFactory

pytestmark = pytest.mark.django_db
KEY_RE = re.compile(r"mk_[a-z0-9]{8}_[A-Za-z0-9_-]{40,}")
ONCE_RE = re.compile(r'name="once" value="([^"]+)"')
PASSWORD = "Corr3ct-horse"


@pytest.fixture
def acme(local_identity):
    tenant = TenantFactory(slug="acme", name="Acme Corp")
    owner, _ = identity_services.tenant_user_create(tenant=tenant, email="ann@acme.example", role=TenantRole.OWNER,
                                                    password=PASSWORD)
    member, _ = identity_services.tenant_user_create(tenant=tenant, email="bob@acme.example", password=PASSWORD)
    return tenant, owner, member


def test_a_key_is_stored_hashed_with_default_scopes_and_recognised():
    tenant = TenantFactory()
    api_key, raw_key = api_key_create(tenant=tenant, name="  export  ")
    assert KEY_RE.fullmatch(raw_key) and raw_key.startswith(f"mk_{api_key.prefix}_")
    row = ApiKey.objects.filter(pk=api_key.pk).values().get()
    assert raw_key not in str(row) and raw_key.split("_", 2)[2] not in str(row)
    assert row["secret_hash"] == hashlib.sha256(raw_key.encode()).hexdigest()
    assert (row["name"], row["scopes"]) == ("export", ["events:write", "usage:read"])
    assert api_key_authenticate(raw_key) == api_key
    assert api_key_authenticate(raw_key[:-1] + ("A" if raw_key[-1] != "A" else "B")) is None
    assert api_key_authenticate(f"mk_{api_key.prefix}_") is None
    assert api_key_authenticate("mk_zzzzzzzz_" + raw_key.split("_", 2)[2]) is None
    assert api_key_authenticate("not a key") is None


def test_scopes_are_checked_and_kept_in_one_order():
    tenant = TenantFactory()
    api_key, _ = api_key_create(tenant=tenant, name="k", scopes=["usage:read", "events:write", "usage:read"])
    assert api_key.scopes == ["events:write", "usage:read"]
    with pytest.raises(ApplicationError, match="Unknown scope 'usage:write'"):
        api_key_create(tenant=tenant, name="k", scopes=["usage:write"])
    with pytest.raises(ApplicationError, match="at least one scope"):
        api_key_create(tenant=tenant, name="k", scopes=[])
    with pytest.raises(ApplicationError, match="needs a name"):
        api_key_create(tenant=tenant, name="   ")
    with pytest.raises(ApplicationError, match="at most 100"):
        api_key_create(tenant=tenant, name="x" * 101)
    assert ApiKey.objects.count() == 1


@pytest.mark.parametrize("change", [
    {"scopes": []}, {"scopes": ["usage:read", "events:write"]}, {"scopes": ["admin"]}, {"scopes": "usage:read"},
    {"prefix": "ABCDEFGH"}, {"prefix": "abc"}, {"secret_hash": "x" * 64}, {"name": ""},
    {"revoked_at": "created-1"}, {"last_used_at": "created-1"},
])
def test_the_database_refuses_a_broken_key(change):
    api_key, _ = api_key_create(tenant=TenantFactory(), name="k")
    values = {field: (api_key.created_at - timedelta(seconds=1) if value == "created-1" else value)
              for field, value in change.items()}
    with pytest.raises(IntegrityError), transaction.atomic():
        ApiKey.objects.filter(pk=api_key.pk).update(**values)


def test_the_database_refuses_a_second_key_with_the_same_prefix():
    first, _ = api_key_create(tenant=TenantFactory(), name="k")
    with pytest.raises(IntegrityError), transaction.atomic():
        ApiKey.objects.create(tenant=first.tenant, name="k2", prefix=first.prefix, secret_hash="0" * 64,
                              scopes=["usage:read"])


def test_revoking_is_idempotent_and_stops_the_key(django_user_model):
    staff = django_user_model.objects.create_user("staff", is_staff=True)
    api_key, raw_key = api_key_create(tenant=TenantFactory(), name="k")
    api_key_revoke(api_key=api_key, by=staff)
    first = api_key.revoked_at
    assert first is not None and api_key.revoked_by == staff
    api_key_revoke(api_key=api_key)
    assert (api_key.revoked_at, api_key.revoked_by) == (first, staff)
    assert api_key_authenticate(raw_key) is None


@pytest.mark.parametrize("end", [tenant_suspend, tenant_cancel])
def test_a_key_of_a_suspended_or_cancelled_tenant_is_refused(end, local_identity):
    tenant = TenantFactory()
    _, raw_key = api_key_create(tenant=tenant, name="k")
    end(tenant=tenant)
    assert api_key_authenticate(raw_key) is None


def test_last_used_is_written_at_most_once_a_minute(django_assert_num_queries):
    api_key, raw_key = api_key_create(tenant=TenantFactory(), name="k")
    assert api_key.last_used_at is None
    with django_assert_num_queries(2):  # the read, and the write of the first use
        api_key_authenticate(raw_key)
    used = ApiKey.objects.get(pk=api_key.pk).last_used_at
    assert used is not None
    with django_assert_num_queries(1):  # within the minute: no write
        api_key_authenticate(raw_key)
    ApiKey.objects.filter(pk=api_key.pk).update(created_at=used - timedelta(hours=1),
                                                last_used_at=used - timedelta(minutes=2))
    api_key_authenticate(raw_key)
    assert ApiKey.objects.get(pk=api_key.pk).last_used_at > used - timedelta(seconds=1)


# --- the tenant area ---------------------------------------------------------------------------------------

def test_the_owner_makes_a_key_that_is_shown_once(client, acme, settings):
    settings.PORTAL_BASE_URL = "https://portal.example/"
    tenant, owner, _ = acme
    client.force_login(owner.user)
    assert 'href="/tenant/api-keys/"' in client.get("/tenant/").content.decode()
    once = ONCE_RE.search(client.get("/tenant/api-keys/").content.decode()).group(1)
    form = {"name": "billing export", "scopes": ["usage:read"], "once": once}
    response = client.post("/tenant/api-keys/", form)
    assert response.status_code == 200
    page = response.content.decode()
    raw_key = KEY_RE.search(page).group(0)
    assert "it is shown this once" in page and 'data-copy="api-key"' in page and "portal/copy.js" in page
    assert f"Bearer {raw_key}" in page and "https://portal.example/api/v1/usage/current/" in page
    api_key = ApiKey.objects.get()
    assert (api_key.tenant, api_key.name, api_key.scopes, api_key.created_by) == (
        tenant, "billing export", ["usage:read"], owner.user)
    assert api_key_authenticate(raw_key) == api_key
    assert "no-cache" in response["Cache-Control"] or "no-store" in response["Cache-Control"]
    listed = client.get("/tenant/api-keys/").content.decode()
    assert "billing export" in listed and f"mk_{api_key.prefix}_…" in listed and raw_key not in listed
    assert api_key.secret_hash not in listed and not KEY_RE.search(listed)
    # The answer reloaded (the browser sends the same form again): no second key, and it says why.
    again = client.post("/tenant/api-keys/", form).content.decode()
    assert ApiKey.objects.count() == 1 and not KEY_RE.search(again) and "This form was already sent" in again
    assert ONCE_RE.search(again).group(1) != once  # a fresh form to make another


def test_the_owner_revokes_a_key_of_the_tenant_only(client, acme):
    tenant, owner, _ = acme
    own, _ = api_key_create(tenant=tenant, name="mine")
    other, _ = api_key_create(tenant=TenantFactory(slug="globex"), name="theirs")
    client.force_login(owner.user)
    assert "theirs" not in client.get("/tenant/api-keys/").content.decode()
    assert client.post(f"/tenant/api-keys/{other.pk}/revoke/").status_code == 404
    assert client.post(f"/tenant/api-keys/{own.pk}/revoke/").status_code == 302
    assert client.post(f"/tenant/api-keys/{own.pk}/revoke/").status_code == 302  # twice: still revoked, no error
    own.refresh_from_db()
    other.refresh_from_db()
    assert own.revoked_at is not None and own.revoked_by == owner.user and other.revoked_at is None
    assert f"/tenant/api-keys/{own.pk}/revoke/" not in client.get("/tenant/api-keys/").content.decode()


def test_a_refused_form_makes_no_key(client, acme):
    _, owner, _ = acme
    client.force_login(owner.user)
    response = client.post("/tenant/api-keys/", {"name": "x", "scopes": [], "once": "a"})
    assert response.status_code == 200 and not KEY_RE.search(response.content.decode())
    response = client.post("/tenant/api-keys/", {"name": "x", "scopes": ["root"], "once": "b"})
    assert response.status_code == 200 and not ApiKey.objects.exists()


def test_a_member_cannot_manage_keys(client, acme):
    tenant, _, member = acme
    api_key, _ = api_key_create(tenant=tenant, name="k")
    client.force_login(member.user)
    assert 'href="/tenant/api-keys/"' not in client.get("/tenant/").content.decode()
    assert client.get("/tenant/api-keys/").status_code == 403
    assert client.post("/tenant/api-keys/", {"name": "x", "scopes": ["usage:read"], "once": "c"}).status_code == 403
    assert client.post(f"/tenant/api-keys/{api_key.pk}/revoke/").status_code == 403
    api_key.refresh_from_db()
    assert api_key.revoked_at is None and ApiKey.objects.count() == 1


def test_the_keys_page_needs_a_sign_in(client, acme):
    assert client.get("/tenant/api-keys/")["Location"].startswith("/account/login/")


# --- the admin ---------------------------------------------------------------------------------------------

@pytest.fixture
def staff_client(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("staff", "staff@example.com", "pw-for-tests-1"))
    return client


def test_staff_make_a_key_shown_once_in_a_message(staff_client):
    tenant = TenantFactory(slug="globex")
    response = staff_client.post(reverse("admin:tenants_apikey_add"),
                                 {"tenant": tenant.pk, "name": "ops", "scopes": ["events:write"]})
    assert response.status_code == 200
    raw_key = KEY_RE.search(response.content.decode()).group(0)
    api_key = ApiKey.objects.get()
    assert (api_key.tenant, api_key.scopes, api_key.created_by.username) == (tenant, ["events:write"], "staff")
    assert api_key_authenticate(raw_key) == api_key
    for url in (reverse("admin:tenants_apikey_changelist"), reverse("admin:tenants_apikey_change", args=[api_key.pk])):
        page = staff_client.get(url).content.decode()
        assert f"mk_{api_key.prefix}_…" in page and raw_key not in page and api_key.secret_hash not in page


def test_staff_make_a_provider_key_without_a_tenant(staff_client):
    add = reverse("admin:tenants_apikey_add")
    refused = staff_client.post(add, {"tenant": "", "name": "backend", "scopes": ["events:write", "usage:read"]})
    assert refused.status_code == 200 and "only sends events" in refused.content.decode()
    assert not ApiKey.objects.exists()
    response = staff_client.post(add, {"tenant": "", "name": "backend", "scopes": ["events:write"]})
    assert response.status_code == 200 and "The new key of the provider" in response.content.decode()
    api_key = ApiKey.objects.get()
    assert api_key.tenant is None and api_key.scopes == ["events:write"]
    assert api_key_authenticate(KEY_RE.search(response.content.decode()).group(0)) == api_key
    assert "provider (events for any tenant)" in staff_client.get(reverse("admin:tenants_apikey_changelist")).content.decode()


def test_staff_are_refused_a_key_without_scope(staff_client):
    tenant = TenantFactory()
    response = staff_client.post(reverse("admin:tenants_apikey_add"), {"tenant": tenant.pk, "name": "ops"})
    assert response.status_code == 200 and not ApiKey.objects.exists()


def test_staff_revoke_keys_with_the_action(staff_client):
    keys = [api_key_create(tenant=TenantFactory(), name=f"k{i}")[0] for i in range(2)]
    response = staff_client.post(reverse("admin:tenants_apikey_changelist"),
                                 {"action": "revoke", "_selected_action": [keys[0].pk]}, follow=True)
    assert "Revoked: 1." in response.content.decode()
    assert [bool(ApiKey.objects.get(pk=k.pk).revoked_at) for k in keys] == [True, False]
    assert ApiKey.objects.get(pk=keys[0].pk).revoked_by.username == "staff"


# --- the command -------------------------------------------------------------------------------------------

def test_the_command_prints_the_key_alone_on_its_last_line():
    tenant = TenantFactory(slug="acme")
    out = StringIO()
    call_command("api_key_create", "--tenant", "acme", "--name", "cron", stdout=out)
    raw_key = out.getvalue().rstrip("\n").splitlines()[-1]
    assert KEY_RE.fullmatch(raw_key)
    api_key = api_key_authenticate(raw_key)
    assert (api_key.tenant, api_key.name, api_key.scopes, api_key.created_by) == (
        tenant, "cron", ["events:write", "usage:read"], None)
    out = StringIO()
    call_command("api_key_create", "--tenant", "acme", "--name", "read", "--scope", "usage:read", stdout=out)
    assert api_key_authenticate(out.getvalue().splitlines()[-1]).scopes == ["usage:read"]


@pytest.mark.parametrize("args, message", [
    (["--tenant", "nope", "--name", "x"], "No tenant 'nope'."),
    (["--tenant", "acme", "--name", "x", "--scope", "usage:write"], "Unknown scope 'usage:write'"),
])
def test_the_command_refuses_an_unknown_tenant_or_scope(args, message):
    TenantFactory(slug="acme")
    with pytest.raises(CommandError, match=re.escape(message)):
        call_command("api_key_create", *args, stdout=StringIO())
    assert not ApiKey.objects.exists()
