"""Every /api/v1/ endpoint answers a browser, a CSV client and an unknown format: never a server error.

Walked from the URL configuration like test_api_security, so a new endpoint is tried as soon as it is
added: with a browser's `Accept` (signed in to the portal, as a person opening the URL), `?format=api`,
`Accept: text/csv`, `?format=csv`, and formats no endpoint has. HTML is the browsable API; a format an
endpoint does not have is 406 naming the ones it has.
"""

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from metering.tests.api_fixtures import *  # noqa: F403
from metering.tests.api_fixtures import PASSWORD
from metering.tests.test_api_security import api_routes, fill, webhook_values
from tenants.models import Subscription

pytestmark = pytest.mark.django_db

BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"
CSV_ENDPOINTS = ("usage/", "invoices/", "invoices/<uuid:invoice>/lines/")


def own_values(world):
    """Path parameter -> acme's own object, so each endpoint answers with data (not a 404)."""
    acme = world.tenants["acme"]
    return {
        "tenant": acme.slug,
        "invoice": str(world.invoices["acme"].public_id),
        "user": str(world.users["acme"].pk),
        "subscription": str(Subscription.objects.get(tenant=acme).pk),
        "plan": "pro",
        "metric": "api_calls",
        **webhook_values(acme),
    }


def provider_webhook_values(world):
    """A provider endpoint (no tenant) with one delivery: what /api/v1/admin/webhook-endpoints/<endpoint>/ names."""
    from tenants.models import WebhookDelivery
    from tenants.webhooks.endpoints import webhook_endpoint_create
    from tenants.webhooks.events import webhook_emit

    acme = world.tenants["acme"]
    endpoint, _ = webhook_endpoint_create(tenant=None, url="http://127.0.0.1:9/provider", event_types=["tenant.created"])
    webhook_emit(type="tenant.created", resource=acme, tenant=acme)
    return {"endpoint": str(endpoint.pk), "delivery": WebhookDelivery.objects.get(endpoint=endpoint).webhook_id}


def browsers(world):
    """A tenant user and a staff member, each signed in to the portal in a browser (session)."""
    tenant_browser = Client()
    tenant_browser.force_login(world.users["acme"].user)
    staff = get_user_model().objects.create_user("staff", "staff@provider.example", PASSWORD, is_staff=True)
    staff_browser = Client()
    staff_browser.force_login(staff)
    return tenant_browser, staff_browser


def get_paths(world):
    """(route, path with a query that makes the endpoint answer 200) for every GET endpoint."""
    values = own_values(world)
    provider = {**values, **provider_webhook_values(world)}
    found = []
    for route, view in api_routes():
        if not hasattr(view, "get"):
            continue
        route_values = provider if "/admin/webhook-endpoints/" in route else values
        query = "metric=api_calls&start=2026-10-01&end=2026-11-01" if route.endswith("usage/top/") else (
            "start=2026-10-01&end=2026-11-01")
        if route.endswith("subscription/preview/"):
            query += "&plan=starter"  # a plan on offer to acme (on pro)
        found.append((route, f"{fill(route, route_values)}?{query}"))
    return found


def test_every_endpoint_shows_the_browsable_api_to_a_browser(world):
    tenant_browser, staff_browser = browsers(world)
    tried = 0
    for route, path in get_paths(world):
        browser = staff_browser if route.startswith("api/v1/admin/") else tenant_browser
        for response in (browser.get(path, HTTP_ACCEPT=BROWSER_ACCEPT), browser.get(path + "&format=api")):
            assert response.status_code == 200, f"{path}: {response.status_code} {response.content[:300]!r}"
            assert response["Content-Type"].startswith("text/html"), path
            assert b"Django REST framework" in response.content or b"browsable" in response.content.lower(), path
            tried += 1
    assert tried >= 2 * 25


def test_tenant_token_and_anonymous_browsers_get_html_errors_not_server_errors(world):
    token_client = world.client("acme")
    anonymous = Client()
    for route, path in get_paths(world):
        response = token_client.get(path, HTTP_ACCEPT=BROWSER_ACCEPT)
        assert response.status_code in ((403,) if route.startswith("api/v1/admin/") else (200,)), path
        response = anonymous.get(path, HTTP_ACCEPT=BROWSER_ACCEPT)
        assert response.status_code in (401, 403), f"{path}: {response.status_code}"
        assert response["Content-Type"].startswith("text/html"), path


def test_csv_where_an_endpoint_has_it_and_406_naming_the_formats_elsewhere(world):
    _tenant_browser, staff_browser = browsers(world)
    token_client = world.client("acme")
    csv_routes = 0
    for route, path in get_paths(world):
        client = staff_browser if route.startswith("api/v1/admin/") else token_client
        has_csv = route.endswith(CSV_ENDPOINTS)
        for response in (client.get(path, HTTP_ACCEPT="text/csv"), client.get(path + "&format=csv")):
            if has_csv:
                assert response.status_code == 200, path
                assert response["Content-Type"].startswith("text/csv"), path
            else:
                assert response.status_code == 406, f"{path}: {response.status_code}"
                detail = response.json()["detail"]
                assert "application/json (?format=json)" in detail and "text/html (?format=api)" in detail, path
                assert "csv" not in detail, path
        csv_routes += has_csv
    assert csv_routes == 2 * len(CSV_ENDPOINTS)  # under /api/v1/ and under /api/v1/admin/tenants/<tenant>/


@pytest.mark.parametrize("accept,query", [("application/xml", ""), ("", "&format=xml"), ("image/png", ""),
                                          ("text/html", "&format=yaml")])
def test_a_format_no_endpoint_has_is_406(world, accept, query):
    token_client = world.client("acme")
    for route, path in get_paths(world):
        if route.startswith("api/v1/admin/"):
            continue
        headers = {"HTTP_ACCEPT": accept} if accept else {}
        response = token_client.get(path + query, **headers)
        assert response.status_code == 406, f"{path}{query} Accept {accept}: {response.status_code}"


def test_the_browsable_api_forms_render_for_the_staff_write_endpoints(world):
    _tenant_browser, staff_browser = browsers(world)
    for path in ("/api/v1/admin/tenants/", "/api/v1/admin/plans/", "/api/v1/admin/subscriptions/",
                 "/api/v1/admin/metrics/"):
        response = staff_browser.get(path, HTTP_ACCEPT=BROWSER_ACCEPT)
        assert response.status_code == 200 and b"<form" in response.content, path
        assert staff_browser.options(path, HTTP_ACCEPT=BROWSER_ACCEPT).status_code == 200, path


@pytest.mark.parametrize("path", ["/api/v1/admin/plans/", "/api/v1/admin/metrics/", "/api/v1/admin/tenants/"])
def test_a_request_body_nested_100000_deep_is_a_400(world, staff_client, path):
    body = "[" * 100_000 + "]" * 100_000
    response = staff_client.post(path, body, content_type="application/json")
    assert response.status_code == 400
    assert "nested more than 32 levels deep" in response.json()["detail"]


def test_a_number_of_thousands_of_digits_in_a_request_body_is_a_400(world, staff_client):
    body = '{"document": {"code": "big", "currency": "USD", "interval": "month", "trial_days": 1' + "0" * 5000 + "}}"
    response = staff_client.post("/api/v1/admin/plans/", body, content_type="application/json")
    assert response.status_code == 400
    assert "JSON parse error" in response.json()["detail"]
