"""Webhooks end to end in one process: events recorded with the change (and only if it commits), signed as
Standard Webhooks says, delivered to a real receiver on 127.0.0.1, retried with one webhook-id, the address
refusal, disabling a failing endpoint. Real workers on Redis: test_webhooks_workers.py."""

import json
import threading
from datetime import timedelta

import pytest
from django.core import mail
from django.db import connection, transaction
from django.utils import timezone
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from portal.kernel import ApplicationError
from tenants.models import (
    WebhookAttempt,
    WebhookDelivery,
    WebhookDeliveryStatus,
    WebhookEndpoint,
    WebhookEvent,
)
from tenants.services.lifecycle import tenant_create, tenant_reactivate, tenant_suspend
from tenants.services.subscriptions import subscription_change_plan, subscription_create, subscription_end
from tenants.tasks import deliver_webhook, sweep_webhooks
from tenants.tests.factories import TenantFactory, import_sample_plans
from tenants.webhooks import delivery as delivery_services
from tenants.webhooks import events
from tenants.webhooks.endpoints import webhook_endpoint_create, webhook_endpoint_rotate_secret
from tenants.webhooks.transport import AddressRefused, check_url

ALL_TENANT_TYPES = ["tenant.created", "tenant.suspended", "tenant.reactivated", "tenant.cancelled",
                    "subscription.started", "subscription.plan_changed", "subscription.ended"]


@pytest.fixture
def queued(monkeypatch):
    """No worker: the deliveries handed over after commit are collected here (tests run them by hand)."""
    ids: list[int] = []
    monkeypatch.setattr(events, "enqueue", lambda delivery_ids: ids.extend(delivery_ids))
    return ids


@pytest.fixture
def fast_retries(settings):
    settings.WEBHOOKS_RETRY_SCHEDULE = [0.0, 0.0, 0.0, 0.0]
    settings.WEBHOOKS_CONNECT_TIMEOUT = 1.0
    settings.WEBHOOKS_READ_TIMEOUT = 1.0
    return settings


def provider_endpoint(url, types=None):
    endpoint, secret = webhook_endpoint_create(tenant=None, url=url, event_types=types or ALL_TENANT_TYPES)
    return endpoint, secret


def verify(secret, request):
    return Webhook(secret).verify(request.body, request.headers)


@pytest.mark.django_db(transaction=True)
def test_an_event_is_signed_delivered_and_verifiable(receiver, queued, fast_retries):
    endpoint, secret = provider_endpoint(receiver.url)
    assert secret.startswith("whsec_")
    tenant = tenant_create(slug="acme", name="Acme", contact_email="billing@acme.example")
    (delivery_id,) = queued
    assert deliver_webhook.apply(args=[delivery_id]).get() == "succeeded"

    (request,) = receiver.wait_for(1)
    payload = verify(secret, request)
    assert payload["type"] == "tenant.created"
    assert payload["data"] == {"slug": "acme", "name": "Acme", "contact_email": "billing@acme.example",
                               "status": "active", "time_zone": "UTC",
                               "status_changed_at": payload["data"]["status_changed_at"],
                               "created_at": payload["data"]["created_at"]}
    assert payload["timestamp"].endswith("Z")
    delivery = WebhookDelivery.objects.get(pk=delivery_id)
    assert request.headers["webhook-id"] == delivery.webhook_id and delivery.webhook_id.startswith("msg_")
    assert request.headers["content-type"] == "application/json"
    assert delivery.status == WebhookDeliveryStatus.SUCCEEDED and delivery.delivered_at
    (attempt,) = delivery.attempt_log.all()
    assert (attempt.succeeded, attempt.status_code, attempt.response_excerpt) == (True, 200, "ok")
    assert attempt.latency_ms is not None and attempt.finished_at >= attempt.started_at
    # Another secret does not verify it.
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB").verify(request.body, request.headers)
    # A duplicate task sends nothing.
    assert deliver_webhook.apply(args=[delivery_id]).get() == "skipped"
    assert len(receiver.requests) == 1
    assert tenant.slug == "acme"


@pytest.mark.django_db(transaction=True)
def test_a_receiver_failing_three_times_then_succeeding_gets_the_event_with_one_id(receiver, queued, fast_retries):
    receiver.script = [(500, 0), (503, 0), (404, 0)]
    endpoint, secret = provider_endpoint(receiver.url)
    tenant_create(slug="acme", name="Acme", contact_email="billing@acme.example")
    (delivery_id,) = queued
    # The task retries itself (eagerly here: the schedule's waits are 0).
    assert deliver_webhook.apply(args=[delivery_id]).get() == "succeeded"
    requests = receiver.wait_for(4)
    assert len(requests) == 4
    assert len({r.headers["webhook-id"] for r in requests}) == 1
    assert [json.loads(verify(secret, r) and r.body)["type"] for r in requests] == ["tenant.created"] * 4
    delivery = WebhookDelivery.objects.get(pk=delivery_id)
    assert (delivery.status, delivery.attempts) == (WebhookDeliveryStatus.SUCCEEDED, 4)
    log = list(delivery.attempt_log.order_by("number").values_list("number", "status_code", "succeeded"))
    assert log == [(1, 500, False), (2, 503, False), (3, 404, False), (4, 200, True)]
    assert WebhookAttempt.objects.get(delivery_id=delivery_id, number=1).response_excerpt == "receiver says no"
    endpoint.refresh_from_db()
    assert endpoint.failing_since is None  # the success cleared it


@pytest.mark.django_db(transaction=True)
def test_timeouts_and_redirects_are_failed_attempts_and_the_last_one_fails_the_delivery(receiver, queued,
                                                                                          fast_retries):
    fast_retries.WEBHOOKS_RETRY_SCHEDULE = [0.0]
    receiver.script = [(200, 2.0), (302, 0)]  # a hang past the 1 s read timeout, then a redirect (not followed)
    provider_endpoint(receiver.url)
    tenant_create(slug="acme", name="Acme", contact_email="billing@acme.example")
    (delivery_id,) = queued
    assert deliver_webhook.apply(args=[delivery_id]).get() == "failed"
    delivery = WebhookDelivery.objects.get(pk=delivery_id)
    assert (delivery.status, delivery.attempts, delivery.next_attempt_at) == (WebhookDeliveryStatus.FAILED, 2, None)
    first, second = delivery.attempt_log.order_by("number")
    assert first.status_code is None and "timed out" in first.error
    assert second.status_code == 302
    assert len(receiver.requests) == 2  # the redirect's target was never asked

    # Resent by hand: a fresh set of attempts, the same webhook-id.
    queued.clear()
    delivery_services.webhook_delivery_resend(delivery=delivery)
    assert queued == [delivery_id]
    assert deliver_webhook.apply(args=[delivery_id]).get() == "succeeded"
    ids = {r.headers["webhook-id"] for r in receiver.wait_for(3)}
    assert ids == {delivery.webhook_id}
    assert delivery.attempt_log.count() == 3


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_change_leaves_no_event(receiver, queued):
    provider_endpoint(receiver.url)
    with pytest.raises(RuntimeError), transaction.atomic():
        tenant_create(slug="acme", name="Acme", contact_email="billing@acme.example")
        assert WebhookEvent.objects.count() == 1  # written with the change...
        raise RuntimeError("the request failed after the change")
    assert WebhookEvent.objects.count() == 0 and WebhookDelivery.objects.count() == 0  # ...and gone with it
    assert queued == []  # nothing handed to a worker
    assert receiver.requests == []


@pytest.mark.django_db
def test_no_endpoint_no_event():
    tenant_create(slug="acme", name="Acme", contact_email="billing@acme.example")
    assert WebhookEvent.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_tenant_and_subscription_changes_emit_their_events_to_the_right_endpoints(receiver, queued):
    versions = import_sample_plans()
    provider, _ = provider_endpoint(receiver.url)
    acme = tenant_create(slug="acme", name="Acme", contact_email="billing@acme.example")
    other = TenantFactory(slug="other")
    mine, _ = webhook_endpoint_create(tenant=acme, url=receiver.url, event_types=["subscription.started",
                                                                                   "tenant.suspended"])
    theirs, _ = webhook_endpoint_create(tenant=other, url=receiver.url, event_types=ALL_TENANT_TYPES)
    sub = subscription_create(tenant=acme, plan_version=versions["starter"])
    sub = subscription_change_plan(subscription=sub, plan_version=versions["pro"])
    tenant_suspend(tenant=acme)
    tenant_reactivate(tenant=acme)
    subscription_end(subscription=sub)
    by_endpoint = {}
    for d in WebhookDelivery.objects.select_related("event").order_by("pk"):
        by_endpoint.setdefault(d.endpoint_id, []).append(d.event.type)
    assert by_endpoint[provider.pk] == ["tenant.created", "subscription.started", "subscription.plan_changed",
                                        "tenant.suspended", "tenant.reactivated", "subscription.ended"]
    assert by_endpoint[mine.pk] == ["subscription.started", "tenant.suspended"]
    assert theirs.pk not in by_endpoint  # another tenant's endpoint hears nothing of acme
    changed = json.loads(WebhookEvent.objects.get(type="subscription.plan_changed").payload)
    assert changed["data"]["plan"] == "pro" and changed["data"]["tenant"] == "acme"
    # One delivery per (event, endpoint), each with its own id: the database holds it.
    ids = list(WebhookDelivery.objects.values_list("webhook_id", flat=True))
    assert len(ids) == len(set(ids)) == len(queued)
    from django.db import IntegrityError

    d = WebhookDelivery.objects.first()
    with pytest.raises(IntegrityError), transaction.atomic():
        WebhookDelivery.objects.create(event=d.event, endpoint=d.endpoint, webhook_id="msg_other")


@pytest.mark.django_db
@pytest.mark.parametrize("url", [
    "http://127.0.0.1:8000/hook", "http://localhost/hook", "http://10.1.2.3/hook", "http://192.168.0.10/",
    "http://169.254.169.254/latest/meta-data/", "http://[::1]/hook", "http://0.0.0.0/", "http://224.0.0.1/",
    "http://[::ffff:127.0.0.1]/", "http://100.64.0.1/",
])
def test_private_addresses_are_refused_on_save_when_not_allowed(settings, url):
    settings.WEBHOOKS_ALLOW_PRIVATE = False
    with pytest.raises(AddressRefused):
        webhook_endpoint_create(tenant=None, url=url, event_types=["tenant.created"])
    assert WebhookEndpoint.objects.count() == 0


@pytest.mark.django_db
def test_a_public_address_passes_the_check(settings):
    settings.WEBHOOKS_ALLOW_PRIVATE = False
    check_url("https://93.184.215.14/hooks")  # an IP literal: no DNS needed
    with pytest.raises(ApplicationError):
        check_url("ftp://93.184.215.14/hooks")
    with pytest.raises(ApplicationError):
        check_url("https://user:pw@93.184.215.14/hooks")


@pytest.mark.django_db(transaction=True)
def test_the_address_is_checked_again_on_each_connection(settings, receiver, queued, fast_retries):
    """Saved while allowed (or before its DNS changed), sent when not: the attempt is refused, never made."""
    fast_retries.WEBHOOKS_RETRY_SCHEDULE = []
    provider_endpoint(receiver.url)
    tenant_create(slug="acme", name="Acme", contact_email="billing@acme.example")
    settings.WEBHOOKS_ALLOW_PRIVATE = False
    (delivery_id,) = queued
    assert deliver_webhook.apply(args=[delivery_id]).get() == "failed"
    assert receiver.requests == []
    attempt = WebhookAttempt.objects.get(delivery_id=delivery_id)
    assert "loopback address" in attempt.error


@pytest.mark.django_db(transaction=True)
def test_an_endpoint_failing_for_days_is_disabled_and_staff_are_emailed(receiver, queued, fast_retries,
                                                                         django_user_model):
    django_user_model.objects.create_user("ops", "ops@provider.example", "x", is_staff=True)
    fast_retries.WEBHOOKS_RETRY_SCHEDULE = []
    fast_retries.WEBHOOKS_DISABLE_AFTER_DAYS = 3
    receiver.default = (500, 0)
    endpoint, _ = provider_endpoint(receiver.url)
    tenant_create(slug="acme", name="Acme", contact_email="billing@acme.example")
    tenant_create(slug="globex", name="Globex", contact_email="billing@globex.example")
    first, second = queued
    assert deliver_webhook.apply(args=[first]).get() == "failed"
    endpoint.refresh_from_db()
    assert endpoint.enabled and endpoint.failing_since is not None
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(failing_since=timezone.now() - timedelta(days=3, minutes=1))
    tenant_create(slug="initech", name="Initech", contact_email="billing@initech.example")  # pending meanwhile
    assert deliver_webhook.apply(args=[second]).get() == "failed"
    endpoint.refresh_from_db()
    assert not endpoint.enabled and "3 days" in endpoint.disabled_reason
    third = WebhookDelivery.objects.get(event__payload__contains="initech")
    assert third.status == WebhookDeliveryStatus.FAILED and "disabled" in third.last_error
    (message,) = [m for m in mail.outbox if "Webhook endpoint disabled" in m.subject]
    assert message.to == ["ops@provider.example"] and receiver.url in message.body
    # A disabled endpoint gets no new events.
    tenant_create(slug="hooli", name="Hooli", contact_email="billing@hooli.example")
    assert not WebhookEvent.objects.filter(payload__contains="hooli").exists()
    with pytest.raises(ApplicationError):
        delivery_services.webhook_delivery_resend(delivery=third)


@pytest.mark.django_db(transaction=True)
def test_a_rotated_secret_signs_beside_the_old_one_for_the_overlap(receiver, queued, fast_retries):
    endpoint, old = provider_endpoint(receiver.url)
    endpoint, new = webhook_endpoint_rotate_secret(endpoint=endpoint)
    tenant_create(slug="acme", name="Acme", contact_email="billing@acme.example")
    deliver_webhook.apply(args=[queued[0]]).get()
    (request,) = receiver.wait_for(1)
    assert verify(new, request)["type"] == "tenant.created"
    assert verify(old, request)["type"] == "tenant.created"
    fast_retries.WEBHOOKS_SECRET_OVERLAP_HOURS = 0
    endpoint, newest = webhook_endpoint_rotate_secret(endpoint=endpoint)
    tenant_create(slug="globex", name="Globex", contact_email="billing@globex.example")
    deliver_webhook.apply(args=[queued[1]]).get()
    request = receiver.wait_for(2)[1]
    assert verify(newest, request)
    with pytest.raises(WebhookVerificationError):
        verify(new, request)


@pytest.mark.django_db(transaction=True)
def test_the_sweep_queues_deliveries_whose_task_was_lost_or_whose_lease_ended(receiver, queued):
    provider_endpoint(receiver.url)
    tenant_create(slug="acme", name="Acme", contact_email="billing@acme.example")
    (delivery_id,) = queued
    queued.clear()
    assert sweep_webhooks.apply().get() == {"requeued": 0}  # due moments ago: its task may still come
    past = timezone.now() - timedelta(minutes=5)
    WebhookDelivery.objects.filter(pk=delivery_id).update(next_attempt_at=past, lease_token="dead",
                                                          lease_until=timezone.now() + timedelta(minutes=1))
    assert sweep_webhooks.apply().get() == {"requeued": 0}  # a worker holds it (its lease is in force)
    assert deliver_webhook.apply(args=[delivery_id]).get() == "skipped"
    WebhookDelivery.objects.filter(pk=delivery_id).update(lease_until=timezone.now() - timedelta(seconds=1))
    assert sweep_webhooks.apply().get() == {"requeued": 1} and queued == [delivery_id]
    assert deliver_webhook.apply(args=[delivery_id]).get() == "succeeded"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_workers_claiming_at_once_never_both_send_an_attempt(receiver, queued):
    """Many threads (each its own database connection) attempt the same delivery at the same moment: the
    receiver gets it once."""
    receiver.default = (200, 0.3)
    provider_endpoint(receiver.url)
    tenant_create(slug="acme", name="Acme", contact_email="billing@acme.example")
    (delivery_id,) = queued
    barrier = threading.Barrier(8)
    outcomes = []

    def attempt():
        try:
            barrier.wait()
            outcomes.append(delivery_services.webhook_delivery_attempt(delivery_id=delivery_id).outcome)
        finally:
            connection.close()

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["skipped"] * 7 + ["succeeded"]
    assert len(receiver.requests) == 1
    assert WebhookAttempt.objects.filter(delivery_id=delivery_id).count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_long_wait_is_left_to_the_sweep(receiver, queued, settings):
    settings.WEBHOOKS_RETRY_SCHEDULE = [3600.0]
    receiver.script = [(500, 0)]
    provider_endpoint(receiver.url)
    tenant_create(slug="acme", name="Acme", contact_email="billing@acme.example")
    (delivery_id,) = queued
    queued.clear()
    assert deliver_webhook.apply(args=[delivery_id]).get() == "retry"  # no retry message held for an hour
    delivery = WebhookDelivery.objects.get(pk=delivery_id)
    assert delivery.status == WebhookDeliveryStatus.PENDING and delivery.next_attempt_at > timezone.now()
    assert sweep_webhooks.apply().get() == {"requeued": 0} and queued == []
    WebhookDelivery.objects.filter(pk=delivery_id).update(next_attempt_at=timezone.now() - timedelta(minutes=1))
    assert sweep_webhooks.apply().get() == {"requeued": 1} and queued == [delivery_id]
    assert deliver_webhook.apply(args=[delivery_id]).get() == "succeeded"


@pytest.fixture
def sent(monkeypatch):
    """The ids handed to the broker, through the real enqueue (batches of an endpoint's deliveries)."""
    from tenants import tasks

    ids: list[int] = []
    monkeypatch.setattr(tasks.deliver_webhooks, "delay", ids.extend)
    monkeypatch.setattr(tasks.deliver_webhook, "delay", ids.append)
    return ids


@pytest.mark.django_db(transaction=True)
def test_a_transaction_hands_its_deliveries_over_once_and_a_rolled_back_part_not_at_all(receiver, sent):
    queued = sent
    provider_endpoint(receiver.url)
    with transaction.atomic():
        for n in range(3):
            tenant_create(slug=f"t{n}", name="T", contact_email="billing@t.example")
    assert queued == list(WebhookDelivery.objects.order_by("pk").values_list("pk", flat=True))  # in one call
    queued.clear()
    with transaction.atomic():
        tenant_create(slug="kept", name="Kept", contact_email="billing@kept.example")
        with pytest.raises(RuntimeError), transaction.atomic():
            tenant_create(slug="dropped", name="Dropped", contact_email="billing@dropped.example")
            raise RuntimeError
        tenant_create(slug="after", name="After", contact_email="billing@after.example")
    kept = WebhookDelivery.objects.filter(event__payload__contains='"kept"').get().pk
    after = WebhookDelivery.objects.filter(event__payload__contains='"after"').get().pk
    assert set(queued) == {kept, after}  # (SQLite may give "after" the dropped row's id: then twice, harmless)
    assert not WebhookEvent.objects.filter(payload__contains='"dropped"').exists()
    queued.clear()
    with pytest.raises(RuntimeError), transaction.atomic():
        tenant_create(slug="gone", name="Gone", contact_email="billing@gone.example")
        raise RuntimeError
    tenant_create(slug="next", name="Next", contact_email="billing@next.example")  # a new transaction
    assert queued == [WebhookDelivery.objects.get(event__payload__contains='"next"').pk]


@pytest.mark.django_db(transaction=True)
def test_batches_are_per_endpoint_and_a_silent_receiver_does_not_hold_up_its_batch(receiver, monkeypatch, settings):
    from tenants import tasks

    settings.WEBHOOKS_CONNECT_TIMEOUT = 1.0
    sent: list = []
    monkeypatch.setattr(tasks.deliver_webhooks, "delay", lambda ids: sent.append(("batch", list(ids))))
    monkeypatch.setattr(tasks.deliver_webhook, "delay", lambda pk: sent.append(("one", pk)))
    live, _ = provider_endpoint(receiver.url)
    dead, _ = provider_endpoint("http://127.0.0.1:9/nobody-listens")
    with transaction.atomic():
        for n in range(3):
            tenant_create(slug=f"t{n}", name="T", contact_email="billing@t.example")
    batches = [ids for kind, ids in sent if kind == "batch"]
    assert len(batches) == 2
    for ids in batches:
        assert len({WebhookDelivery.objects.get(pk=pk).endpoint_id for pk in ids}) == 1 and len(ids) == 3
    dead_ids = next(ids for ids in batches if WebhookDelivery.objects.get(pk=ids[0]).endpoint_id == dead.pk)
    outcome = tasks.deliver_webhooks.apply(args=[dead_ids]).get()
    assert outcome == {"retry": 1, "left": 2}
    assert list(WebhookDelivery.objects.filter(pk__in=dead_ids).order_by("pk").values_list("attempts", flat=True)) == [1, 0, 0]
    live_ids = next(ids for ids in batches if ids is not dead_ids)
    assert tasks.deliver_webhooks.apply(args=[live_ids]).get() == {"succeeded": 3}
    assert len(receiver.requests) == 3
