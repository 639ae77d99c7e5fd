"""Signup takes an optional time zone (docs/plans.md, "Time zones"): the tenant is provisioned in it, UTC when
none is chosen, and an unknown name is a form error."""

import pytest

from tenants.models import SignupRequest, Tenant
from tenants.tests.test_signup import _form, _sign_up, on_commit, plans  # noqa: F401


@pytest.mark.usefixtures("local_identity", "on_commit")
def test_a_signup_in_a_time_zone_makes_a_tenant_in_it(client, plans, mailoutbox):  # noqa: F811
    page = client.get("/signup/").content.decode()
    assert '<option value="" selected>UTC (default)</option>' in page and '<option value="Asia/Tokyo">' in page
    code = _sign_up(client, plans, mailoutbox, time_zone="Asia/Tokyo")
    assert SignupRequest.objects.get().time_zone == "Asia/Tokyo"
    assert client.post("/signup/verify/", {"code": code}).status_code == 302
    assert Tenant.objects.get(slug="acme-corp").time_zone == "Asia/Tokyo"


@pytest.mark.usefixtures("local_identity", "on_commit")
def test_a_signup_without_a_time_zone_is_utc_and_an_unknown_one_is_refused(client, plans, mailoutbox):  # noqa: F811
    refused = client.post("/signup/", _form(plans, time_zone="Mars/Olympus_Mons"))
    assert refused.status_code == 200 and "Select a valid choice" in refused.content.decode()
    assert not SignupRequest.objects.exists()
    code = _sign_up(client, plans, mailoutbox)  # the form as before: no time_zone field sent
    client.post("/signup/verify/", {"code": code})
    assert Tenant.objects.get(slug="acme-corp").time_zone == "UTC"
