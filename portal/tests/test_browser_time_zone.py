"""In Chromium: staff pick a tenant's time zone in the admin, and its owner's dashboard then shows the current
billing period from midnight on the 1st on that clock, with its offsets (docs/plans.md, "Time zones")."""

import re
from datetime import datetime
from zoneinfo import ZoneInfo

from django.contrib.auth import get_user_model

from portal.tests.test_browser import (  # noqa: F401  (fixtures)
    ARTIFACTS,
    PASSWORD,
    _sign_in_tenant_owner,
    browser_page,
    portal_env,
    pytestmark,
    staff_signed_in,
)
from tenants.models import Tenant


def test_staff_set_a_time_zone_and_the_owner_sees_local_periods(live_server, transactional_db, browser_page,  # noqa: F811
                                                                 portal_env):  # noqa: F811
    page = browser_page
    tenant = _sign_in_tenant_owner(page, live_server, slug="gotham")
    assert "(UTC time, end exclusive)" in page.goto(f"{live_server.url}/tenant/dashboard/").text()

    get_user_model().objects.create_superuser("boss", "boss@provider.example", PASSWORD)
    staff = page.context.browser.new_context().new_page()
    staff_signed_in(staff, live_server)
    staff.goto(f"{live_server.url}/admin/tenants/tenant/{tenant.pk}/change/")
    # The subscription started 40 days ago: its first period has ended, so the zone is fixed now...
    staff.select_option("#id_time_zone", "America/New_York")
    staff.click("input[name=_save]")
    assert "The time zone of gotham is fixed" in staff.inner_text(".errorlist")
    # ... and a new tenant takes one when it is added.
    staff.goto(f"{live_server.url}/admin/tenants/tenant/add/")
    staff.fill("#id_slug", "metropolis")
    staff.fill("#id_name", "Metropolis")
    staff.fill("#id_contact_email", "billing@metropolis.example")
    staff.select_option("#id_time_zone", "America/New_York")
    staff.click("input[name=_save]")
    staff.wait_for_url(re.compile(r"/admin/tenants/tenant/$"))
    assert Tenant.objects.get(slug="metropolis").time_zone == "America/New_York"

    # The owner's tenant moved to New York before its first period ended (as the service allows then).
    Tenant.objects.filter(pk=tenant.pk).update(time_zone="America/New_York")
    page.goto(f"{live_server.url}/tenant/dashboard/")
    moments = page.eval_on_selector_all("#billing-period time", "els => els.map(e => e.getAttribute('datetime'))")
    assert len(moments) == 2
    new_york = ZoneInfo("America/New_York")
    for moment in map(datetime.fromisoformat, moments):
        assert re.search(r"-0[45]:00$", moment.isoformat()) and moment.utcoffset() == moment.astimezone(new_york).utcoffset()
        assert (moment.day, moment.hour, moment.minute) == (1, 0, 0)
    assert "America/New_York time, end exclusive" in page.inner_text("body")
    page.screenshot(path=str(ARTIFACTS / "tenant-dashboard-new-york.png"), full_page=True)
    assert page.errors == []
