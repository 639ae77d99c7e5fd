"""Coupons, tax rates and credits for staff, over HTTP: the admin's add pages (each through its service, refusals
shown as form errors), the read-only ledger, and the staff API (grant credits, apply a coupon, bad input 400)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.urls import reverse

from metering.models import CreditEntry, CreditGrant
from metering.tests.api_fixtures import staff_client  # noqa: F401  (fixture)
from tenants.models import Coupon, SubscriptionCoupon, TaxRate
from tenants.services.coupons import coupon_create
from tenants.services.subscriptions import subscription_create
from tenants.tests.factories import TenantFactory, import_sample_plans

NOV = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture
def admin_client(client, django_user_model):
    user = django_user_model.objects.create_superuser("boss", "boss@provider.example", "x-Secret-9")
    client.force_login(user)
    return client


@pytest.fixture
def subscription(db):
    versions = import_sample_plans()
    return subscription_create(tenant=TenantFactory(slug="acme"), plan_version=versions["pro"], started_at=NOV,
                               with_trial=False)


def test_staff_keep_tax_rates_with_one_default(admin_client, db):
    url = reverse("admin:tenants_taxrate_add")
    for name in ("VAT FR", "VAT DE"):
        response = admin_client.post(url, {"name": name, "percentage": "20", "country": "fr", "is_default": "on"})
        assert response.status_code == 302, response.content
    assert list(TaxRate.objects.filter(is_default=True).values_list("name", flat=True)) == ["VAT DE"]
    assert TaxRate.objects.get(name="VAT FR").country == "FR"
    response = admin_client.post(url, {"name": "Bad", "percentage": "120"})
    assert response.status_code == 200 and not TaxRate.objects.filter(name="Bad").exists()
    page = admin_client.get(reverse("admin:tenants_taxrate_changelist")).content.decode()
    assert "VAT DE" in page and "is_default" in page


def test_staff_create_a_coupon_and_apply_it(admin_client, subscription):
    response = admin_client.post(reverse("admin:tenants_coupon_add"), {
        "code": "SPRING", "name": "Spring", "kind": "fixed", "amount_off": "7.50", "currency": "USD",
        "duration": "repeating", "duration_periods": "2", "active": "on"})
    assert response.status_code == 302, response.content
    coupon = Coupon.objects.get(code="SPRING")
    assert (coupon.amount_off, coupon.duration_periods) == (Decimal("7.50"), 2)
    refused = admin_client.post(reverse("admin:tenants_coupon_add"), {
        "code": "HALF", "kind": "percent", "percent_off": "150", "duration": "once", "active": "on"})
    assert refused.status_code == 200 and "at most 100" in refused.content.decode()

    response = admin_client.post(reverse("admin:tenants_subscriptioncoupon_add"),
                                 {"subscription": subscription.pk, "coupon": coupon.pk})
    assert response.status_code == 302, response.content
    (redemption,) = SubscriptionCoupon.objects.all()
    assert (redemption.via, redemption.applied_by.username) == ("staff", "boss")
    coupon.refresh_from_db()
    assert coupon.times_redeemed == 1


def test_a_coupon_in_another_currency_is_refused_in_the_admin(admin_client, subscription):
    euro = coupon_create(code="EURO", kind="fixed", amount_off="5.00", currency="EUR")
    response = admin_client.post(reverse("admin:tenants_subscriptioncoupon_add"),
                                 {"subscription": subscription.pk, "coupon": euro.pk})
    assert response.status_code == 200 and "the plan bills in USD" in response.content.decode()
    assert not SubscriptionCoupon.objects.exists()


def test_staff_grant_credit_and_read_the_ledger(admin_client, subscription):
    response = admin_client.post(reverse("admin:metering_creditgrant_add"), {
        "tenant": subscription.tenant.pk, "amount": "25.00", "currency": "usd", "note": "Goodwill"})
    assert response.status_code == 302, response.content
    grant = CreditGrant.objects.get()
    assert (grant.amount, grant.remaining, grant.currency, grant.source, grant.created_by.username) == (
        Decimal("25.00"), Decimal("25.00"), "USD", "staff", "boss")
    refused = admin_client.post(reverse("admin:metering_creditgrant_add"), {
        "tenant": subscription.tenant.pk, "amount": "0.001", "currency": "USD"})
    assert refused.status_code == 200 and "minor units" in refused.content.decode()
    page = admin_client.get(reverse("admin:metering_creditgrant_change", args=[grant.pk])).content.decode()
    assert "Goodwill" in page and 'name="_save"' not in page  # a grant is never edited
    assert admin_client.get(reverse("admin:metering_creditentry_changelist")).status_code == 200
    assert admin_client.get(reverse("admin:metering_creditentry_add")).status_code == 403
    assert CreditEntry.objects.count() == 0


def test_staff_api_grants_credit_and_applies_coupons(staff_client, subscription):  # noqa: F811
    url = "/api/v1/admin/tenants/acme/credits/"
    response = staff_client.post(url, {"amount": "12.34", "currency": "USD", "note": "API"}, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["balances"] == [{"currency": "USD", "balance": "12.34"}]
    assert CreditGrant.objects.get().source == "api"
    bad = staff_client.post(url, {"amount": "lots", "currency": "USD"}, format="json")
    assert bad.status_code == 400 and "decimal" in bad.json()["detail"]
    assert staff_client.post(url, {"amount": "1.00", "currency": "XXX"}, format="json").status_code == 400

    coupon_create(code="LAUNCH10", kind="percent", percent_off="10", duration="forever")
    coupons = f"/api/v1/admin/subscriptions/{subscription.pk}/coupons/"
    response = staff_client.post(coupons, {"code": "launch10"}, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["code"] == "LAUNCH10" and response.json()["percent_off"] == "10"
    assert staff_client.post(coupons, {"code": "launch10"}, format="json").status_code == 201  # again: no change
    assert Coupon.objects.get(code="LAUNCH10").times_redeemed == 1
    assert [c["code"] for c in staff_client.get(coupons).json()] == ["LAUNCH10"]
    missing = staff_client.post(coupons, {"code": "NOPE"}, format="json")
    assert missing.status_code == 400 and "No coupon has this code." in missing.json()["detail"]
