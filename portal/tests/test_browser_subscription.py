"""A tenant's owner manages the subscription in Chromium: preview, upgrade, downgrade, withdraw, cancel and undo;
two browsers that submit the same change make one change. (Fixtures and launch arguments: test_browser.py.)"""

import os
import re

from portal.tests.test_browser import (  # noqa: F401  (fixtures)
    ARTIFACTS,
    BROWSER,
    CHROMIUM,
    PASSWORD,
    _sign_in_tenant_owner,
    browser_page,
    portal_env,
)

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

pytestmark = BROWSER

BUSINESS = {"code": "business", "name": "Business", "currency": "USD", "interval": "month", "base_fee": "99.00",
            "charges": [{"metric": "api_calls", "model": "per_unit", "unit_amount": "0.0001"}]}


def _status(page) -> str:
    return page.inner_text("ul.messages")


def test_the_owner_upgrades_downgrades_cancels_and_undoes(live_server, transactional_db, browser_page,  # noqa: F811
                                                          portal_env):  # noqa: F811
    from tenants.models import SubscriptionChange, SubscriptionRequest
    from tenants.services.plans import plans_import

    page = browser_page
    tenant = _sign_in_tenant_owner(page, live_server)
    plans_import(document=BUSINESS)
    page.click("nav >> text=Subscription")
    page.wait_for_url(re.compile(r"/tenant/subscription/"))
    assert page.inner_text("#current-plan-name") == "Pro"

    # Preview: the first invoice on Business (an upgrade: this period, in two parts).
    page.click("#offer-business >> text=Preview")
    assert "On Business: your next invoice" in page.inner_text("#preview")
    assert page.inner_text("#preview-total").startswith("USD ")

    # A second browser of the same owner on the same page: the upgrade in one, the same upgrade in the stale other.
    other = page.context.browser.new_page()
    other.goto(f"{live_server.url}/account/login/")
    other.fill("#id_username", "owner@acme.example")
    other.fill("#id_password", PASSWORD)
    other.click("button[type=submit]")
    other.wait_for_url(re.compile(r"/tenant/"))
    other.goto(page.url)
    page.click("button[aria-label='Upgrade to Business']")
    assert "You are now on Business." in _status(page)
    assert page.inner_text("#current-plan-name") == "Business"
    other.click("button[aria-label='Upgrade to Business']")
    assert "You are already on Business." in _status(other)
    assert SubscriptionChange.objects.filter(subscription__tenant=tenant).count() == 1

    # Downgrade (from the next period), in both tabs: one scheduled request.
    other.goto(page.url.split("?")[0])
    page.click("button[aria-label='Downgrade to Pro']")
    assert "Your plan changes to Pro at" in _status(page)
    assert "Scheduled: your plan changes to Pro" in page.inner_text("#waiting")
    assert page.inner_text("#current-plan-name") == "Business", "still on Business this period"
    other.click("button[aria-label='Downgrade to Pro']")
    assert SubscriptionRequest.objects.filter(subscription__tenant=tenant, status="scheduled").count() == 1
    page.screenshot(path=str(ARTIFACTS / "tenant-subscription-downgrade.png"), full_page=True)
    page.click("#withdraw")
    assert "The move to Pro is withdrawn." in _status(page)
    assert page.locator("#waiting").count() == 0

    # Cancel at the period's end, then undo.
    page.click("#cancel-subscription")
    assert "Your subscription ends at" in _status(page)
    assert "Cancelled at the end of this period" in page.inner_text("#waiting")
    page.click("#withdraw")
    assert "The cancellation is undone" in _status(page)
    history = page.inner_text("#history")
    assert history.count("Withdrawn") == 2 and "Applied" in history
    page.screenshot(path=str(ARTIFACTS / "tenant-subscription-history.png"), full_page=True)
    assert page.errors == []
