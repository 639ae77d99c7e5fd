"""Payment terms per plan and per tenant, through the billing run: the tenant's own terms, else its plan's
``payment_terms_days``, else INVOICE_PAYMENT_TERMS_DAYS, fixed on the invoice when it is finalized
(docs/plans.md, "Payment terms"); the plan field is validated at import and exported back."""

from datetime import date, timedelta

import pytest
from django.urls import reverse

from metering.pricing import DocumentError, parse_plan
from metering.tests.test_billing import NOV, OCT, add_usage, bill
from tenants.models import Tenant
from tenants.services.plans import plan_save, plans_export
from tenants.services.subscriptions import subscription_create
from tenants.tests.factories import TenantFactory, import_sample_plans

pytestmark = pytest.mark.django_db


def test_tenant_terms_win_over_the_plans_which_win_over_the_setting(settings):
    settings.INVOICE_PAYMENT_TERMS_DAYS = 45
    versions = import_sample_plans()
    pro_doc = {**versions["pro"].document, "payment_terms_days": 14}
    pro, _ = plan_save(document=pro_doc)
    assert pro.document["payment_terms_days"] == 14
    on_plan = TenantFactory(slug="acme")
    own = TenantFactory(slug="globex", payment_terms_days=7)
    on_setting = TenantFactory(slug="initech")
    for tenant, version in ((on_plan, pro), (own, pro), (on_setting, versions["starter"])):
        subscription_create(tenant=tenant, plan_version=version, started_at=OCT, with_trial=False)
        add_usage(tenant, "api_calls", OCT + timedelta(days=1), 1000)
    result = bill(NOV + timedelta(hours=2), finalize_now=True)
    terms = {invoice.tenant.slug: (invoice.payment_terms_days, invoice.due_date) for invoice in result.finalized}
    issued = (NOV + timedelta(hours=2)).date()
    assert terms == {"acme": (14, issued + timedelta(days=14)), "globex": (7, date(2026, 11, 8)),
                     "initech": (45, issued + timedelta(days=45))}
    # Exported with the plan, and imported back unchanged.
    exported = next(doc for doc in plans_export()["plans"] if doc["code"] == "pro")
    assert exported["payment_terms_days"] == 14
    assert parse_plan(exported).payment_terms_days == 14


@pytest.mark.parametrize("value", [-1, 366, "30", 1.5, True])
def test_a_plans_terms_are_whole_days_from_0_to_365(value):
    doc = {"code": "p", "currency": "USD", "interval": "month", "payment_terms_days": value}
    with pytest.raises(DocumentError, match="payment_terms_days"):
        parse_plan(doc)
    assert parse_plan({**doc, "payment_terms_days": 0}).payment_terms_days == 0


def test_staff_set_a_tenants_terms_in_the_admin(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("staff", "s@example.com", "pw-for-tests-1"))
    tenant = TenantFactory(slug="acme", name="Acme", contact_email="billing@acme.example")
    url = reverse("admin:tenants_tenant_change", args=[tenant.pk])
    form = {"slug": "acme", "name": "Acme", "contact_email": "billing@acme.example", "time_zone": "UTC",
            "subscriptions-TOTAL_FORMS": "0", "subscriptions-INITIAL_FORMS": "0"}
    too_long = client.post(url, {**form, "payment_terms_days": "366"})
    assert too_long.status_code == 200 and "less than or equal to 365" in too_long.content.decode()
    assert client.post(url, {**form, "payment_terms_days": "10"}).status_code == 302
    assert Tenant.objects.get(pk=tenant.pk).payment_terms_days == 10
