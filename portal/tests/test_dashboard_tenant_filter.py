"""The provider dashboard's tenant filter with many tenants: the slug is typed, not chosen from a list of all."""

import pytest

from portal.dashboards import forms
from tenants.tests.factories import TenantFactory

URL = "/admin/dashboard/"


@pytest.fixture
def staff_client(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("boss", "boss@example.com", "Corr3ct-Horse-B4ttery!"))
    return client


def test_beyond_the_limit_the_tenant_is_typed(staff_client, db, monkeypatch):
    monkeypatch.setattr(forms, "TENANT_SELECT_MAX", 2)
    for slug in ("acme", "globex", "initech"):
        TenantFactory(slug=slug)
    html = staff_client.get(URL).content.decode()
    assert '<input type="text" name="tenant" id="id_tenant" value=""' in html and "<option" not in html

    chosen = staff_client.get(URL, {"tenant": " globex "}).content.decode()
    assert 'id="id_tenant" value="globex"' in chosen and "No tenant has" not in chosen

    unknown = staff_client.get(URL, {"tenant": "nobody"})
    assert unknown.status_code == 200
    assert "No tenant has the slug &#x27;nobody&#x27;." in unknown.content.decode()


def test_up_to_the_limit_they_are_listed(staff_client, db):
    TenantFactory(slug="acme")
    html = staff_client.get(URL).content.decode()
    assert '<select name="tenant" id="id_tenant">' in html and '<option value="acme"' in html
