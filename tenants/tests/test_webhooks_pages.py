"""Webhooks in the tenant area (owner only, own tenant only) and in the admin (every endpoint, delivery and
attempt; the secret shown once; resend). Pages are driven through HTTP with the test client."""

import re

import pytest
from standardwebhooks import Webhook

from tenants.models import TenantRole, WebhookAttempt, WebhookDelivery, WebhookDeliveryStatus, WebhookEndpoint
from tenants.services import identity as svc
from tenants.services.lifecycle import tenant_suspend
from tenants.services.subscriptions import subscription_create
from tenants.tasks import deliver_webhook
from tenants.tests.factories import TenantFactory, import_sample_plans
from tenants.webhooks import events
from tenants.webhooks.endpoints import webhook_endpoint_create

PASSWORD = "Corr3ct-horse"


@pytest.fixture
def queued(monkeypatch):
    ids: list[int] = []
    monkeypatch.setattr(events, "enqueue", lambda delivery_ids: ids.extend(delivery_ids))
    return ids


@pytest.fixture
def acme(local_identity, db):
    tenant = TenantFactory(slug="acme", name="Acme Corp")
    owner, _ = svc.tenant_user_create(tenant=tenant, email="ann@acme.example", role=TenantRole.OWNER, password=PASSWORD)
    member, _ = svc.tenant_user_create(tenant=tenant, email="bob@acme.example", password=PASSWORD)
    return tenant, owner, member


def secret_on(page: str) -> str:
    return re.search(r"whsec_[A-Za-z0-9+/=]+", page).group(0)


def test_the_owner_adds_an_endpoint_sees_its_deliveries_and_resends_one(client, acme, receiver, queued,
                                                                        django_capture_on_commit_callbacks):
    tenant, owner, _member = acme
    client.force_login(owner.user)
    page = client.post("/tenant/webhooks/", {"url": receiver.url, "description": "ops",
                                             "event_types": ["subscription.started", "invoice.paid"]})
    assert page.status_code == 200
    secret = secret_on(page.content.decode())
    endpoint = WebhookEndpoint.objects.get(tenant=tenant)
    assert endpoint.event_types == ["invoice.paid", "subscription.started"]
    listing = client.get("/tenant/webhooks/").content.decode()
    assert receiver.url in listing and "whsec_" not in listing  # the secret is never shown again
    assert "sync.failed" not in listing  # provider-only types are not offered

    with django_capture_on_commit_callbacks(execute=True):
        subscription_create(tenant=tenant, plan_version=import_sample_plans()["pro"])
    (delivery_id,) = queued
    receiver.script = [(500, 0)]
    deliver_webhook.apply(args=[delivery_id]).get()  # first attempt fails (retried later)
    detail = client.get(f"/tenant/webhooks/{endpoint.pk}/").content.decode()
    delivery = WebhookDelivery.objects.get()
    assert delivery.webhook_id in detail and "HTTP 500" in detail and "receiver says no" in detail

    with django_capture_on_commit_callbacks(execute=True):
        answer = client.post(f"/tenant/webhooks/{endpoint.pk}/deliveries/{delivery.webhook_id}/resend/")
    assert answer.status_code == 302
    assert queued == [delivery_id, delivery_id]
    deliver_webhook.apply(args=[delivery_id]).get()
    assert WebhookDelivery.objects.get().status == WebhookDeliveryStatus.SUCCEEDED
    last = receiver.wait_for(2)[-1]
    assert Webhook(secret).verify(last.body, last.headers)["type"] == "subscription.started"
    assert "HTTP 200" in client.get(f"/tenant/webhooks/{endpoint.pk}/").content.decode()

    rotated = client.post(f"/tenant/webhooks/{endpoint.pk}/", {"action": "rotate"}).content.decode()
    assert secret_on(rotated) != secret
    client.post(f"/tenant/webhooks/{endpoint.pk}/", {"action": "disable"})
    assert not WebhookEndpoint.objects.get().enabled
    client.post(f"/tenant/webhooks/{endpoint.pk}/", {"action": "enable"})
    assert WebhookEndpoint.objects.get().enabled
    assert client.post(f"/tenant/webhooks/{endpoint.pk}/", {"action": "delete"}).status_code == 302
    assert not WebhookEndpoint.objects.exists() and not WebhookAttempt.objects.exists()


def test_members_and_other_tenants_get_nothing(client, acme, receiver):
    tenant, owner, member = acme
    endpoint, _ = webhook_endpoint_create(tenant=tenant, url=receiver.url, event_types=["tenant.suspended"])
    client.force_login(member.user)
    assert client.get("/tenant/webhooks/").status_code == 403
    assert client.get(f"/tenant/webhooks/{endpoint.pk}/").status_code == 403
    other = TenantFactory(slug="globex")
    stranger, _ = svc.tenant_user_create(tenant=other, email="gil@globex.example", role=TenantRole.OWNER,
                                         password=PASSWORD)
    client.force_login(stranger.user)
    assert receiver.url not in client.get("/tenant/webhooks/").content.decode()
    assert client.get(f"/tenant/webhooks/{endpoint.pk}/").status_code == 404
    assert client.post(f"/tenant/webhooks/{endpoint.pk}/", {"action": "delete"}).status_code == 404
    assert client.post(f"/tenant/webhooks/{endpoint.pk}/deliveries/msg_x/resend/").status_code == 404
    assert WebhookEndpoint.objects.filter(pk=endpoint.pk).exists()


def test_the_owner_is_told_when_an_address_is_refused(client, acme, settings):
    settings.WEBHOOKS_ALLOW_PRIVATE = False
    client.force_login(acme[1].user)
    page = client.post("/tenant/webhooks/", {"url": "http://192.168.1.20/hooks", "event_types": ["invoice.paid"]})
    assert page.status_code == 200 and "private address" in page.content.decode()
    assert not WebhookEndpoint.objects.exists()


def test_staff_add_a_provider_endpoint_in_the_admin_and_resend_a_delivery(client, acme, receiver, queued,
                                                                           django_user_model,
                                                                           django_capture_on_commit_callbacks):
    staff = django_user_model.objects.create_superuser("boss", "boss@example.com", "Corr3ct-Horse-Battery!")
    client.force_login(staff)
    page = client.post("/admin/tenants/webhookendpoint/add/", {
        "tenant": "", "url": receiver.url, "description": "crm", "event_types": ["tenant.suspended", "sync.failed"]})
    assert page.status_code == 200, page.content.decode()[:2000]
    secret = secret_on(page.content.decode())
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.tenant is None and endpoint.event_types == ["tenant.suspended", "sync.failed"]
    assert "whsec_" not in client.get(f"/admin/tenants/webhookendpoint/{endpoint.pk}/change/").content.decode()

    with django_capture_on_commit_callbacks(execute=True):
        tenant_suspend(tenant=acme[0])
    deliver_webhook.apply(args=[queued[0]]).get()
    delivery = WebhookDelivery.objects.get()
    change = client.get(f"/admin/tenants/webhookdelivery/{delivery.pk}/change/").content.decode()
    assert delivery.webhook_id in change and "200" in change
    assert client.get("/admin/tenants/webhookevent/").status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        client.post("/admin/tenants/webhookdelivery/", {"action": "resend", "_selected_action": [delivery.pk]})
    deliver_webhook.apply(args=[queued[-1]]).get()
    first, second = receiver.wait_for(2)
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert Webhook(secret).verify(second.body, second.headers)["data"]["slug"] == "acme"

    settings_page = client.post("/admin/tenants/webhookendpoint/", {"action": "rotate_secret",
                                                                    "_selected_action": [endpoint.pk]})
    assert secret_on(settings_page.content.decode()) != secret
    client.post("/admin/tenants/webhookendpoint/", {"action": "disable", "_selected_action": [endpoint.pk]})
    assert not WebhookEndpoint.objects.get().enabled


def test_the_admin_refuses_a_provider_only_type_on_a_tenant_endpoint(client, acme, receiver, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("boss", "boss@example.com", "Corr3ct-Horse-Battery!"))
    page = client.post("/admin/tenants/webhookendpoint/add/", {
        "tenant": acme[0].pk, "url": receiver.url, "event_types": ["sync.failed"]})
    assert page.status_code == 200 and "Only provider endpoints receive sync.failed" in page.content.decode()
    assert not WebhookEndpoint.objects.exists()


def test_a_tenant_added_in_the_admin_is_announced(client, django_user_model, receiver, queued,
                                                  django_capture_on_commit_callbacks):
    client.force_login(django_user_model.objects.create_superuser("boss", "boss@example.com", "Corr3ct-Horse-Battery!"))
    webhook_endpoint_create(tenant=None, url=receiver.url, event_types=["tenant.created"])
    with django_capture_on_commit_callbacks(execute=True):
        answer = client.post("/admin/tenants/tenant/add/", {
            "slug": "hooli", "name": "Hooli", "contact_email": "billing@hooli.example", "time_zone": "UTC",
            "subscriptions-TOTAL_FORMS": "0", "subscriptions-INITIAL_FORMS": "0"})
    assert answer.status_code == 302, answer.content.decode()[:3000]
    deliver_webhook.apply(args=[queued[0]]).get()
    (request,) = receiver.wait_for(1)
    assert b'"slug":"hooli"' in request.body


def test_staff_change_an_endpoints_url_and_events_in_the_admin(client, django_user_model, receiver, settings):
    client.force_login(django_user_model.objects.create_superuser("boss", "boss@example.com", "Corr3ct-Horse-Battery!"))
    endpoint, _ = webhook_endpoint_create(tenant=None, url=receiver.url, event_types=["tenant.created"])
    answer = client.post(f"/admin/tenants/webhookendpoint/{endpoint.pk}/change/", {
        "url": receiver.url + "/v2", "description": "moved", "event_types": ["invoice.paid", "sync.failed"]})
    assert answer.status_code == 302, answer.content.decode()[:3000]
    endpoint.refresh_from_db()
    assert (endpoint.url, endpoint.event_types) == (receiver.url + "/v2", ["invoice.paid", "sync.failed"])
    settings.WEBHOOKS_ALLOW_PRIVATE = False
    refused = client.post(f"/admin/tenants/webhookendpoint/{endpoint.pk}/change/", {
        "url": "http://10.0.0.1/hooks", "description": "", "event_types": ["invoice.paid"]})
    assert refused.status_code == 200 and "private address" in refused.content.decode()
    endpoint.refresh_from_db()
    assert endpoint.url == receiver.url + "/v2"
