"""The tenant area's own password checks (the current password on the password page, the password for a
Cognito token) count and obey the same sign-in lockout as the sign-in page: a stolen session cannot guess
its user's password there."""

import pytest
from django.test import Client

from tenants.identity import InvalidCredentials, get_identity_backend
from tenants.models import TenantRole
from tenants.services import identity as svc
from tenants.services.subscriptions import subscription_create
from tenants.tests.factories import TenantFactory, import_sample_plans

PASSWORD = "Corr3ct-horse"
WRONG = "Wr0ng-horse-battery"


def _owner():
    tenant = TenantFactory(slug="acme", name="Acme Corp")
    subscription_create(tenant=tenant, plan_version=import_sample_plans()["pro"])
    owner, _ = svc.tenant_user_create(tenant=tenant, email="ann@acme.example", role=TenantRole.OWNER, password=PASSWORD)
    return owner


@pytest.mark.django_db
def test_guessing_the_current_password_locks_out(local_identity):
    owner = _owner()
    browser = Client()
    browser.force_login(owner.user)

    def change(current):
        return browser.post("/tenant/password/", {"current_password": current, "new_password": "N3w-password!",
                                                  "confirm_password": "N3w-password!"})

    answers = [change(WRONG) for _ in range(10)]
    assert [a.status_code for a in answers[:4]] == [200] * 4 and "not right" in answers[0].content.decode()
    assert {a.status_code for a in answers[4:]} == {429}
    response = change(PASSWORD)
    assert response.status_code == 429 and "Too many failed sign-ins" in response.content.decode()
    get_identity_backend().authenticate(username=owner.username, password=PASSWORD)  # unchanged
    # The sign-in page is locked for this user too.
    assert Client().post("/account/login/", {"username": "ann@acme.example", "password": PASSWORD},
                         REMOTE_ADDR="10.8.8.8").status_code == 429


@pytest.mark.django_db
def test_guessing_the_password_for_a_cognito_token_locks_out(cognito_pool):
    owner = _owner()
    browser = Client()
    browser.force_login(owner.user)
    answers = [browser.post("/tenant/token/", {"password": WRONG}) for _ in range(6)]
    assert [a.status_code for a in answers[:4]] == [200] * 4 and "not right" in answers[0].content.decode()
    assert {a.status_code for a in answers[4:]} == {429}
    response = browser.post("/tenant/token/", {"password": PASSWORD})
    assert response.status_code == 429 and 'id="token"' not in response.content.decode()
    with pytest.raises(InvalidCredentials):  # not the lockout's doing: the pool still checks passwords
        get_identity_backend().authenticate(username=owner.username, password=WRONG)
