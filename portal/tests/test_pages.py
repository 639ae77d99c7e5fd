"""The home page and the health check; a signed-in tenant user lands in the tenant area."""

import pytest

from tenants.models import TenantUser
from tenants.tests.factories import TenantFactory

pytestmark = pytest.mark.django_db


def test_home_and_health(client):
    assert client.get("/").status_code == 200
    assert client.get("/healthz").json() == {"status": "ok"}


def test_tenant_user_lands_in_the_tenant_area(client, django_user_model):
    user = django_user_model.objects.create_user("owner@acme.example", "owner@acme.example", "pw-for-tests-1")
    TenantUser.objects.create(tenant=TenantFactory(slug="acme"), username="u-1", email=user.email, user=user)
    client.force_login(user)
    response = client.get("/")
    assert response.status_code == 302 and response["Location"] == "/tenant/"
