"""Password guessing is throttled (django-axes) on every way in that takes a password: the sign-in page,
the admin's sign-in, and HTTP Basic on the REST API. Each test guesses through the real entry point."""

import base64
import json
import logging
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from axes.models import AccessAttempt
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from tenants.models import TenantRole
from tenants.services import identity as identity_services
from tenants.services.subscriptions import subscription_create
from tenants.tests.factories import TenantFactory, import_sample_plans

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "Corr3ct-horse-battery"
WRONG = "Wr0ng-horse-battery"
OWNER = "ann@acme.example"


@pytest.fixture
def people(settings, tmp_path, db, django_user_model):
    """A tenant owner (local identity, signs in with the email) and a staff user; the default limits."""
    settings.IDENTITY_BACKEND = "local"
    settings.VAR_DIR = tmp_path
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # speed, not security
    assert (settings.AXES_FAILURE_LIMIT, settings.AXES_COOLOFF_TIME) == (5, timedelta(minutes=15))
    tenant = TenantFactory(slug="acme", name="Acme Corp")
    subscription_create(tenant=tenant, plan_version=import_sample_plans()["pro"])
    owner, _ = identity_services.tenant_user_create(tenant=tenant, email=OWNER, role=TenantRole.OWNER, password=PASSWORD)
    staff = django_user_model.objects.create_user("staff", "staff@provider.example", PASSWORD, is_staff=True,
                                                  is_superuser=True)
    return owner, staff


def _signed_in(client) -> bool:
    return "_auth_user_id" in client.session


def _login(client, username, password, ip="10.0.0.1", path="/account/login/"):
    return client.post(path, {"username": username, "password": password}, REMOTE_ADDR=ip)


def _basic(username, password, ip="10.0.0.1") -> APIClient:
    client = APIClient(REMOTE_ADDR=ip)
    client.credentials(HTTP_AUTHORIZATION="Basic " + base64.b64encode(f"{username}:{password}".encode()).decode())
    return client


def _cool_off_passes():
    """What 15 minutes of waiting does: the counted failures fall out of the cool-off window."""
    AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(minutes=15, seconds=1))


@pytest.mark.parametrize("path,who", [("/account/login/", "owner"), ("/admin/login/", "staff")])
def test_thirty_wrong_passwords_then_the_right_one_is_refused(people, path, who):
    owner, staff = people
    username = OWNER if who == "owner" else "staff"
    browser = Client()
    answers = [_login(browser, username, WRONG, path=path) for _ in range(30)]
    assert [a.status_code for a in answers[:4]] == [200] * 4  # the form again, "not right"
    assert {a.status_code for a in answers[4:]} == {429}  # the fifth failure locks out
    response = _login(browser, username, PASSWORD, path=path)
    page = response.content.decode()
    assert response.status_code == 429 and not _signed_in(browser)
    assert "Too many failed sign-ins: try again in 15 minutes." in page and response["Retry-After"] == "900"
    # Per user: the right password from another client is refused too.
    assert _login(Client(), username, PASSWORD, ip="10.9.9.9", path=path).status_code == 429

    _cool_off_passes()
    response = _login(Client(), username, PASSWORD, path=path)
    assert response.status_code == 302, response.content.decode()[:500]


def test_fewer_failures_than_the_limit_do_not_lock(people):
    browser = Client()
    for _ in range(4):
        assert _login(browser, OWNER, WRONG).status_code == 200
    response = _login(browser, OWNER, PASSWORD)
    assert response.status_code == 302 and _signed_in(browser)


def test_the_email_in_another_case_is_the_same_user(people):
    for n, variant in enumerate(["ANN@acme.example", "Ann@Acme.Example", " ann@ACME.example", "aNN@acme.example",
                                 "ann@acme.EXAMPLE"]):
        _login(Client(), variant, WRONG, ip=f"10.0.1.{n}")  # five clients, five spellings
    assert _login(Client(), OWNER, PASSWORD, ip="10.0.2.1").status_code == 429


def test_one_client_is_locked_out_across_usernames(people):
    """Per client: spraying one password over many usernames from one address locks that address out, even
    for a user whose password is right; the same user from elsewhere still signs in."""
    for n in range(5):
        _login(Client(), f"user{n}@acme.example", WRONG, ip="10.6.6.6")
    assert _login(Client(), OWNER, PASSWORD, ip="10.6.6.6").status_code == 429
    assert _login(Client(), "staff", PASSWORD, ip="10.6.6.6", path="/admin/login/").status_code == 429
    browser = Client()
    assert _login(browser, OWNER, PASSWORD, ip="10.7.7.7").status_code == 302 and _signed_in(browser)


@pytest.mark.parametrize("who,url", [("staff", "/api/v1/admin/tenants/"), ("owner", "/api/v1/plan/")])
def test_http_basic_on_the_api_is_locked_out_with_a_json_429(people, who, url):
    username = OWNER if who == "owner" else "staff"
    assert _basic(username, PASSWORD).get(url).status_code == 200  # Basic works, for staff and tenant users
    answers = [_basic(username, WRONG).get(url) for _ in range(30)]
    assert {a.status_code for a in answers[:4]} == {401}
    assert {a.status_code for a in answers[4:]} == {429}  # the fifth failure locks out
    response = _basic(username, PASSWORD).get(url)
    assert response.status_code == 429 and response["Content-Type"] == "application/json"
    assert response.json() == {"detail": "Too many failed sign-ins: try again in 15 minutes. "
                                         "Each further attempt before then starts the wait again."}
    assert response["Retry-After"] == "900"
    # The same count locks the sign-in page: one lockout per user, whichever way the guesses came.
    path = "/account/login/" if who == "owner" else "/admin/login/"
    assert _login(Client(), username, PASSWORD, ip="10.3.3.3", path=path).status_code == 429

    _cool_off_passes()
    assert _basic(username, PASSWORD).get(url).status_code == 200


def test_a_json_client_gets_json_and_the_lockout_is_logged(people, caplog):
    with caplog.at_level(logging.WARNING, logger="tenants.identity.lockout"):
        for _ in range(5):
            response = Client().post("/account/login/", {"username": "Staff", "password": WRONG},
                                     REMOTE_ADDR="10.4.4.4", HTTP_ACCEPT="application/json")
    assert response.status_code == 429 and response.json()["code"] == "locked_out"
    assert "Too many failed sign-ins" in response.json()["detail"]
    lines = [r.getMessage() for r in caplog.records if r.name == "tenants.identity.lockout"]
    assert lines == ["sign-in locked out: username='staff' ip=10.4.4.4 path=/account/login/ (5 failures within 15 minutes)"]


def test_limits_come_from_the_environment(tmp_path):
    probe = ("import json, django; from django.conf import settings; django.setup(); "
             "print(json.dumps([settings.AXES_FAILURE_LIMIT, settings.AXES_COOLOFF_TIME.total_seconds()]))")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_", "CELERY_", "PORTAL_"))}
    env.update({"DJANGO_SETTINGS_MODULE": "portal.settings", "PORTAL_VAR_DIR": str(tmp_path)})
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60,
                            env={**env, "LOGIN_FAILURE_LIMIT": "3", "LOGIN_COOLOFF_MINUTES": "60"})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [3, 3600.0]
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60,
                            env={**env, "LOGIN_FAILURE_LIMIT": "0"})
    assert result.returncode != 0 and "LOGIN_FAILURE_LIMIT and LOGIN_COOLOFF_MINUTES must be at least 1" in result.stderr
