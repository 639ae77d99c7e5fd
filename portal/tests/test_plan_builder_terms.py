"""The plan builder keeps the plan fields of issue 17 it has no inputs for: payment terms are a field of the
form; included credit and AWS Marketplace dimensions ride through the page unchanged, so saving a plan from the
builder never drops them."""

import pytest
from django.urls import reverse

from portal.tests.plan_forms import form_values
from portal.tests.test_plan_builder import staff  # noqa: F401  (the staff fixture)
from tenants.models import Plan, PlanVersion
from tenants.services.plans import plans_import
from tenants.tests.factories import SAMPLE_FILE

pytestmark = pytest.mark.django_db


def test_terms_credit_and_dimensions_round_trip_and_the_terms_are_edited(staff):  # noqa: F811
    pro = next(doc for doc in SAMPLE_FILE["plans"] if doc["code"] == "pro")
    plans_import(document={"metrics": SAMPLE_FILE["metrics"], "plans": [{
        **pro, "payment_terms_days": 14, "included_credit": "10.00",
        "marketplace_dimensions": {"api_calls": "ApiCalls"}}]})
    plan = Plan.objects.get(code="pro")
    version = plan.current_version
    url = reverse("admin-plan-builder", args=["pro"])
    page = staff.get(url)
    data = form_values(page.content.decode(), "plan-builder")
    assert data["payment_terms_days"] == ["14"]
    data["action"] = ["save"]
    assert staff.post(url, data).status_code == 302
    assert plan.versions.count() == 1 and PlanVersion.objects.get(pk=version.pk).document == version.document
    data["payment_terms_days"] = ["21"]
    assert staff.post(url, data).status_code == 302
    saved = Plan.objects.get(code="pro").current_version.document
    assert (saved["payment_terms_days"], saved["included_credit"], saved["marketplace_dimensions"]) == (
        21, "10.00", {"api_calls": "ApiCalls"})
    data["payment_terms_days"] = ["366"]
    refused = staff.post(url, data)
    assert refused.status_code == 200 and "less than or equal to 365" in refused.content.decode()
