"""The admin pages render for staff, lifecycle actions work, and bad input shows on the form."""

import json

import pytest
from django.urls import reverse

from tenants.models import Metric, Plan, TenantStatus
from tenants.tests.factories import SAMPLE_FILE, TenantFactory, import_sample_plans

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client, django_user_model):
    user = django_user_model.objects.create_superuser("staff", "staff@example.com", "pw-for-tests-1")
    client.force_login(user)
    return client


@pytest.mark.parametrize(
    "name",
    ["tenants_tenant", "tenants_plan", "tenants_planversion", "tenants_subscription", "tenants_metric"],
)
def test_changelists_and_add_pages_render(staff_client, name):
    import_sample_plans()
    TenantFactory()
    assert staff_client.get(reverse(f"admin:{name}_changelist")).status_code == 200
    assert staff_client.get(reverse(f"admin:{name}_changelist"), {"q": "pro"}).status_code == 200
    add = staff_client.get(reverse(f"admin:{name}_add"))
    assert add.status_code in (200, 403)


def test_change_pages_render(staff_client):
    versions = import_sample_plans()
    tenant = TenantFactory()
    plan = Plan.objects.get(code="pro")
    assert staff_client.get(reverse("admin:tenants_tenant_change", args=[tenant.pk])).status_code == 200
    page = staff_client.get(reverse("admin:tenants_plan_change", args=[plan.pk]))
    assert page.status_code == 200 and "graduated" in page.content.decode()
    assert staff_client.get(reverse("admin:tenants_planversion_change", args=[versions["pro"].pk])).status_code == 200


@pytest.mark.parametrize(
    "action,start,end",
    [("suspend", TenantStatus.ACTIVE, TenantStatus.SUSPENDED),
     ("reactivate", TenantStatus.SUSPENDED, TenantStatus.ACTIVE),
     ("cancel", TenantStatus.ACTIVE, TenantStatus.CANCELLED)],
)
def test_lifecycle_actions(staff_client, action, start, end):
    tenant = TenantFactory(status=start)
    response = staff_client.post(
        reverse("admin:tenants_tenant_changelist"), {"action": action, "_selected_action": [tenant.pk]}, follow=True
    )
    assert response.status_code == 200
    tenant.refresh_from_db()
    assert tenant.status == end


def test_illegal_action_shows_a_message_not_an_error(staff_client):
    tenant = TenantFactory(status=TenantStatus.CANCELLED)
    response = staff_client.post(
        reverse("admin:tenants_tenant_changelist"), {"action": "reactivate", "_selected_action": [tenant.pk]}, follow=True
    )
    assert response.status_code == 200
    assert "cannot go from cancelled to active" in response.content.decode()
    tenant.refresh_from_db()
    assert tenant.status == TenantStatus.CANCELLED


def test_plan_form_shows_validation_errors(staff_client):
    import_sample_plans()
    bad = dict(SAMPLE_FILE["plans"][1], code="newplan", currency="NOPE")
    response = staff_client.post(reverse("admin:tenants_plan_add"), {"document": json.dumps(bad), "is_public": "on"})
    assert response.status_code == 200
    assert "currency" in response.content.decode()
    assert not Plan.objects.filter(code="newplan").exists()
    response = staff_client.post(reverse("admin:tenants_plan_add"), {"document": "{oops", "is_public": "on"})
    assert response.status_code == 200 and "Not valid JSON" in response.content.decode()


def test_plan_form_creates_a_plan(staff_client):
    import_sample_plans()
    doc = dict(SAMPLE_FILE["plans"][1], code="basic", name="Basic")
    response = staff_client.post(reverse("admin:tenants_plan_add"), {"document": json.dumps(doc), "is_public": "on"})
    assert response.status_code == 302, response.content.decode()[:2000]
    assert Plan.objects.get(code="basic").current_version.document["name"] == "Basic"


def test_tenant_form_reports_a_duplicate_slug(staff_client):
    TenantFactory(slug="acme")
    response = staff_client.post(
        reverse("admin:tenants_tenant_add"), {"slug": "acme", "name": "Acme 2", "contact_email": "a@b.example"}
    )
    assert response.status_code == 200 and "already exists" in response.content.decode()


def test_second_active_subscription_in_the_admin_is_a_form_error(staff_client):
    versions = import_sample_plans()
    tenant = TenantFactory()
    data = {"tenant": tenant.pk, "plan_version": versions["pro"].pk, "billing_cycle": "calendar",
            "started_at_0": "2026-10-01", "started_at_1": "00:00:00"}
    assert staff_client.post(reverse("admin:tenants_subscription_add"), data).status_code == 302
    data["plan_version"] = versions["starter"].pk
    response = staff_client.post(reverse("admin:tenants_subscription_add"), data)
    assert response.status_code == 200
    assert "already has an active subscription" in response.content.decode()


def test_plan_amounts_read_as_the_plan_writes_them(staff_client):
    """The columns keep six places; the admin shows what the plan says: 49.00, not 49.000000."""
    versions = import_sample_plans()
    pro = versions["pro"]
    pages = [staff_client.get(reverse("admin:tenants_planversion_changelist")).content.decode(),
             staff_client.get(reverse("admin:tenants_planversion_change", args=[pro.pk])).content.decode(),
             staff_client.get(reverse("admin:tenants_plan_change", args=[pro.plan_id])).content.decode()]
    for html in pages:
        assert "49.00<" in html and "49.000000" not in html
    assert "100.00<" in pages[1] and "100.000000" not in pages[1]


@pytest.mark.django_db
def test_the_metrics_old_admin_pages_redirect_to_the_catalog(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("boss", "boss@example.com", "Corr3ct-Horse-Battery!"))
    response = client.get("/admin/metering/metric/add/?code=x")
    assert response.status_code == 301 and response["Location"] == "/admin/tenants/metric/add/?code=x"
    assert client.get(response["Location"]).status_code == 200


def test_an_events_metric_is_made_in_the_admin_and_checked_as_a_document(staff_client):
    add = reverse("admin:tenants_metric_add")
    data = {"code": "seats", "name": "Seats", "event": "seats.changed", "aggregation": "latest",
            "field": "properties.seats", "filters": '{"properties.plan": ["team"]}', "divisor": "1", "unit": ""}
    assert staff_client.post(add, data).status_code == 302
    metric = Metric.objects.get(code="seats")
    assert (metric.event, metric.aggregation, metric.filters) == ("seats.changed", "latest", {"properties.plan": ["team"]})
    assert "events seats.changed" in staff_client.get(reverse("admin:tenants_metric_changelist")).content.decode()
    response = staff_client.post(add, {**data, "code": "bad", "field": "response_length"})
    assert response.status_code == 200 and "must name a property of the event" in response.content.decode()
