"""The admin scope: staff read any tenant's data and manage tenants, plans, subscriptions and metrics."""

import pytest

from metering.tests.api_fixtures import *  # noqa: F403
from tenants.models import Metric, Subscription, Tenant

pytestmark = pytest.mark.django_db


def test_staff_read_any_tenants_data(world, staff_client):
    for slug in ("acme", "globex"):
        base = f"/api/v1/admin/tenants/{slug}"
        usage = staff_client.get(f"{base}/usage/", {"metric": "api_calls", "start": "2026-10-01", "end": "2026-10-02"})
        assert usage.status_code == 200
        assert usage.json()["results"][0]["value"] == {"acme": "240", "globex": "168"}[slug]
        invoice = world.invoices[slug]
        assert staff_client.get(f"{base}/invoices/").json()["results"][0]["id"] == str(invoice.public_id)
        assert staff_client.get(f"{base}/invoices/{invoice.public_id}/").json()["number"] == invoice.number
        assert staff_client.get(f"{base}/plan/").json()["subscription"]["tenant"] == slug
        assert staff_client.get(f"{base}/projected-bill/").status_code == 200
        assert staff_client.get(f"{base}/usage/current/").status_code == 200
        assert staff_client.get(f"{base}/users/").json()["count"] == 1
    # An invoice under the wrong tenant's path is not found.
    other = world.invoices["globex"].public_id
    assert staff_client.get(f"/api/v1/admin/tenants/acme/invoices/{other}/").status_code == 404
    assert staff_client.get("/api/v1/admin/tenants/nobody/usage/").status_code == 404


def test_staff_see_drafts(world, staff_client):
    from metering.models import Invoice, InvoiceStatus

    Invoice.objects.filter(pk=world.invoices["acme"].pk).update(status=InvoiceStatus.DRAFT, number=None)
    assert staff_client.get("/api/v1/admin/tenants/acme/invoices/").json()["count"] == 1


def test_top_tenants_by_metric(world, staff_client):
    body = staff_client.get("/api/v1/admin/usage/top/", {"metric": "api_calls", "start": "2026-10-01",
                                                         "end": "2026-11-01"}).json()
    assert [(r["tenant"], r["value"]) for r in body["results"]] == [("acme", "7440"), ("globex", "5208")]
    limited = staff_client.get("/api/v1/admin/usage/top/", {"metric": "data_out_mb", "limit": 1,
                                                            "start": "2026-10-01", "end": "2026-11-01"}).json()
    assert [(r["tenant"], r["value"]) for r in limited["results"]] == [("acme", "36")]
    bad = staff_client.get("/api/v1/admin/usage/top/", {"metric": "nope"})
    assert bad.status_code == 400 and "Unknown metric 'nope'" in bad.json()["metric"][0]


def test_tenants_create_read_and_transition(world, staff_client):
    assert [t["slug"] for t in staff_client.get("/api/v1/admin/tenants/").json()["results"]] == ["acme", "globex"]
    created = staff_client.post("/api/v1/admin/tenants/", {"slug": "initech", "name": "Initech",
                                                           "contact_email": "ap@initech.example"}, format="json")
    assert created.status_code == 201 and created.json()["status"] == "active"
    bad = staff_client.post("/api/v1/admin/tenants/", {"slug": "Not A Slug", "name": "x", "contact_email": "x"},
                            format="json")
    assert bad.status_code == 400
    suspended = staff_client.post("/api/v1/admin/tenants/initech/status/", {"status": "suspended"}, format="json")
    assert suspended.status_code == 200 and Tenant.objects.get(slug="initech").status == "suspended"
    illegal = staff_client.post("/api/v1/admin/tenants/initech/status/", {"status": "trialing"}, format="json")
    assert illegal.status_code == 400 and "cannot go from" in illegal.json()["detail"]
    assert staff_client.get("/api/v1/admin/tenants/", {"status": "suspended"}).json()["count"] == 1


def test_plans_subscriptions_and_metrics(world, staff_client):
    plans = staff_client.get("/api/v1/admin/plans/").json()["results"]
    assert [p["code"] for p in plans] == ["pro", "starter"]
    assert staff_client.get("/api/v1/admin/plans/pro/").json()["current_version"]["version"] == 1
    doc = {"code": "basic", "name": "Basic", "currency": "USD", "interval": "month",
           "charges": [{"metric": "api_calls", "model": "per_unit", "unit_amount": "0.002"}]}
    assert staff_client.post("/api/v1/admin/plans/", {"document": doc}, format="json").json()["code"] == "basic"
    invalid = staff_client.post("/api/v1/admin/plans/", {"document": {**doc, "charges": [{"metric": "zzz"}]}},
                                format="json")
    assert invalid.status_code == 400

    subs = staff_client.get("/api/v1/admin/subscriptions/", {"tenant": "acme"}).json()["results"]
    assert [(s["tenant"], s["plan"]) for s in subs] == [("acme", "pro")]
    sub_id = subs[0]["id"]
    assert staff_client.get(f"/api/v1/admin/subscriptions/{sub_id}/").json()["status"] == "active"
    twice = staff_client.post("/api/v1/admin/subscriptions/", {"tenant": "acme", "plan": "basic"}, format="json")
    assert twice.status_code == 400 and "already has an active subscription" in twice.json()["detail"]
    staff_client.post("/api/v1/admin/tenants/", {"slug": "initech", "name": "Initech",
                                                 "contact_email": "ap@initech.example"}, format="json")
    new = staff_client.post("/api/v1/admin/subscriptions/", {"tenant": "initech", "plan": "basic"}, format="json")
    assert new.status_code == 201 and Subscription.objects.get(tenant__slug="initech").plan_version.plan.code == "basic"

    metric = {"code": "posts", "name": "POST calls", "aggregation": "count", "filters": {"http_method": ["POST"]}}
    assert staff_client.post("/api/v1/admin/metrics/", metric, format="json").json()["code"] == "posts"
    assert Metric.objects.get(code="posts").filters == {"http_method": ["POST"]}
    assert staff_client.get("/api/v1/admin/metrics/posts/").json()["aggregation"] == "count"
    assert staff_client.post("/api/v1/admin/metrics/", {**metric, "aggregation": "sum"}, format="json").status_code == 400
    seats = {"code": "seats_api", "name": "Seats", "event": "seats.changed", "aggregation": "latest",
             "field": "properties.seats"}
    answer = staff_client.post("/api/v1/admin/metrics/", seats, format="json")
    assert answer.status_code == 200 and answer.json()["event"] == "seats.changed", answer.content
    refused = staff_client.post("/api/v1/admin/metrics/", {**seats, "event": ""}, format="json")
    assert refused.status_code == 400 and "'latest' is for metrics over posted events" in refused.content.decode()


def test_staff_without_a_tenant_are_refused_on_tenant_paths(world, staff_client):
    response = staff_client.get("/api/v1/usage/")
    assert response.status_code == 403 and "/api/v1/admin/tenants/" in response.json()["detail"]
