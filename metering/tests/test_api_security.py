"""No tenant token reads another tenant's data through any endpoint, and staff endpoints refuse tenant tokens.

The endpoints are not listed by hand: they are walked from the URL configuration (everything under
/api/v1/), so a new endpoint is tried as soon as it is added. A path parameter this test does not know
how to fill fails the test, so that whoever adds one says which other-tenant object it must be tried with.
"""

import json

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

from metering.tests.api_fixtures import *  # noqa: F403
from tenants.models import Subscription

pytestmark = pytest.mark.django_db


def api_routes():
    """(route, view class) for every URL pattern under api/v1/."""
    found = []

    def walk(patterns, prefix):
        for pattern in patterns:
            route = prefix + str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, route)
            elif isinstance(pattern, URLPattern):
                found.append((route, getattr(pattern.callback, "view_class", pattern.callback)))

    walk(get_resolver().url_patterns, "")
    return [(route, view) for route, view in found if route.startswith("api/v1/")]


def other_tenants_values(world):
    """Path parameter -> the other tenant's (globex's) object, as the URL would name it."""
    globex = world.tenants["globex"]
    return {
        "tenant": globex.slug,
        "invoice": str(world.invoices["globex"].public_id),
        "user": str(world.users["globex"].pk),
        "subscription": str(Subscription.objects.get(tenant=globex).pk),
        "plan": "starter",
        "metric": "api_calls",
        **webhook_values(globex),
    }


def webhook_values(tenant):
    """An endpoint of `tenant` with one delivery (of an event about the tenant), as the URLs name them."""
    from tenants.models import WebhookDelivery
    from tenants.webhooks.endpoints import webhook_endpoint_create
    from tenants.webhooks.events import webhook_emit

    endpoint, _ = webhook_endpoint_create(tenant=tenant, url="http://127.0.0.1:9/hooks", event_types=["tenant.suspended"])
    webhook_emit(type="tenant.suspended", resource=tenant, tenant=tenant)
    return {"endpoint": str(endpoint.pk), "delivery": WebhookDelivery.objects.get(endpoint=endpoint).webhook_id}


def required_query(route) -> dict:
    """The query parameters an endpoint cannot answer without (for acme, on pro)."""
    return {"plan": "starter"} if route.endswith("subscription/preview/") else {}


def fill(route, values):
    import re

    def one(match):
        name = match.group(2)
        assert name in values, f"api/{route}: teach this test which other-tenant value to use for <{name}>"
        return values[name]

    return "/" + re.sub(r"<(?:(\w+):)?(\w+)>", one, route)


def secrets_of(world):
    globex_invoice = world.invoices["globex"]
    return ["globex", "bob@globex.example", str(globex_invoice.public_id), globex_invoice.number]


def test_the_walk_finds_every_endpoint():
    routes = [route for route, _ in api_routes()]
    assert "api/v1/usage/" in routes and "api/v1/invoices/<uuid:invoice>/" in routes
    assert "api/v1/admin/tenants/<slug:tenant>/usage/" in routes and "api/v1/admin/usage/top/" in routes
    assert len(routes) >= 25


def test_tenant_token_never_gets_another_tenants_data(world):
    client = world.client("acme")
    values = other_tenants_values(world)
    secrets = secrets_of(world)
    tried = 0
    for route, view in api_routes():
        path = fill(route, values)
        methods = [m for m in ("get", "post") if hasattr(view, m)] or ["get"]  # a function view: GET
        for method in methods:
            if route.startswith("api/v1/admin/"):
                expected = {403}
                response = getattr(client, method)(path, format="json")
            elif "<" in route:
                expected = {404}  # another tenant's object: not found, never forbidden (that would confirm it)
                response = getattr(client, method)(path, format="json")
            else:
                expected = {404}  # a list of the caller's data, asked for another tenant
                response = getattr(client, method)(f"{path}?tenant={values['tenant']}", format="json")
            assert response.status_code in expected, f"{method.upper()} {path}: {response.status_code}"
            body = response.content.decode()
            leaked = [secret for secret in secrets if secret in body]
            assert not leaked, f"{method.upper()} {path} shows {leaked}"
            tried += 1
    assert tried >= 30


def test_tenant_lists_without_a_tenant_parameter_show_only_the_callers_data(world):
    client = world.client("acme")
    secrets = secrets_of(world)
    for route, view in api_routes():
        if route.startswith("api/v1/admin/") or "<" in route or not hasattr(view, "get"):
            continue  # (POST-only actions, e.g. subscription/cancel/, are tried with ?tenant= in their own tests)
        response = client.get("/" + route, {"start": "2026-10-01", "end": "2026-11-01", **required_query(route)})
        assert response.status_code in (200, 404), f"/{route}: {response.status_code}"
        body = json.dumps(response.json())
        assert not [secret for secret in secrets if secret in body], f"/{route} shows another tenant's data"


def test_the_callers_own_objects_are_found(world):
    """The control: the same paths with the caller's own ids answer 200 (so the 404s above mean scoping)."""
    client = world.client("acme")
    own = {"invoice": str(world.invoices["acme"].public_id), "user": str(world.users["acme"].pk),
           **webhook_values(world.tenants["acme"])}
    for route, view in api_routes():
        if route.startswith("api/v1/admin/") or not hasattr(view, "get"):
            continue  # (POST-only actions, e.g. rotate-secret, are tried with the caller's ids in their own tests)
        path = fill(route, own)
        assert client.get(path, required_query(route)).status_code == 200, path
        assert client.get(path, {"tenant": "acme", **required_query(route)}).status_code == 200, path
