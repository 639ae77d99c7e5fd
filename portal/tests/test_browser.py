"""The dashboards in a real browser: Debian's Chromium driven by Playwright against Django's live server.

Skipped, with the reason, where /usr/bin/chromium is missing (a laptop); .ci/run installs it. Screenshots
go to artifacts/ (git-ignored).
"""

import os
import re
import shutil
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import requests
from django.core import mail
from django.core.cache import cache
from django.utils import timezone

# Playwright's sync API runs an event loop in this thread; the ORM calls the test makes between
# browser steps are still plain synchronous calls, so tell Django not to refuse them.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync"]
PASSWORD = "Corr3ct-Horse-Battery!"

# Every browser test module's marks: `pytestmark = BROWSER`.
BROWSER = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not (os.access(CHROMIUM, os.X_OK) and shutil.which(CHROMIUM)),
                       reason=f"needs Debian's Chromium at {CHROMIUM} (apt-get install chromium; .ci/run installs it)"),
]
pytestmark = BROWSER


@pytest.fixture
def browser_page():
    """A Chromium page that records console errors and uncaught exceptions."""
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.errors = []

        def on_console(msg):
            # The browser's own favicon request is no page's doing (the portal has no favicon yet).
            if msg.type == "error" and not (msg.location or {}).get("url", "").endswith("/favicon.ico"):
                page.errors.append(f"console {msg.type}: {msg.text} at {msg.location}")

        page.on("console", on_console)
        page.on("pageerror", lambda exc: page.errors.append(f"page error: {exc}"))
        page.set_default_timeout(15_000)
        try:
            yield page
        finally:
            browser.close()
            # While Playwright's loop runs, the ORM sees another context and opens its own connections:
            # close them here, or the test database cannot be dropped at the end.
            from django.db import connections

            connections.close_all()


@pytest.fixture
def portal_env(settings, tmp_path):
    """The local identity and a private local lake whose sink writes each record at once."""
    from metering import sink
    from tenants.identity import tokens

    settings.IDENTITY_BACKEND = "local"
    settings.VAR_DIR = tmp_path
    settings.LAKE_BACKEND = "local"
    settings.LAKE_WAREHOUSE_DIR = str(tmp_path / "lake")
    settings.LAKE_SINK_MAX_RECORDS = 1
    settings.USAGE_SYNC_RETRY_DELAY = 0
    settings.METERED_API_AUTHENTICATION = ["tenants.identity.authentication.TokenAuthentication"]
    settings.DEBUG = False
    tokens.clear_jwks_cache()
    sink.reset_sink()
    cache.clear()  # the signup rate limit and the dashboard's cache
    yield settings
    sink.reset_sink()
    tokens.clear_jwks_cache()


def staff_signed_in(page, live_server):
    """The page, signed in to the admin as the superuser "boss" (the test made it)."""
    page.goto(f"{live_server.url}/admin/")
    page.fill("#id_username", "boss")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    return page


def drawn_charts(page) -> list[dict]:
    """Every chart on the page as Chart.js holds it: how many datasets and the sum of their values."""
    page.wait_for_function("document.querySelectorAll('canvas[data-chart]').length > 0 && "
                           "[...document.querySelectorAll('canvas[data-chart]')].every(c => c.dataset.drawn)")
    return page.evaluate("""() => [...document.querySelectorAll('canvas[data-chart]')].map(c => {
        const chart = Chart.getChart(c);
        const values = chart.data.datasets.flatMap(d => d.data);
        return {id: c.dataset.chart, datasets: chart.data.datasets.length, points: values.length,
                sum: values.reduce((a, b) => a + b, 0), width: c.width, height: c.height};
    })""")


def test_staff_sees_the_provider_dashboard_drawn(live_server, transactional_db, browser_page, portal_env,
                                                  django_user_model):
    from metering.lake import get_lake
    from portal.dashboards import sample
    from tenants.tests.factories import import_sample_plans

    plans = import_sample_plans()
    metrics = sample.sample_metrics()
    tenants = sample.seed_tenants(count=8, plan_versions=[plans["pro"], plans["starter"]],
                                  started_at=timezone.now() - timedelta(days=120))
    today = timezone.now().date()
    sample.seed_hourly_usage(tenants=tenants, metrics=metrics, end=today, days=14, lake=get_lake())
    months = [(today.replace(day=1) - timedelta(days=31 * i)).replace(day=1) for i in (3, 2, 1, 0)]
    sample.seed_invoices(tenants=tenants, months=months)
    sample.seed_pipeline(now=timezone.now(), metric=metrics[0])
    django_user_model.objects.create_superuser("boss", "boss@example.com", PASSWORD)

    page = staff_signed_in(browser_page, live_server)
    page.click("text=Dashboard")
    page.wait_for_url(re.compile(r"/admin/dashboard/"))
    charts = drawn_charts(page)
    ids = {c["id"] for c in charts}
    assert {"usage-api_calls-data", "usage-data_out_mb-data", "usage-active_ips-data", "revenue-data",
            "invoices-data"} <= ids
    for chart in charts:
        assert chart["datasets"] >= 1 and chart["points"] > 0 and chart["width"] > 0 and chart["height"] > 0
        assert chart["sum"] > 0, f"{chart['id']} is drawn empty"
    usage = next(c for c in charts if c["id"] == "usage-api_calls-data")
    assert usage["datasets"] == 6  # the top five tenants and "Other tenants"
    # The figures are on the page as text too.
    page.click("#usage-api_calls summary")
    assert page.locator("#usage-api_calls table tbody tr").count() == 30
    # A distinct count's days do not add up, and the page says so in words, with what its figure is.
    ips = page.locator("section.dash-card", has=page.locator("#usage-active_ips")).inner_text()
    assert "days do not add up" in ips and "Distinct values in range, each tenant's added up" in ips
    assert "Usage pipeline" in page.inner_text("#pipeline")
    page.screenshot(path=str(ARTIFACTS / "provider-dashboard.png"), full_page=True)
    # The tenant filter.
    page.select_option("#id_tenant", tenants[3].slug)
    page.click("text=Apply")
    page.wait_for_url(re.compile(rf"tenant={tenants[3].slug}"))
    charts = drawn_charts(page)
    assert next(c for c in charts if c["id"] == "usage-api_calls-data")["datasets"] == 1
    assert page.errors == []


def test_a_new_tenant_sees_its_usage_on_its_dashboard(live_server, transactional_db, browser_page, portal_env):
    from metering import sink
    from metering.models import HourlyUsage, SyncOutcome
    from metering.services.sync import floor_hour, usage_sync
    from tenants.models import Plan, Tenant
    from tenants.tests.factories import import_sample_plans

    import_sample_plans()
    starter = Plan.objects.get(code="starter").current_version
    page = browser_page

    # Sign up through the self-service pages; the code arrives by (test) email.
    page.goto(f"{live_server.url}/signup/")
    page.fill("#id_company", "Dash Corp")
    page.fill("#id_slug", "dash-corp")
    page.fill("#id_email", "ann@dash.example")
    page.fill("#id_password", PASSWORD)
    page.select_option("#id_plan", str(starter.pk))
    page.click("button:has-text('Sign up')")
    page.wait_for_url(re.compile(r"/signup/verify/"))
    code = re.search(r"\b(\d{6})\b", mail.outbox[-1].body).group(1)
    page.fill("#id_code", code)
    page.click("button[type=submit]:not([value=resend])")
    page.wait_for_url(re.compile(r"/tenant/"))
    tenant = Tenant.objects.get(slug="dash-corp")

    # A token from the tenant area, then the metered demo API, as the sample's client calls it.
    page.goto(f"{live_server.url}/tenant/token/")
    page.click("button:has-text('Get a fresh token')")
    token = page.input_value("#token").strip()
    assert token
    calls = 5
    for i in range(calls):
        response = requests.get(f"{live_server.url}/demo-api/random/strings", params={"len": 4 + i, "num": 2},
                                headers={"Authorization": token}, timeout=10)
        assert response.status_code == 200, response.text
    sink.get_sink().flush()

    # The usage sync moves it from the lake into hourly rows.
    now = timezone.now()
    run = usage_sync(start=floor_hour(now) - timedelta(hours=1), end=floor_hour(now) + timedelta(hours=1))
    assert run.outcome == SyncOutcome.SUCCEEDED, run.error
    assert sum(r.value for r in HourlyUsage.objects.filter(tenant=tenant, metric__code="api_calls")) == calls

    page.goto(f"{live_server.url}/tenant/")
    page.click("text=Dashboard")
    page.wait_for_url(re.compile(r"/tenant/dashboard/"))
    assert page.inner_text('[data-metric="api_calls"]') == str(calls)
    charts = drawn_charts(page)
    usage = next(c for c in charts if c["id"] == "tenant-usage-api_calls-data")
    assert usage["sum"] == calls and usage["points"] == 30
    # The projected bill has its usage line, named as on invoices (its quantity is 0 while the trial runs: trial usage is free).
    bill = page.inner_text("#projected-bill")
    assert "API calls (" in bill and page.inner_text("#projected-total").startswith("USD ")
    assert Decimal(page.inner_text("#projected-total").split()[1]) >= 0
    page.screenshot(path=str(ARTIFACTS / "tenant-dashboard.png"), full_page=True)
    assert page.errors == []


def _sign_in_tenant_owner(page, live_server, slug="acme"):
    """A tenant with an owner who signs in through the login page (the sample plans' Pro plan)."""
    from tenants.models import Plan, TenantRole
    from tenants.services import identity as identity_services
    from tenants.services.subscriptions import subscription_create
    from tenants.tests.factories import TenantFactory, import_sample_plans

    import_sample_plans()
    tenant = TenantFactory(slug=slug, name=f"{slug.title()} Corp")
    subscription_create(tenant=tenant, plan_version=Plan.objects.get(code="pro").current_version,
                        started_at=timezone.now() - timedelta(days=40), with_trial=False)
    identity_services.tenant_user_create(tenant=tenant, email=f"owner@{slug}.example", role=TenantRole.OWNER,
                                         password=PASSWORD)
    page.goto(f"{live_server.url}/account/login/")
    page.fill("#id_username", f"owner@{slug}.example")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/tenant/"))
    return tenant


def test_the_curl_line_wraps_on_a_phone_and_its_button_copies_it(live_server, transactional_db, browser_page,
                                                                portal_env):
    page = browser_page
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    _sign_in_tenant_owner(page, live_server)
    page.set_viewport_size({"width": 360, "height": 800})
    page.click("text=API token")
    page.click("button:has-text('Get a fresh token')")
    curl = page.inner_text("#curl").strip()
    assert curl.startswith("curl ") and len(curl) > 500  # a JWT: one long word with nothing to break at
    # Nothing sticks out of a 360-pixel-wide screen: the page does not scroll sideways, the line wraps.
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    box = page.locator("#curl").bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= 360 and box["height"] > 200
    page.click("button[data-copy=curl]")
    page.wait_for_function("document.getElementById('curl-status').textContent.length > 0")
    assert page.inner_text("#curl-status") == "Copied."
    assert page.evaluate("navigator.clipboard.readText()") == curl
    page.click("button[data-copy=token]")
    assert page.evaluate("navigator.clipboard.readText()") == page.input_value("#token").strip()
    page.screenshot(path=str(ARTIFACTS / "tenant-token-narrow.png"), full_page=True)
    # The tenant area looks like the rest of the portal: the same header colour as the home page.
    header = page.evaluate("getComputedStyle(document.querySelector('header')).backgroundColor")
    page.goto(f"{live_server.url}/")
    assert page.evaluate("getComputedStyle(document.querySelector('header')).backgroundColor") == header
    assert page.errors == []


def test_the_revenue_chart_draws_one_dataset_per_currency(live_server, transactional_db, browser_page, portal_env,
                                                          django_user_model):
    from portal.dashboards import sample
    from tenants.services.plans import plan_save
    from tenants.tests.factories import import_sample_plans

    plans = import_sample_plans()
    euro, _ = plan_save(document={"code": "euro", "name": "Euro", "currency": "EUR", "interval": "month",
                                  "base_fee": "500"})
    started = timezone.now() - timedelta(days=120)
    today = timezone.now().date()
    months = [(today.replace(day=1) - timedelta(days=31 * i)).replace(day=1) for i in (3, 2, 1, 0)]
    usd = sample.seed_tenants(count=3, plan_versions=[plans["pro"], plans["starter"]], started_at=started)
    eur = sample.seed_tenants(count=2, plan_versions=[euro], started_at=started, prefix="eu")
    sample.seed_invoices(tenants=usd, months=months)
    sample.seed_invoices(tenants=eur, months=months, total=Decimal("1000.00"))
    django_user_model.objects.create_superuser("boss", "boss@example.com", PASSWORD)

    page = staff_signed_in(browser_page, live_server)
    page.goto(f"{live_server.url}/admin/dashboard/")
    drawn_charts(page)
    revenue = page.evaluate("""() => {
        const chart = Chart.getChart(document.querySelector('canvas[data-chart="revenue-data"]'));
        return {datasets: chart.data.datasets.map(d => ({label: d.label, axis: d.yAxisID,
                                                         sum: d.data.reduce((a, b) => a + b, 0)})),
                stacked: !!chart.options.scales.x.stacked,
                axes: Object.keys(chart.options.scales).filter(k => k !== 'x').map(k => chart.scales[k].options.title.text)};
    }""")
    assert [d["label"] for d in revenue["datasets"]] == ["EUR", "USD"]  # one dataset per currency, never mixed
    assert revenue["datasets"][0]["axis"] != revenue["datasets"][1]["axis"] and not revenue["stacked"]
    assert sorted(revenue["axes"]) == ["EUR", "USD"]
    # 2 EUR tenants x 3 billed months at 1000, 1001; 3 USD tenants at 100, 101, 102.
    assert revenue["datasets"][0]["sum"] == 3 * (1000 + 1001)
    assert revenue["datasets"][1]["sum"] == 3 * (100 + 101 + 102)
    page.locator("#revenue-card").screenshot(path=str(ARTIFACTS / "revenue-by-currency.png"))
    assert page.errors == []


def test_the_revenue_page_draws_mrr_per_currency_with_its_figures(live_server, transactional_db, browser_page,
                                                                    portal_env, django_user_model):
    from portal.dashboards import sample
    from tenants.services.plans import plan_save
    from tenants.tests.factories import import_sample_plans

    plans = import_sample_plans()
    euro, _ = plan_save(document={"code": "euro", "name": "Euro", "currency": "EUR", "interval": "month",
                                  "base_fee": "500"})
    started = timezone.now() - timedelta(days=120)
    today = timezone.now().date()
    months = [(today.replace(day=1) - timedelta(days=31 * i)).replace(day=1) for i in (3, 2, 1, 0)]
    sample.seed_invoices(tenants=sample.seed_tenants(count=3, plan_versions=[plans["pro"]], started_at=started),
                         months=months)
    sample.seed_invoices(tenants=sample.seed_tenants(count=2, plan_versions=[euro], started_at=started, prefix="eu"),
                         months=months, total=Decimal("1000.00"))
    django_user_model.objects.create_superuser("boss", "boss@example.com", PASSWORD)

    page = staff_signed_in(browser_page, live_server)
    page.goto(f"{live_server.url}/admin/dashboard/")
    page.click("text=MRR, ARR, revenue by plan")
    page.wait_for_url(re.compile(r"/admin/revenue/"))
    charts = {c["id"]: c for c in drawn_charts(page)}
    assert set(charts) == {"mrr-eur-data", "mrr-usd-data"}  # one chart per currency, never mixed
    assert all(c["datasets"] == 2 and c["sum"] > 0 for c in charts.values())
    # The figures beside the charts: 3 pro tenants at 49.00 and 2 euro tenants at 500.00 a month, no usage lines.
    assert page.inner_text("#revenue-usd .mrr") == "147.00 USD" and page.inner_text("#revenue-eur .mrr") == "1000.00 EUR"
    assert page.inner_text("#revenue-usd .arr") == "1764.00 USD"
    assert page.locator("#revenue-usd table:has(caption:has-text('By month')) tbody tr").count() == 12
    assert "Net revenue retention (NRR)" in page.inner_text("#revenue-definitions")
    page.screenshot(path=str(ARTIFACTS / "revenue-page.png"), full_page=True)
    assert page.errors == []
