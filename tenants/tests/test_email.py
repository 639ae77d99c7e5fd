"""Signup codes and temporary passwords when the mail server is down: recorded, kept secret, resent, wiped once sent."""

import re
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.utils import timezone

from tenants.models import DeliveryStatus, EmailDelivery, EmailKind, SignupRequest, Tenant, TenantUser
from tenants.services import email as email_services
from tenants.services import identity as identity_services
from tenants.tasks import sweep_emails
from tenants.tests.factories import TenantFactory, import_sample_plans
from tenants.tests.smtp import smtp_fixture  # noqa: F401  (the `smtp` fixture)

PASSWORD = "Corr3ct-horse"
ADMIN_LIST = "/admin/tenants/emaildelivery/"


@pytest.fixture
def plans(db):
    cache.clear()
    yield import_sample_plans()
    cache.clear()


@pytest.fixture
def staff(django_user_model, local_identity, db):
    from django.test import Client

    staff = Client()
    staff.force_login(django_user_model.objects.create_superuser("root", "root@example.com", "pw"))
    return staff


def _code(text: str) -> str:
    return re.search(r"\b(\d{6})\b", text).group(1)


def _resend(staff, delivery, capture):
    with capture(execute=True):
        return staff.post(ADMIN_LIST, {"action": "resend", "_selected_action": [delivery.pk]}, follow=True)


def test_signup_with_smtp_down_keeps_the_code_secret_then_resend_delivers_it(
    client, plans, smtp, staff, settings, django_capture_on_commit_callbacks
):
    settings.EMAIL_MAX_ATTEMPTS = 2
    form = {"company": "Acme Corp", "slug": "acme", "email": "ann@acme.example", "password": PASSWORD,
            "plan": plans["starter"].pk}
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/signup/", form)
    assert response.status_code == 302 and response["Location"] == "/signup/verify/"  # no error for the visitor
    delivery = EmailDelivery.objects.get()
    signup = SignupRequest.objects.get()
    assert (delivery.kind, delivery.recipient, delivery.about) == (EmailKind.SIGNUP_CODE, "ann@acme.example", signup)
    assert delivery.status == DeliveryStatus.FAILED and delivery.attempts == 2
    assert "Connection refused" in delivery.last_error
    # Stored encrypted: no code, no text of the email in the database, and the admin does not show it.
    assert delivery.secret and delivery.body and "verification code" not in delivery.body
    assert not re.search(r"\b\d{6}\b", delivery.body)
    assert delivery.expires_at == signup.code_expires_at
    page = staff.get(f"{ADMIN_LIST}{delivery.pk}/change/").content.decode()
    assert "never shown" in page and "verification code for" not in page

    smtp.start()
    response = _resend(staff, delivery, django_capture_on_commit_callbacks)
    assert "Queued again: 1." in response.content.decode()
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SENT and delivery.body == ""  # wiped once sent
    assert len(smtp.messages) == 1 and smtp.messages[0]["To"] == "ann@acme.example"
    code = _code(smtp.bodies()[0])
    response = client.post("/signup/verify/", {"code": code})
    assert response.status_code == 302 and response["Location"] == "/tenant/"
    assert Tenant.objects.filter(slug="acme").exists()
    # Sent, and its secret gone: it cannot be sent again.
    response = _resend(staff, delivery, django_capture_on_commit_callbacks)
    assert "wiped once sent" in response.content.decode() and len(smtp.messages) == 1


def test_a_new_code_supersedes_the_unsent_one(client, plans, smtp, settings, django_capture_on_commit_callbacks):
    settings.EMAIL_MAX_ATTEMPTS = 1
    form = {"company": "Acme Corp", "slug": "acme", "email": "ann@acme.example", "password": PASSWORD,
            "plan": plans["starter"].pk}
    with django_capture_on_commit_callbacks(execute=True):
        client.post("/signup/", form)
    first = EmailDelivery.objects.get()
    assert first.status == DeliveryStatus.FAILED
    smtp.start()
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/signup/verify/", {"action": "resend"})
    assert response.status_code == 200
    first.refresh_from_db()
    assert first.status == DeliveryStatus.CANCELLED and first.body == "" and "Superseded" in first.last_error
    second = EmailDelivery.objects.exclude(pk=first.pk).get()
    assert second.status == DeliveryStatus.SENT and len(smtp.messages) == 1
    assert client.post("/signup/verify/", {"code": _code(smtp.bodies()[0])}).status_code == 302


def test_an_unsent_code_expires_with_the_signup_code(client, plans, monkeypatch, django_capture_on_commit_callbacks):
    monkeypatch.setattr(email_services, "_enqueue", lambda ids: None)  # its task was lost
    form = {"company": "Acme Corp", "slug": "acme", "email": "ann@acme.example", "password": PASSWORD,
            "plan": plans["starter"].pk}
    with django_capture_on_commit_callbacks(execute=True):
        client.post("/signup/", form)
    delivery = EmailDelivery.objects.get()
    EmailDelivery.objects.update(expires_at=timezone.now() - timedelta(minutes=1),
                                 next_attempt_at=timezone.now() - timedelta(minutes=31))
    assert sweep_emails.apply().get() == {"requeued": 0, "cancelled": 1, "wiped": 1}
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.CANCELLED and delivery.body == ""
    assert "Expired" in delivery.last_error


def test_temporary_password_email_with_smtp_down_then_resent(smtp, staff, settings, django_capture_on_commit_callbacks):
    settings.EMAIL_MAX_ATTEMPTS = 1
    tenant = TenantFactory(slug="acme")
    user, _ = identity_services.tenant_user_create(tenant=tenant, email="bob@acme.example", password=PASSWORD)
    with django_capture_on_commit_callbacks(execute=True):
        staff.post("/admin/tenants/tenantuser/", {"action": "reset_password", "_selected_action": [user.pk]})
    delivery = EmailDelivery.objects.get()
    assert (delivery.kind, delivery.about, delivery.tenant) == (EmailKind.TEMPORARY_PASSWORD, user, tenant)
    assert delivery.status == DeliveryStatus.FAILED and delivery.secret and "temporary password" not in delivery.body
    listing = staff.get(ADMIN_LIST + "?status__exact=failed&kind__exact=temporary_password&q=bob").content.decode()
    assert "bob@acme.example" in listing
    smtp.start()
    _resend(staff, delivery, django_capture_on_commit_callbacks)
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SENT and delivery.body == ""
    temporary = re.search(r"^    (\S+)$", smtp.bodies()[0], re.M).group(1)
    assert TenantUser.objects.get(pk=user.pk).password_change_required
    from tenants.identity import get_identity_backend

    assert get_identity_backend().authenticate(username=user.username, password=temporary)


def test_the_deliveries_admin_is_read_only(staff, db, django_user_model):
    tenant = TenantFactory(slug="acme")
    delivery = email_services.email_queue(kind=EmailKind.INVOICE, recipient="x@acme.example", subject="Invoice",
                                          body="Total: 1.00", tenant=tenant)
    assert staff.get(ADMIN_LIST).status_code == 200
    assert staff.get(f"{ADMIN_LIST}add/").status_code == 403
    assert staff.post(f"{ADMIN_LIST}{delivery.pk}/change/", {"recipient": "evil@example.com"}).status_code == 403
    assert staff.post(f"{ADMIN_LIST}{delivery.pk}/delete/", {"post": "yes"}).status_code == 403
    delivery.refresh_from_db()
    assert delivery.recipient == "x@acme.example"
    # Someone who may only view deliveries sees them, without the Resend action.
    from django.contrib.auth.models import Permission
    from django.test import Client

    viewer = django_user_model.objects.create_user("viewer", "v@example.com", "pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_emaildelivery"))
    as_viewer = Client()
    as_viewer.force_login(viewer)
    page = as_viewer.get(ADMIN_LIST).content.decode()
    assert "x@acme.example" in page and 'value="resend"' not in page
    assert 'value="resend"' in staff.get(ADMIN_LIST).content.decode()
