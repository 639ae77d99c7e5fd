"""The plan builder in Chromium: a graduated charge with three tiers added by the page's buttons, simulated with
its tier breakdown, saved, and seen as the plan's new version (skipped without /usr/bin/chromium)."""

import re

from portal.tests.test_browser import (  # noqa: F401  (fixtures)
    ARTIFACTS,
    BROWSER,
    CHROMIUM,
    PASSWORD,
    browser_page,
    portal_env,
    staff_signed_in,
)

pytestmark = BROWSER


def test_build_a_graduated_charge_simulate_save_and_see_the_new_version(  # noqa: F811
        live_server, transactional_db, browser_page, portal_env, django_user_model):  # noqa: F811
    from datetime import UTC, datetime

    from tenants.models import Plan
    from tenants.services.subscriptions import subscription_create
    from tenants.tests.factories import TenantFactory, import_sample_plans

    versions = import_sample_plans()
    subscription_create(tenant=TenantFactory(slug="acme"), plan_version=versions["starter"],
                        started_at=datetime(2026, 10, 1, tzinfo=UTC))
    django_user_model.objects.create_superuser("boss", "boss@example.com", PASSWORD)

    page = staff_signed_in(browser_page, live_server)
    page.goto(f"{live_server.url}/admin/tenants/plan/{Plan.objects.get(code='starter').pk}/change/")
    page.click("text=Plan builder and simulator")
    page.wait_for_url(re.compile(r"/admin/plans/starter/builder/"))
    assert page.locator(".pb-charge").count() == 1  # starter: api_calls per unit

    # A second charge: data_out_mb, graduated, three tiers.
    page.click("#pb-add-charge")
    charge = page.locator(".pb-charge").nth(1)
    charge.locator("select[name$='-metric']").select_option("data_out_mb")
    charge.locator("select[name$='-model']").select_option("graduated")
    assert charge.locator(".pb-model[data-models='per_unit']").is_hidden()
    for _ in range(4):
        charge.locator(".pb-add-tier").click()
    charge.locator(".pb-remove-tier").nth(3).click()  # one too many: removed again
    rows = charge.locator(".pb-tier:visible")
    assert rows.count() == 3
    for index, (up_to, unit, flat) in enumerate([("100", "0", ""), ("1000", "0.10", "2.00"), ("", "0.05", "")]):
        rows.nth(index).locator("input[name$='-up_to']").fill(up_to)
        rows.nth(index).locator("input[name$='-unit_amount']").fill(unit)
        rows.nth(index).locator("input[name$='-flat_amount']").fill(flat)

    # A second tier below the first: the page comes back with the message on that tier, the rows kept.
    rows.nth(1).locator("input[name$='-up_to']").fill("50")
    page.fill("#id_q-api_calls", "2000")
    page.fill("#id_q-data_out_mb", "1500")
    page.click("#pb-simulate")
    page.wait_for_selector(".pb-tier .pb-errors")
    charge = page.locator(".pb-charge").nth(1)
    rows = charge.locator(".pb-tier:visible")
    assert rows.count() == 3 and page.locator("#pb-bills").count() == 0 and page.locator("#pb-has-errors").is_visible()
    assert rows.nth(1).locator(".pb-errors").inner_text() == "must be greater than the previous tier's up_to (100)"
    assert charge.locator(".pb-model[data-models='per_unit']").is_hidden()  # the script runs on the page again
    page.screenshot(path=str(ARTIFACTS / "plan-builder-error.png"), full_page=True)
    rows.nth(1).locator("input[name$='-up_to']").fill("1000")
    page.click("#pb-simulate")
    page.wait_for_selector("#pb-bills")
    saved_bill, form_bill = page.locator(".pb-bill").first, page.locator(".pb-bill").nth(1)
    # 100 MB free, 900 at 0.10 + 2.00, 500 at 0.05: 0.00 + 92.00 + 25.00; api_calls 2000 x 0.001 = 2.00.
    assert form_bill.locator(".pb-line[data-metric='data_out_mb'] .pb-amount").inner_text() == "117.00"
    assert form_bill.locator(".pb-tier-amount").all_inner_texts() == ["0.00", "92.00", "25.00"]
    assert form_bill.locator(".pb-total").inner_text() == "119.00"
    assert saved_bill.locator(".pb-total").inner_text() == "2.00"  # the saved version beside it, same quantities
    assert form_bill.locator(".pb-difference").inner_text() == "+117.00"
    page.screenshot(path=str(ARTIFACTS / "plan-builder-simulated.png"), full_page=True)

    page.click("#pb-save")
    page.wait_for_url(re.compile(r"/admin/plans/starter/versions/"))
    assert "new version 2" in page.inner_text(".messagelist")
    assert page.locator("#pb-versions tbody tr").count() == 2
    assert page.inner_text("#pb-versions tr[data-version='2'] .pb-subscribers") == "0"
    assert page.inner_text("#pb-versions tr[data-version='1'] .pb-subscribers") == "1"  # acme keeps version 1
    tiers = Plan.objects.get(code="starter").current_version.document["charges"][1]["tiers"]
    assert tiers == [{"up_to": 100, "unit_amount": "0"}, {"up_to": 1000, "unit_amount": "0.10", "flat_amount": "2.00"},
                     {"up_to": None, "unit_amount": "0.05"}]

    # Move acme to the new version, after seeing its next invoice both ways.
    page.check("#pb-subscriptions input[type=checkbox]")
    page.select_option("#id_to_version", "2")
    page.click("#pb-preview")
    page.wait_for_selector(".pb-preview[data-tenant='acme']")
    page.click("#pb-confirm")
    page.wait_for_url(re.compile(r"/admin/plans/starter/versions/$"))
    assert page.inner_text("#pb-versions tr[data-version='2'] .pb-subscribers") == "1"
    page.screenshot(path=str(ARTIFACTS / "plan-versions.png"), full_page=True)
    assert page.errors == []
