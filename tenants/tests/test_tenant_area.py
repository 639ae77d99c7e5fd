"""The tenant area: plan, users (owner-only management, scoped to the tenant), API token, password change."""

import re

import pytest
from rest_framework.exceptions import AuthenticationFailed

from tenants.identity.authentication import TokenAuthentication
from tenants.models import TenantRole, TenantUser
from tenants.services import identity as svc
from tenants.services.lifecycle import tenant_suspend
from tenants.services.subscriptions import subscription_create
from tenants.tests.factories import TenantFactory, import_sample_plans

PASSWORD = "Corr3ct-horse"


@pytest.fixture
def acme(local_identity, db):
    versions = import_sample_plans()
    tenant = TenantFactory(slug="acme", name="Acme Corp")
    subscription_create(tenant=tenant, plan_version=versions["pro"])
    owner, _ = svc.tenant_user_create(tenant=tenant, email="ann@acme.example", role=TenantRole.OWNER, password=PASSWORD)
    member, _ = svc.tenant_user_create(tenant=tenant, email="bob@acme.example", password=PASSWORD)
    return tenant, owner, member


@pytest.fixture
def run_on_commit():
    from django.db import connection

    original = connection.on_commit
    connection.on_commit = lambda func, *args, **kwargs: func()
    yield
    connection.on_commit = original


def test_home_shows_the_plan(client, acme):
    tenant, owner, _ = acme
    client.force_login(owner.user)
    page = client.get("/tenant/").content.decode()
    assert "Acme Corp" in page and "Pro" in page and "trial until" in page
    assert 'href="/tenant/">My tenant</a>' in page


def test_the_area_needs_a_tenant_user(client, acme, django_user_model):
    assert client.get("/tenant/")["Location"].startswith("/account/login/")
    staff = django_user_model.objects.create_user("staff", password="x", is_staff=True)
    client.force_login(staff)
    assert client.get("/tenant/").status_code == 403


def test_owner_invites_disables_enables_and_removes(client, acme, mailoutbox, run_on_commit):
    tenant, owner, member = acme
    client.force_login(owner.user)
    response = client.post("/tenant/users/", {"email": "carl@acme.example"})
    assert response.status_code == 302
    carl = TenantUser.objects.get(email="carl@acme.example")
    assert carl.tenant == tenant and carl.role == "member" and carl.password_change_required
    assert "carl@acme.example" in mailoutbox[-1].to

    assert client.post(f"/tenant/users/{member.pk}/disable/").status_code == 302
    member.refresh_from_db()
    assert not member.is_active and not member.user.is_active
    client.post(f"/tenant/users/{member.pk}/enable/")
    member.refresh_from_db()
    assert member.is_active
    client.post(f"/tenant/users/{carl.pk}/remove/")
    assert not TenantUser.objects.filter(email="carl@acme.example").exists()

    page = client.get("/tenant/users/").content.decode()
    assert "<td>bob@acme.example</td>" in page and "<td>carl@acme.example</td>" not in page


def test_a_member_cannot_manage_users(client, acme):
    _, owner, member = acme
    client.force_login(member.user)
    assert client.post("/tenant/users/", {"email": "x@acme.example"}).status_code == 403
    assert client.post(f"/tenant/users/{owner.pk}/disable/").status_code == 403
    owner.refresh_from_db()
    assert owner.is_active


def test_another_tenants_users_are_out_of_reach(client, acme):
    _, owner, _ = acme
    other = TenantFactory(slug="other")
    stranger, _ = svc.tenant_user_create(tenant=other, email="eve@other.example", password=PASSWORD)
    client.force_login(owner.user)
    assert client.post(f"/tenant/users/{stranger.pk}/disable/").status_code == 404
    stranger.refresh_from_db()
    assert stranger.is_active
    assert "<td>eve@other.example</td>" not in client.get("/tenant/users/").content.decode()


def test_token_page_gives_a_working_token_and_curl_line(client, acme, settings):
    settings.METERED_API_BASE_URL = "https://api.example.com/prod"
    _, owner, _ = acme
    client.force_login(owner.user)
    assert client.get("/tenant/token/").status_code == 200
    page = client.post("/tenant/token/").content.decode()
    token = re.search(r'<textarea id="token"[^>]*>([^<]+)</textarea>', page).group(1)
    assert f'curl "https://api.example.com/prod/random/strings?len=7" -H "Authorization: {token}"' in page.replace("&quot;", '"')
    user, claims = TokenAuthentication().authenticate_token(token)
    assert user == owner.user and claims["custom:tenant_id"] == "acme"


def test_a_suspended_tenant_gets_no_token_and_its_tokens_stop_working(client, acme, run_on_commit):
    tenant, owner, _ = acme
    token = svc.tenant_user_issue_token(tenant_user=owner)
    client.force_login(owner.user)
    tenant_suspend(tenant=tenant)
    # The session ends (the login is disabled) and the area refuses even a fresh sign-in.
    assert client.post("/tenant/token/").status_code == 302
    # Even a login left enabled (say the identity calls failed at suspension) gets no token.
    type(owner.user).objects.filter(pk=owner.user.pk).update(is_active=True)
    TenantUser.objects.filter(pk=owner.pk).update(is_active=True)
    client.force_login(owner.user)
    assert client.post("/tenant/token/").status_code == 403
    with pytest.raises(AuthenticationFailed):
        TokenAuthentication().authenticate_token(token)
    assert client.post("/account/login/", {"username": "ann@acme.example", "password": PASSWORD}).status_code == 200


def test_temporary_password_must_be_changed_first(client, acme, run_on_commit, mailoutbox):
    tenant, owner, _ = acme
    carl = svc.tenant_user_invite(tenant=tenant, email="carl@acme.example", invited_by=owner)
    temporary = re.search(r"^    (\S+)$", mailoutbox[-1].body, re.M).group(1)
    response = client.post("/account/login/", {"username": "carl@acme.example", "password": temporary})
    assert response.status_code == 302
    assert client.get("/tenant/")["Location"] == "/tenant/password/"
    response = client.post("/tenant/password/", {"current_password": temporary, "new_password": "weak",
                                                 "confirm_password": "weak"})
    assert response.status_code == 200 and "uppercase" in response.content.decode()
    response = client.post("/tenant/password/", {"current_password": temporary, "new_password": "Mine-Passw0rd",
                                                 "confirm_password": "Mine-Passw0rd"})
    assert response.status_code == 302 and response["Location"] == "/tenant/"
    assert client.get("/tenant/").status_code == 200  # still signed in
    carl.refresh_from_db()
    assert not carl.password_change_required
    client.logout()
    assert client.post("/account/login/", {"username": "carl@acme.example", "password": "Mine-Passw0rd"}).status_code == 302


def test_staff_opening_the_area_are_told_why_and_where_to_look(client, acme, django_user_model, settings):
    settings.PROVIDER_NAME = "Example SaaS Inc."
    staff = django_user_model.objects.create_user("staff", password="x", is_staff=True)
    client.force_login(staff)
    response = client.get("/tenant/")
    html = " ".join(response.content.decode().split())
    assert response.status_code == 403  # still nothing of a tenant's is served
    assert "a staff account of Example SaaS Inc. The tenant area" in html and "Inc.." not in html
    for link in ('href="/admin/dashboard/"', 'href="/admin/metering/invoice/"', 'href="/admin/tenants/tenant/"'):
        assert link in html
    # Someone who is neither staff nor a tenant's user gets the short answer.
    client.force_login(django_user_model.objects.create_user("nobody", password="x"))
    html = client.get("/tenant/dashboard/").content.decode()
    assert "This sign-in belongs to no tenant." in html and "staff account" not in html


@pytest.mark.parametrize("path", ["/tenant/", "/tenant/dashboard/", "/tenant/users/", "/tenant/token/",
                                  "/tenant/password/", "/", "/signup/", "/account/login/"])
def test_every_page_uses_the_one_stylesheet(client, acme, path):
    _, owner, _ = acme
    if path.startswith("/tenant/"):
        client.force_login(owner.user)
    html = client.get(path).content.decode()
    assert re.findall(r'<link rel="stylesheet" href="([^"]+)"', html) == ["/static/portal/portal.css"]
    assert "<style" not in html
    assert 'class="site"' in html


def test_the_token_page_offers_copy_buttons(client, acme):
    _, owner, _ = acme
    client.force_login(owner.user)
    page = client.post("/tenant/token/").content.decode()
    assert 'data-copy="curl"' in page and 'data-copy="token"' in page and "/static/portal/copy.js" in page
    assert '<pre id="curl">curl ' in page
    assert 'aria-current="page">API token</a>' in page


def test_signing_out_of_the_tenant_area_leads_back_to_the_sign_in_page(client, django_user_model):
    user = django_user_model.objects.create_user("ann@acme.example", "ann@acme.example", "Corr3ct-Horse-Battery!")
    client.force_login(user)
    response = client.post("/account/logout/", follow=True)
    assert response.redirect_chain == [("/account/login/", 302)]
    assert "Django administration" not in response.content.decode()
    assert "_auth_user_id" not in client.session
