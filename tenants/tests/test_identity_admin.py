"""Admin for tenant users and signups: staff manage any tenant's users through the identity services."""

import pytest

from tenants.identity import IdentityError, get_identity_backend
from tenants.identity.local import LocalIdentityBackend
from tenants.models import SignupRequest, SignupStatus, Tenant, TenantRole, TenantUser
from tenants.services import identity as svc
from tenants.services.signup import signup_request_create, signup_verify
from tenants.tests.factories import TenantFactory, import_sample_plans

PASSWORD = "Corr3ct-horse"


@pytest.fixture
def staff_client(client, django_user_model, local_identity, db):
    admin_user = django_user_model.objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(admin_user)
    return client


def test_changelists_render(staff_client):
    tenant = TenantFactory(slug="acme")
    svc.tenant_user_create(tenant=tenant, email="ann@acme.example", role=TenantRole.OWNER, password=PASSWORD)
    assert staff_client.get("/admin/tenants/tenantuser/?q=ann").status_code == 200
    assert staff_client.get("/admin/tenants/signuprequest/").status_code == 200


def test_staff_adds_a_user_through_the_backend(staff_client, mailoutbox, django_capture_on_commit_callbacks):
    tenant = TenantFactory(slug="acme")
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post("/admin/tenants/tenantuser/add/",
                                     {"tenant": tenant.pk, "email": "ann@acme.example", "role": "member"})
    assert response.status_code == 302, response.content.decode()[:2000]
    user = TenantUser.objects.get(email="ann@acme.example")
    assert get_identity_backend().get_user(username=user.username).tenant_id == "acme"
    assert user.password_change_required and "ann@acme.example" in mailoutbox[-1].to
    # A taken email is refused on the form.
    response = staff_client.post("/admin/tenants/tenantuser/add/",
                                 {"tenant": tenant.pk, "email": "ann@acme.example", "role": "member"})
    assert response.status_code == 200 and "already exists" in response.content.decode()


def test_disable_enable_reset_actions(staff_client, mailoutbox, django_capture_on_commit_callbacks):
    tenant = TenantFactory(slug="acme")
    user, _ = svc.tenant_user_create(tenant=tenant, email="ann@acme.example", password=PASSWORD)
    url = "/admin/tenants/tenantuser/"
    staff_client.post(url, {"action": "disable", "_selected_action": [user.pk]})
    user.refresh_from_db()
    assert not user.is_active and get_identity_backend().get_user(username=user.username).enabled is False
    staff_client.post(url, {"action": "enable", "_selected_action": [user.pk]})
    user.refresh_from_db()
    assert user.is_active
    with django_capture_on_commit_callbacks(execute=True):  # the email is sent after the commit
        staff_client.post(url, {"action": "reset_password", "_selected_action": [user.pk]})
    user.refresh_from_db()
    assert user.password_change_required and "temporary password" in mailoutbox[-1].body


def test_retry_provisioning_action(staff_client, mailoutbox, monkeypatch, django_capture_on_commit_callbacks):
    import re

    versions = import_sample_plans()
    with django_capture_on_commit_callbacks(execute=True):
        signup = signup_request_create(company="Acme", slug="acme", email="ann@acme.example",
                                       plan_version=versions["pro"], password=PASSWORD, browser="ann-browser")
    code = re.search(r"\b(\d{6})\b", mailoutbox[-1].body).group(1)

    def refuse(self, **kwargs):
        raise IdentityError("The identity provider is busy; try again in a minute.")

    monkeypatch.setattr(LocalIdentityBackend, "create_user", refuse)
    assert signup_verify(request_id=signup.pk, code=code, browser="ann-browser").status == SignupStatus.FAILED
    page = staff_client.get("/admin/tenants/signuprequest/").content.decode()
    assert "busy" in page
    monkeypatch.undo()
    staff_client.post("/admin/tenants/signuprequest/", {"action": "retry_provisioning", "_selected_action": [signup.pk]})
    assert SignupRequest.objects.get().status == SignupStatus.PROVISIONED
    assert Tenant.objects.filter(slug="acme").exists()


def test_the_added_message_keeps_the_email_as_typed(staff_client, django_capture_on_commit_callbacks, mailoutbox,
                                                    settings):
    """The admin capitalises the first letter of a message: an email must not come first ("Cfo@acme.example")."""
    tenant = TenantFactory(slug="acme", name="Acme Inc.")
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post("/admin/tenants/tenantuser/add/",
                                     {"tenant": tenant.pk, "email": "cfo@acme.example", "role": "member"}, follow=True)
    html = response.content.decode()
    assert "Created the user cfo@acme.example; a temporary password was emailed to them." in html
    assert "Cfo@" not in html
    # A name that ends with a full stop is not given a second one.
    assert mailoutbox[-1].body.startswith("An account was made for you at Acme Inc.\n")


def test_an_invitation_names_the_provider_with_one_full_stop(db, local_identity, mailoutbox,
                                                             django_capture_on_commit_callbacks, settings):
    settings.PROVIDER_NAME = "Example SaaS Inc."
    tenant = TenantFactory(slug="acme", name="Acme Corp")
    owner, _ = svc.tenant_user_create(tenant=tenant, email="ann@acme.example", role=TenantRole.OWNER, password=PASSWORD)
    with django_capture_on_commit_callbacks(execute=True):
        svc.tenant_user_invite(tenant=tenant, email="bob@acme.example", invited_by=owner)
    body = mailoutbox[-1].body
    assert "You were invited to Acme Corp on Example SaaS Inc.\n" in body and "Inc.." not in body
    settings.PROVIDER_NAME = "Example SaaS"
    with django_capture_on_commit_callbacks(execute=True):
        svc.tenant_user_invite(tenant=tenant, email="carl@acme.example", invited_by=owner)
    assert "You were invited to Acme Corp on Example SaaS.\n" in mailoutbox[-1].body
