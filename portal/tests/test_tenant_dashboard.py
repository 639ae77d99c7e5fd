"""The tenant's dashboard: its own usage against the plan's tiers, the projected bill, its invoices, nobody else's."""

import json
import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from metering.models import HourlyUsage, Invoice, InvoiceStatus
from metering.pricing.documents import ChargeSpec, Tier
from metering.services.sync import daily_usage_refresh
from portal.dashboards.tenant import tier_position
from tenants.models import Metric, TenantRole, TenantUser
from tenants.tests.factories import SubscriptionFactory, TenantFactory, import_sample_plans

URL = "/tenant/dashboard/"


def make_tenant(slug, plan_version):
    tenant = TenantFactory(slug=slug)
    SubscriptionFactory(tenant=tenant, plan_version=plan_version, started_at=timezone.now() - timedelta(days=70))
    user = get_user_model().objects.create_user(f"{slug}-owner", f"owner@{slug}.example", "Corr3ct-Horse-Battery!")
    TenantUser.objects.create(tenant=tenant, username=f"{slug}-sub", email=f"owner@{slug}.example",
                              role=TenantRole.OWNER, user=user)
    return tenant, user


def add_invoice(tenant, status, number, total):
    subscription = tenant.subscriptions.get()
    start = (timezone.now() - timedelta(days=62)).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    if status == InvoiceStatus.DRAFT:
        start = (timezone.now() - timedelta(days=31)).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return Invoice.objects.create(tenant=tenant, subscription=subscription, period_start=start,
                                  period_end=start + timedelta(days=28), currency="USD", status=status,
                                  number=number, subtotal=Decimal(total), total=Decimal(total),
                                  finalize_after=start + timedelta(days=29),
                                  **({} if status == InvoiceStatus.DRAFT else
                                     {"payment_terms_days": 30, "due_date": (start + timedelta(days=58)).date()}))


@pytest.fixture
def acme(db):
    plans = import_sample_plans()
    tenant, user = make_tenant("acme", plans["pro"])
    other, _ = make_tenant("globex", plans["starter"])
    calls = Metric.objects.get(code="api_calls")
    out = Metric.objects.get(code="data_out_mb")
    hour = timezone.now().replace(minute=0, second=0, microsecond=0)
    HourlyUsage.objects.create(tenant=tenant, metric=calls, hour=hour, value=Decimal(12345))
    HourlyUsage.objects.create(tenant=tenant, metric=out, hour=hour, value=Decimal(2_500_000))
    HourlyUsage.objects.create(tenant=other, metric=calls, hour=hour, value=Decimal(777))
    daily_usage_refresh(start=hour, end=hour + timedelta(hours=1))  # as the usage sync does after writing hours
    add_invoice(tenant, InvoiceStatus.PAID, "INV-T-1", "149.00")
    add_invoice(tenant, InvoiceStatus.DRAFT, None, "10.00")
    add_invoice(other, InvoiceStatus.FINALIZED, "INV-T-2", "5.00")
    return {"tenant": tenant, "user": user, "other": other}


def test_only_signed_in_tenant_users_see_it(client, acme, django_user_model):
    response = client.get(URL)
    assert response.status_code == 302 and "/account/login/" in response["Location"]
    staff = django_user_model.objects.create_superuser("boss", "boss@example.com", "Corr3ct-Horse-Battery!")
    client.force_login(staff)
    assert client.get(URL).status_code == 403  # a provider login belongs to no tenant
    tenant_user = acme["user"].tenant_user
    tenant_user.is_active = False
    tenant_user.save()
    client.force_login(acme["user"])
    assert client.get(URL).status_code == 403


def test_this_periods_usage_against_the_tiers(client, acme):
    client.force_login(acme["user"])
    response = client.get(URL)
    assert response.status_code == 200
    html = response.content.decode()
    assert '<strong data-metric="api_calls">12345</strong>' in html
    assert '<strong data-metric="data_out_mb">2.5</strong>' in html  # bytes / 1,000,000
    # 12,345 calls are in the second tier (10,000 to 1,000,000): the next starts at 1,000,000.
    assert "The next tier starts at <strong>1000000</strong>: 987655 to go." in html
    assert html.count("you are here") == 1
    assert "777" not in html  # the other tenant's usage


def test_the_projected_bill_line_by_line(client, acme):
    client.force_login(acme["user"])
    html = client.get(URL).content.decode()
    bill = html[html.index('id="projected-bill"'):html.index('id="usage-over-time"')]
    # Pro: 49.00 base (whole period), 2,345 calls x 0.0005 = 1.17, 2.5 MB x 0.09 = 0.23, true-up to 100.00.
    assert "USD 49.00" in bill and "USD 1.17" in bill and "USD 0.23" in bill
    assert '<strong id="projected-total">USD 100.00</strong>' in bill


def test_past_invoices_link_to_their_documents_and_drafts_are_hidden(client, acme):
    client.force_login(acme["user"])
    html = client.get(URL).content.decode()
    invoice = Invoice.objects.get(number="INV-T-1")
    assert f'href="{invoice.get_absolute_url()}"' in html
    assert "INV-T-2" not in html  # another tenant's
    assert "USD 10.00" not in html  # the draft
    assert client.get(invoice.get_absolute_url()).status_code == 200


def test_usage_over_time_is_drawn_and_written_out(client, acme):
    client.force_login(acme["user"])
    html = client.get(URL).content.decode()
    match = re.search(r'<script id="tenant-usage-api_calls-data" type="application/json">(.*?)</script>', html, re.S)
    data = json.loads(match.group(1))
    assert data["kind"] == "line" and len(data["labels"]) == 30
    assert data["series"][0]["values"][-1] == "12345"
    assert "/static/vendor/chartjs/chart.umd.min.js" in html
    assert 'href="/tenant/dashboard/"' in html  # the tenant area's navigation links here


def test_a_tenant_without_a_plan_sees_an_empty_dashboard(client, db):
    import_sample_plans()
    tenant = TenantFactory(slug="lonely")
    user = get_user_model().objects.create_user("lonely-owner", "o@lonely.example", "Corr3ct-Horse-Battery!")
    TenantUser.objects.create(tenant=tenant, username="lonely-sub", email="o@lonely.example", user=user)
    client.force_login(user)
    response = client.get(URL)
    assert response.status_code == 200
    assert "No active plan" in response.content.decode()


TIERS = ChargeSpec(metric="m", model="graduated", tiers=(
    Tier(up_to=Decimal(100), unit_amount=Decimal("1")), Tier(up_to=Decimal(1000), unit_amount=Decimal("0.5")),
    Tier(up_to=None, unit_amount=Decimal("0.1"))))


@pytest.mark.parametrize("quantity, current, next_at", [
    (Decimal(0), 0, Decimal(100)),
    (Decimal(100), 0, Decimal(100)),  # tiers are (previous, up_to]: 100 is still in the first
    (Decimal("100.5"), 1, Decimal(1000)),
    (Decimal(1000), 1, Decimal(1000)),
    (Decimal(5000), 2, None),
])
def test_tier_position(quantity, current, next_at):
    rows, next_tier_at = tier_position(TIERS, quantity)
    assert [row.current for row in rows].index(True) == current
    assert sum(row.current for row in rows) == 1
    assert next_tier_at == next_at
    assert [row.start for row in rows] == [Decimal(0), Decimal(100), Decimal(1000)]


def test_a_lake_outage_shows_a_message_not_an_error(client, acme, monkeypatch):
    from metering.lake import LakeError
    from portal.dashboards import tenant as tenant_module

    def down(**kwargs):
        raise LakeError("the lake did not answer")

    monkeypatch.setattr(tenant_module, "period_quantities", down)
    monkeypatch.setattr(tenant_module, "projected_bill", down)
    client.force_login(acme["user"])
    response = client.get(URL)
    assert response.status_code == 200
    html = response.content.decode()
    assert "Some figures are unavailable right now" in html
    assert "The projected bill is unavailable right now" in html
    assert '<strong data-metric="api_calls">unavailable</strong>' in html


def test_prices_and_totals_carry_the_currency_digits(client, acme):
    """Tier prices are never rounded but have at least the currency's minor digits; totals have exactly them."""
    client.force_login(acme["user"])
    html = client.get(URL).content.decode()
    tiers = html[html.index('id="usage-api_calls"'):html.index('id="usage-data_out_mb"')]
    cells = [re.sub(r"<[^>]+>", "", cell) for cell in re.findall(r'<td class="num">(.*?)</td>', tiers)]
    assert cells == ["USD 0.00", "–", "USD 0.0005", "–", "USD 0.0002", "USD 25.00"]
    assert "USD 0.09 per MB." in html
    invoices = html[html.index('id="invoices"'):]
    assert "USD 149.00" in invoices
    home = client.get("/tenant/").content.decode()
    assert "USD 49.00 per month, minimum commitment USD 100.00." in home


def test_a_zero_decimal_currency_shows_no_decimals(client, db):
    from tenants.services.plans import plan_save

    import_sample_plans()
    version, _ = plan_save(document={"code": "tokyo", "name": "Tokyo", "currency": "JPY", "interval": "month",
                                     "base_fee": "5000", "charges": [
                                         {"metric": "api_calls", "model": "per_unit", "unit_amount": "0.35"}]})
    tenant, user = make_tenant("tokyo", version)
    Invoice.objects.create(tenant=tenant, subscription=tenant.subscriptions.get(), currency="JPY",
                           status=InvoiceStatus.FINALIZED, number="INV-JP-1", subtotal=Decimal("1200"), total=Decimal("1200"),
                           period_start=timezone.now() - timedelta(days=60), period_end=timezone.now() - timedelta(days=30),
                           finalize_after=timezone.now() - timedelta(days=29), payment_terms_days=30,
                           due_date=timezone.now().date())
    client.force_login(user)
    assert "JPY 5000 per month." in client.get("/tenant/").content.decode()
    html = client.get(URL).content.decode()
    assert "JPY 1200<" in html and "JPY 1200.00" not in html
    assert "JPY 0.35 per unit." in html  # a unit price keeps its digits
    assert "JPY 5000<" in html[html.index('id="projected-bill"'):]
