"""The admin's add and change forms save through the services: a rule only a service enforces holds in the
admin too, and a service's refusal shows on the form (status 200, the input kept), never a 500."""

import json
from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from tenants.identity import IdentityError
from tenants.identity.local import LocalIdentityBackend
from tenants.models import Metric, Subscription, SubscriptionChange, SubscriptionStatus, TenantUser
from tenants.services.subscriptions import subscription_create
from tenants.tests.factories import TenantFactory, import_sample_plans

pytestmark = pytest.mark.django_db
START = datetime(2026, 10, 1, tzinfo=UTC)


@pytest.fixture
def staff_client(client, django_user_model, local_identity):
    client.force_login(django_user_model.objects.create_superuser("staff", "staff@example.com", "pw-for-tests-1"))
    return client


def _moment(name, value):
    return {f"{name}_0": value.strftime("%Y-%m-%d"), f"{name}_1": value.strftime("%H:%M:%S")} if value else \
        {f"{name}_0": "", f"{name}_1": ""}


def _change_subscription(client, sub, **changes):
    data = {"plan_version": sub.plan_version_id, **_moment("trial_ends_at", sub.trial_ends_at),
            **_moment("ends_at", sub.ends_at),
            # the history inlines' management forms (read-only rows): plan changes, the tenant's requests
            "changes-TOTAL_FORMS": "0", "changes-INITIAL_FORMS": "0", "changes-MIN_NUM_FORMS": "0",
            "changes-MAX_NUM_FORMS": "0",
            "requests-TOTAL_FORMS": "0", "requests-INITIAL_FORMS": "0", "requests-MIN_NUM_FORMS": "0",
            "requests-MAX_NUM_FORMS": "0"}
    for name, value in changes.items():
        data.update(_moment(name, value) if name.endswith("_at") else {name: value})
    return client.post(reverse("admin:tenants_subscription_change", args=[sub.pk]), data)


def test_adding_a_subscription_starts_it_through_the_service_with_the_plans_trial(staff_client):
    versions = import_sample_plans()
    tenant = TenantFactory()
    data = {"tenant": tenant.pk, "plan_version": versions["pro"].pk, "billing_cycle": "calendar",
            **_moment("started_at", START)}
    assert staff_client.post(reverse("admin:tenants_subscription_add"), data).status_code == 302
    sub = Subscription.objects.get(tenant=tenant)
    assert (sub.status, sub.trial_ends_at) == (SubscriptionStatus.ACTIVE, START + timedelta(days=14))


def test_a_trial_end_given_on_the_add_form_is_kept(staff_client):
    versions = import_sample_plans()
    tenant = TenantFactory()
    data = {"tenant": tenant.pk, "plan_version": versions["pro"].pk, "billing_cycle": "calendar",
            **_moment("started_at", START), **_moment("trial_ends_at", START + timedelta(days=30))}
    assert staff_client.post(reverse("admin:tenants_subscription_add"), data).status_code == 302
    assert Subscription.objects.get(tenant=tenant).trial_ends_at == START + timedelta(days=30)


def test_changing_the_plan_in_the_admin_is_recorded_with_its_time(staff_client):
    versions = import_sample_plans()
    sub = subscription_create(tenant=TenantFactory(), plan_version=versions["starter"], started_at=START)
    before = timezone.now()
    response = _change_subscription(staff_client, sub, plan_version=versions["pro"].pk)
    assert response.status_code == 302, response.content.decode()[:3000]
    change = SubscriptionChange.objects.get(subscription=sub)
    assert (change.from_version, change.to_version) == (versions["starter"], versions["pro"])
    assert before <= change.changed_at <= timezone.now()
    sub.refresh_from_db()
    assert sub.plan_version == versions["pro"]


def test_a_plan_change_the_service_refuses_shows_on_the_form(staff_client):
    """Only subscription_change_plan knows a change cannot come before the start: the admin says so."""
    versions = import_sample_plans()
    later = timezone.now() + timedelta(days=10)
    sub = subscription_create(tenant=TenantFactory(), plan_version=versions["starter"], started_at=later)
    response = _change_subscription(staff_client, sub, plan_version=versions["pro"].pk)
    assert response.status_code == 200
    assert "A plan change cannot come before the subscription starts." in response.content.decode()
    sub.refresh_from_db()
    assert sub.plan_version == versions["starter"] and not SubscriptionChange.objects.exists()


def test_a_plan_change_to_another_currency_is_refused_on_the_form(staff_client):
    """A period is billed in one currency (docs/plans.md): subscription_change_plan refuses, the admin says so."""
    from tenants.services.plans import plan_save

    versions = import_sample_plans()
    euro, _ = plan_save(document={"code": "euro", "name": "Euro", "currency": "EUR", "interval": "month"})
    sub = subscription_create(tenant=TenantFactory(), plan_version=versions["starter"], started_at=START)
    response = _change_subscription(staff_client, sub, plan_version=euro.pk)
    assert response.status_code == 200 and "the currency cannot change" in response.content.decode()
    sub.refresh_from_db()
    assert sub.plan_version == versions["starter"] and not SubscriptionChange.objects.exists()


def test_setting_the_end_in_the_admin_ends_the_subscription(staff_client):
    versions = import_sample_plans()
    sub = subscription_create(tenant=TenantFactory(), plan_version=versions["starter"], started_at=START)
    end = START + timedelta(days=20)
    assert _change_subscription(staff_client, sub, ends_at=end).status_code == 302
    sub.refresh_from_db()
    assert (sub.status, sub.ends_at) == (SubscriptionStatus.ENDED, end)
    # Ended, it is history: the change page shows it and offers nothing to edit.
    page = staff_client.get(reverse("admin:tenants_subscription_change", args=[sub.pk])).content.decode()
    assert 'name="ends_at_0"' not in page and 'name="plan_version"' not in page


def test_adding_a_metric_goes_through_the_service(staff_client):
    form = {"code": "out", "name": "Out", "aggregation": "sum", "field": "response_length", "filters": "{}",
            "divisor": "1000", "unit": "kB"}
    assert staff_client.post(reverse("admin:tenants_metric_add"), form).status_code == 302
    metric = Metric.objects.get(code="out")
    assert (metric.field, metric.divisor, metric.unit, metric.filters) == ("response_length", 1000, "kB", {})


def test_the_code_of_a_charged_metric_cannot_change_in_the_admin(staff_client):
    """A rule of metric_update alone: plan documents name the metric by its code."""
    import_sample_plans()
    metric = Metric.objects.get(code="api_calls")
    form = {"code": "calls", "name": "API calls", "aggregation": "count", "field": "",
            "filters": json.dumps(metric.filters), "divisor": "1", "unit": ""}
    response = staff_client.post(reverse("admin:tenants_metric_change", args=[metric.pk]), form)
    assert response.status_code == 200
    assert "the code cannot change" in response.content.decode()
    assert Metric.objects.filter(code="api_calls").exists() and not Metric.objects.filter(code="calls").exists()
    # Its name can change, and an uncharged metric's code can.
    form["code"], form["name"] = "api_calls", "Calls"
    assert staff_client.post(reverse("admin:tenants_metric_change", args=[metric.pk]), form).status_code == 302
    assert Metric.objects.get(pk=metric.pk).name == "Calls"
    lonely = Metric.objects.create(code="lonely", name="Lonely", aggregation="count")
    form.update(code="alone", name="Lonely", filters="{}")
    assert staff_client.post(reverse("admin:tenants_metric_change", args=[lonely.pk]), form).status_code == 302
    assert Metric.objects.get(pk=lonely.pk).code == "alone"


def test_a_taken_email_is_the_identity_services_refusal_on_the_form(staff_client):
    tenant = TenantFactory(slug="acme")
    data = {"tenant": tenant.pk, "email": "ann@acme.example", "role": "member"}
    assert staff_client.post("/admin/tenants/tenantuser/add/", data).status_code == 302
    response = staff_client.post("/admin/tenants/tenantuser/add/", {**data, "email": "ANN@acme.example"})
    assert response.status_code == 200
    assert "A user with this email already exists." in response.content.decode()
    assert TenantUser.objects.count() == 1


def test_the_identity_provider_refusing_shows_on_the_form_and_nothing_is_kept(
        staff_client, monkeypatch, mailoutbox, django_capture_on_commit_callbacks):
    def refuse(self, **kwargs):
        raise IdentityError("The identity provider is busy; try again in a minute.")

    monkeypatch.setattr(LocalIdentityBackend, "create_user", refuse)
    tenant = TenantFactory(slug="acme")
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post("/admin/tenants/tenantuser/add/",
                                     {"tenant": tenant.pk, "email": "ann@acme.example", "role": "owner"})
    assert response.status_code == 200
    html = response.content.decode()
    assert "The identity provider is busy; try again in a minute." in html and 'value="ann@acme.example"' in html
    assert not TenantUser.objects.exists() and mailoutbox == []
