"""Webhook endpoints through the REST API: create (201 with the secret, once), list, update, disable, delete,
rotate; owners only, each tenant its own; staff for provider endpoints; invoice events carry the invoice as
the API shows it; deliveries and their attempts are listed and resent over HTTP."""

import json
from decimal import Decimal

import pytest
from rest_framework.test import APIClient
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from metering.services.billing.invoices import invoice_mark_paid, invoice_void
from metering.tests.api_fixtures import *  # noqa: F403
from tenants.models import TenantRole, WebhookDelivery, WebhookEndpoint
from tenants.services import identity as identity_services
from tenants.services.api_keys import api_key_create
from tenants.tasks import deliver_webhook
from tenants.webhooks import events

BASE = "/api/v1/webhook-endpoints/"
PROVIDER = "/api/v1/admin/webhook-endpoints/"


@pytest.fixture
def queued(monkeypatch):
    ids: list[int] = []
    monkeypatch.setattr(events, "enqueue", lambda delivery_ids: ids.extend(delivery_ids))
    return ids


def create(client, url, events_=("invoice.finalized",), base=BASE):
    return client.post(base, {"url": url, "events": list(events_), "description": "billing"}, format="json")


def test_an_owner_creates_lists_updates_disables_rotates_and_deletes_an_endpoint(world, receiver):
    acme = world.client("acme")
    made = create(acme, receiver.url, ["invoice.finalized", "invoice.paid"])
    assert made.status_code == 201, made.content
    body = made.json()
    assert body["secret"].startswith("whsec_") and body["tenant"] == "acme"
    assert body["events"] == ["invoice.finalized", "invoice.paid"] and body["enabled"] is True
    url = f"{BASE}{body['id']}/"

    listed = acme.get(BASE).json()
    assert [e["id"] for e in listed["results"]] == [body["id"]]
    assert "secret" not in listed["results"][0] and "secret" not in acme.get(url).json()  # shown once only

    changed = acme.patch(url, {"events": ["invoice.voided"], "description": "void only"}, format="json")
    assert changed.status_code == 200 and changed.json()["events"] == ["invoice.voided"]
    disabled = acme.patch(url, {"enabled": False}, format="json").json()
    assert disabled["enabled"] is False and disabled["disabled_at"]
    assert acme.patch(url, {"enabled": True}, format="json").json()["enabled"] is True

    rotated = acme.post(f"{url}rotate-secret/")
    assert rotated.status_code == 200 and rotated.json()["secret"] not in (body["secret"], "")

    deleted = acme.delete(url)
    assert deleted.status_code == 200 and deleted.json()["id"] == body["id"]
    assert acme.get(url).status_code == 404 and not WebhookEndpoint.objects.exists()


def test_bad_input_is_a_400_that_says_why(world, settings):
    acme = world.client("acme")
    assert create(acme, "http://127.0.0.1:9/h", ["invoice.nothing"]).status_code == 400
    assert create(acme, "http://127.0.0.1:9/h", []).status_code == 400
    provider_only = create(acme, "http://127.0.0.1:9/h", ["sync.failed"])
    assert provider_only.status_code == 400 and "provider" in provider_only.json()["detail"]
    settings.WEBHOOKS_ALLOW_PRIVATE = False
    private = create(acme, "http://10.0.0.7/hooks")
    assert private.status_code == 400 and "private address" in private.json()["detail"]
    metadata = create(acme, "http://169.254.169.254/latest/")
    assert metadata.status_code == 400 and "link-local" in metadata.json()["detail"]
    assert not WebhookEndpoint.objects.exists()


def test_a_tenant_never_sees_or_touches_another_tenants_endpoints(world, receiver):
    acme_id = create(world.client("acme"), receiver.url).json()["id"]
    globex = world.client("globex")
    assert globex.get(BASE).json()["results"] == []
    for method in ("get", "patch", "delete"):
        assert getattr(globex, method)(f"{BASE}{acme_id}/", {}, format="json").status_code == 404
    assert globex.post(f"{BASE}{acme_id}/rotate-secret/").status_code == 404
    assert globex.get(f"{BASE}{acme_id}/deliveries/").status_code == 404
    assert globex.get(BASE, {"tenant": "acme"}).status_code == 404
    assert WebhookEndpoint.objects.get().enabled


def test_only_the_owner_and_never_an_api_key_manage_endpoints(world, receiver):
    member, _ = identity_services.tenant_user_create(tenant=world.tenants["acme"], email="mo@acme.example",
                                                     role=TenantRole.MEMBER, password=PASSWORD)  # noqa: F405
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {identity_services.tenant_user_issue_token(tenant_user=member)}")
    assert client.get(BASE).status_code == 403
    assert create(client, receiver.url).status_code == 403
    _, raw_key = api_key_create(tenant=world.tenants["acme"], name="k", scopes=["usage:read", "events:write"])
    keyed = APIClient()
    keyed.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    assert keyed.get(BASE).status_code == 403 and create(keyed, receiver.url).status_code == 403
    assert APIClient().get(BASE).status_code == 401


def test_staff_manage_provider_endpoints_and_any_tenants(world, staff_client, receiver):
    made = create(staff_client, receiver.url, ["sync.failed", "invoice.finalized"], base=PROVIDER)
    assert made.status_code == 201 and made.json()["tenant"] is None
    assert world.client("acme").get(PROVIDER).status_code == 403
    assert create(world.client("acme"), receiver.url, base=PROVIDER).status_code == 403
    for_acme = create(staff_client, receiver.url, base="/api/v1/admin/tenants/acme/webhook-endpoints/")
    assert for_acme.status_code == 201 and for_acme.json()["tenant"] == "acme"
    assert [e["id"] for e in world.client("acme").get(BASE).json()["results"]] == [for_acme.json()["id"]]
    assert [e["id"] for e in staff_client.get(PROVIDER).json()["results"]] == [made.json()["id"]]


def test_invoice_events_carry_the_invoice_as_the_api_shows_it_and_can_be_resent(world, receiver, queued,
                                                                                django_capture_on_commit_callbacks):
    acme = world.client("acme")
    made = create(acme, receiver.url, ["invoice.paid", "invoice.voided"]).json()
    invoice = world.invoices["acme"]
    with django_capture_on_commit_callbacks(execute=True):
        invoice_mark_paid(invoice=invoice)
        invoice_void(invoice=world.invoices["globex"])  # another tenant's: not acme's endpoint's business
    (delivery_id,) = queued
    assert deliver_webhook.apply(args=[delivery_id]).get() == "succeeded"
    (request,) = receiver.wait_for(1)
    payload = Webhook(made["secret"]).verify(request.body, request.headers)
    assert payload["type"] == "invoice.paid"
    assert payload["data"] == acme.get(f"/api/v1/invoices/{invoice.public_id}/").json()
    assert payload["data"]["status"] == "paid" and payload["data"]["lines"]

    deliveries = acme.get(f"{BASE}{made['id']}/deliveries/").json()["results"]
    (listed,) = deliveries
    assert listed["webhook_id"] == request.headers["webhook-id"] and listed["status"] == "succeeded"
    (attempt,) = listed["attempt_log"]
    assert attempt["status_code"] == 200 and attempt["response_excerpt"] == "ok" and attempt["latency_ms"] >= 0

    with django_capture_on_commit_callbacks(execute=True):
        resent = acme.post(f"{BASE}{made['id']}/deliveries/{listed['webhook_id']}/resend/")
    assert resent.status_code == 202 and resent.json()["status"] == "pending"
    assert queued == [delivery_id, delivery_id]
    deliver_webhook.apply(args=[delivery_id]).get()
    second = receiver.wait_for(2)[1]
    assert second.headers["webhook-id"] == request.headers["webhook-id"] and second.body == request.body
    assert world.client("globex").post(f"{BASE}{made['id']}/deliveries/{listed['webhook_id']}/resend/").status_code == 404
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB").verify(second.body, second.headers)


def test_the_billing_run_emits_created_and_finalized_per_invoice(world, staff_client, receiver, queued):
    from datetime import UTC, datetime

    from metering.services.billing import billing_run

    create(staff_client, receiver.url, ["invoice.created", "invoice.finalized"], base=PROVIDER)
    billing_run(as_of=datetime(2026, 12, 1, 3, tzinfo=UTC), sync=False, finalize_now=True)
    types = [json.loads(d.event.payload)["type"] for d in WebhookDelivery.objects.select_related("event").order_by("pk")]
    # November for acme and globex: a draft each, then both finalized.
    assert sorted(types) == ["invoice.created"] * 2 + ["invoice.finalized"] * 2
    finalized = [json.loads(d.event.payload)["data"] for d in WebhookDelivery.objects.filter(event__type="invoice.finalized")]
    # An invoice with nothing to pay is finalized as paid (docs/plans.md, "After the lines"): its event says so.
    assert all(data["number"] and data["status"] == ("paid" if Decimal(data["amount_due"]) == 0 else "finalized")
               for data in finalized)
    assert any(data["status"] == "finalized" for data in finalized)
