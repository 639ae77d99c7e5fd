"""Every form field is bounded before the database sees it: too long is a form error, never a 500.

A 300-character email passed the form (Django's EmailField allows 320) and failed in the database
(254 columns: a DataError on PostgreSQL, silently stored on SQLite). Through the pages people use:
the signup page and the tenant area.
"""

import pytest
from django.core.cache import cache

from tenants.models import SignupRequest, TenantRole, TenantUser
from tenants.services import identity as svc
from tenants.services.subscriptions import subscription_create
from tenants.tests.factories import TenantFactory, import_sample_plans

PASSWORD = "Corr3ct-horse"
LONG_EMAIL = "a" * 280 + "@acme.example"  # 293 characters
# 254 characters, the longest address the database (and RFC 5321) takes: 64 @ 63.63.53.example
LONGEST_EMAIL = "a" * 64 + "@" + "b" * 63 + "." + "c" * 63 + "." + "d" * 53 + ".example"


@pytest.fixture
def plans(db, local_identity):
    cache.clear()  # the signup rate limit
    yield import_sample_plans()
    cache.clear()


def signup_form(plans, **changes):
    return {"company": "Acme Corp", "slug": "", "email": "ann@acme.example", "password": PASSWORD,
            "plan": plans["pro"].pk, **changes}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"email": LONG_EMAIL}, "Ensure this value has at most 254 characters (it has 293)."),
        ({"company": "C" * 201}, "Ensure this value has at most 200 characters (it has 201)."),
        ({"slug": "s" * 64}, "Ensure this value has at most 63 characters (it has 64)."),
        ({"password": "Aa1!" * 65}, "Ensure this value has at most 256 characters (it has 260)."),
        ({"company": "Acme\u0000"}, "Null characters are not allowed."),
    ],
    ids=["email", "company", "slug", "password", "nul"],
)
def test_signup_refuses_a_field_out_of_bounds_on_the_form(client, plans, changes, message):
    response = client.post("/signup/", signup_form(plans, **changes))
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not SignupRequest.objects.exists()


def test_signup_takes_the_longest_email_the_database_takes(client, plans, mailoutbox):
    assert len(LONGEST_EMAIL) == 254
    response = client.post("/signup/", signup_form(plans, email=LONGEST_EMAIL))
    assert response.status_code == 302, response.content.decode()[:3000]
    assert SignupRequest.objects.get().email == LONGEST_EMAIL


@pytest.fixture
def owner(db, local_identity):
    versions = import_sample_plans()
    tenant = TenantFactory(slug="acme", name="Acme Corp")
    subscription_create(tenant=tenant, plan_version=versions["pro"])
    owner, _ = svc.tenant_user_create(tenant=tenant, email="ann@acme.example", role=TenantRole.OWNER, password=PASSWORD)
    return owner


def test_the_tenant_area_refuses_an_invite_email_too_long(client, owner):
    client.force_login(owner.user)
    response = client.post("/tenant/users/", {"email": LONG_EMAIL})
    assert response.status_code == 200
    assert "Ensure this value has at most 254 characters (it has 293)." in response.content.decode()
    assert TenantUser.objects.count() == 1


def test_the_tenant_area_refuses_a_password_too_long(client, owner):
    client.force_login(owner.user)
    form = {"current_password": "x" * 300, "new_password": "Aa1!" * 65, "confirm_password": "y"}
    response = client.post("/tenant/password/", form)
    assert response.status_code == 200
    assert "Ensure this value has at most 256 characters" in response.content.decode()
