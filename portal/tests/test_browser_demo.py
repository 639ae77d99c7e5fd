"""What `make demo` shows, in Chromium: on the demo's own data (load_demo --with-traffic, as `make demo` runs
it), the provider dashboard's default range is drawn non-empty with the pipeline "ok", Admin -> Periodic tasks
lists the beat schedules, and a printed demo tenant login opens a dashboard with this month's usage and a
projected bill. Screenshots go to artifacts/demo-*.png.
"""

import re
from datetime import timedelta
from decimal import Decimal
from io import StringIO

from django.core.management import call_command
from django.utils import timezone

from portal.schedules import DEFAULT_SCHEDULES
from portal.tests.test_browser import ARTIFACTS, BROWSER, CHROMIUM, browser_page, drawn_charts, portal_env  # noqa: F401

pytestmark = BROWSER


def test_the_demo_in_a_browser(live_server, transactional_db, browser_page, portal_env):  # noqa: F811
    from metering.services.demo import last_month

    portal_env.DASHBOARD_CACHE_SECONDS = 0
    out = StringIO()
    call_command("load_demo", "--with-traffic", stdout=out)
    out = out.getvalue()
    admin_password = re.search(r"^admin login created: admin / (\S+)$", out, re.M).group(1)
    email, password = re.search(r"^tenant login created \(acme\): (\S+) / (\S+)$", out, re.M).groups()
    page = browser_page

    # The provider dashboard, default range (the last 30 days): every chart has data, the pipeline is ok.
    page.goto(f"{live_server.url}/admin/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", admin_password)
    page.click("input[type=submit]")
    page.click("text=Dashboard")
    page.wait_for_url(re.compile(r"/admin/dashboard/$"))
    charts = drawn_charts(page)
    assert {"usage-api_calls-data", "usage-data_out_mb-data", "usage-active_ips-data", "revenue-data",
            "invoices-data"} <= {c["id"] for c in charts}
    # "Invoices by state" counts invoices whose period overlaps the range: on a month's last day or two, the
    # last 30 days no longer reach into last month, the demo's one billed period.
    range_start = timezone.now().date() - timedelta(days=29)
    for chart in charts:
        if chart["id"] != "invoices-data" or range_start < last_month()[1].date():
            assert chart["sum"] > 0 and chart["width"] > 0, f"{chart['id']} is drawn empty"
    state = page.inner_text("#pipeline .dash-state")
    page.screenshot(path=str(ARTIFACTS / "demo-provider-dashboard.png"), full_page=True)
    assert state == "ok", page.inner_text("#pipeline")

    # Admin -> Periodic tasks: the beat schedules, enabled.
    page.goto(f"{live_server.url}/admin/")
    page.click("a[href$='/django_celery_beat/periodictask/']")
    page.wait_for_url(re.compile(r"/periodictask/$"))
    listed = page.inner_text("#result_list")
    page.screenshot(path=str(ARTIFACTS / "demo-periodic-tasks.png"), full_page=True)
    for name in DEFAULT_SCHEDULES:
        row = page.locator("#result_list tbody tr", has_text=name)
        assert row.count() == 1, f"{name!r} is not listed:\n{listed}"
        assert row.locator("img[alt=True]").count() == 1, f"{name!r} is not enabled"

    # A demo tenant signs in with the printed login and sees this month's usage and its projected bill.
    page.context.clear_cookies()
    page.goto(f"{live_server.url}/tenant/")
    page.fill("#id_username", email)
    page.fill("#id_password", password)
    page.click("[type=submit]")
    page.wait_for_url(re.compile(r"/tenant/$"))
    page.click("text=Dashboard")
    page.wait_for_url(re.compile(r"/tenant/dashboard/"))
    charts = drawn_charts(page)
    calls = int(re.sub(r"\D", "", page.inner_text('[data-metric="api_calls"]')))
    total = page.inner_text("#projected-total")
    page.screenshot(path=str(ARTIFACTS / "demo-tenant-dashboard.png"), full_page=True)
    if timezone.now() - last_month()[1] > timedelta(hours=3):  # a month's first hours may hold no record yet
        assert calls > 0, "this month's usage is on the tenant's dashboard"
        assert next(c for c in charts if c["id"] == "tenant-usage-api_calls-data")["sum"] > 0
    assert "API calls (" in page.inner_text("#projected-bill")
    assert total.startswith("USD ") and Decimal(total.split()[1].replace(",", "")) > 0
    assert page.errors == []
