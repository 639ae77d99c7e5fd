"""Webhook delivery by real Celery workers on Redis (CI): retries after failures keep one webhook-id, a worker
killed mid-delivery loses nothing (its lease ends, the sweep queues it, another worker sends it), and two
workers handed the same delivery never both send it."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from celery import current_app as app
from django.conf import settings
from django.db import connection
from django.utils import timezone

from tenants.models import WebhookAttempt, WebhookDelivery, WebhookDeliveryStatus
from tenants.services.lifecycle import tenant_create
from tenants.tasks import deliver_webhook, sweep_webhooks
from tenants.webhooks.endpoints import webhook_endpoint_create

pytestmark = [pytest.mark.redis, pytest.mark.postgres]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def workers(transactional_db, tmp_path, monkeypatch):
    """Start workers on a queue of this test's own (their retries and the sweep's tasks go there too: it is
    their default queue); this process queues to it as well. Yields start(name) -> Popen."""
    queue = f"webhooks-test-{os.getpid()}-{int(time.time() * 1000)}"
    db = settings.DATABASES["default"]
    procs = []

    def start(name):
        # The environment as the test has set it by now (monkeypatch.setenv reaches the worker's settings).
        env = dict(os.environ, CELERY_TASK_DEFAULT_QUEUE=queue, PORTAL_VAR_DIR=str(settings.VAR_DIR),
                   DATABASE_URL=f"postgres://{db['USER'] or 'postgres'}@{db['HOST'] or '127.0.0.1'}:"
                                f"{db['PORT'] or 5432}/{connection.settings_dict['NAME']}")
        log = tmp_path / f"{name}.log"
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "portal", "worker", "--pool=solo", "-n", f"{name}@%h", "-Q", queue,
             "--without-heartbeat", "--without-gossip", "--without-mingle", "--loglevel=INFO"],
            cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
        procs.append(proc)
        deadline = time.time() + 60
        while "ready." not in log.read_text():
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"worker {name} did not start:\n{log.read_text()}")
            time.sleep(0.2)
        return proc

    default_queue = app.conf.task_default_queue
    app.conf.task_default_queue = queue
    try:
        yield start
    finally:
        app.conf.task_default_queue = default_queue
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()


def wait_until(check, timeout=60):
    deadline = time.time() + timeout
    while not check():
        if time.time() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.1)


def test_a_receiver_failing_three_times_then_succeeding_gets_it_with_one_id(workers, receiver, monkeypatch):
    monkeypatch.setenv("WEBHOOKS_RETRY_SCHEDULE", "0.5,0.5,0.5,0.5")
    workers("w1")
    receiver.script = [(500, 0), (502, 0), (429, 0)]
    _endpoint, secret = webhook_endpoint_create(tenant=None, url=receiver.url, event_types=["tenant.created"])
    tenant_create(slug="acme", name="Acme", contact_email="billing@acme.example")  # commits: the worker is told

    requests = receiver.wait_for(4)
    delivery = WebhookDelivery.objects.get()
    wait_until(lambda: WebhookDelivery.objects.get().status == WebhookDeliveryStatus.SUCCEEDED)
    assert {r.headers["webhook-id"] for r in requests} == {delivery.webhook_id}
    from standardwebhooks import Webhook

    assert all(Webhook(secret).verify(r.body, r.headers)["type"] == "tenant.created" for r in requests)
    assert list(WebhookAttempt.objects.order_by("number").values_list("status_code", flat=True)) == [500, 502, 429, 200]
    time.sleep(1)
    assert len(receiver.requests) == 4


def test_a_worker_killed_mid_delivery_loses_nothing(workers, receiver, monkeypatch):
    monkeypatch.setenv("WEBHOOKS_CONNECT_TIMEOUT", "1")
    monkeypatch.setenv("WEBHOOKS_READ_TIMEOUT", "3")
    monkeypatch.setenv("WEBHOOKS_LEASE_SECONDS", "5")
    doomed = workers("doomed")
    receiver.script = [(200, 30)]  # the first request hangs: its worker is killed while it waits
    webhook_endpoint_create(tenant=None, url=receiver.url, event_types=["tenant.created"])
    tenant_create(slug="acme", name="Acme", contact_email="billing@acme.example")
    (first,) = receiver.wait_for(1)
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(timeout=10)

    delivery = WebhookDelivery.objects.get()
    assert delivery.status == WebhookDeliveryStatus.PENDING and delivery.lease_until is not None
    workers("rescuer")
    wait_until(lambda: timezone.now() > WebhookDelivery.objects.get().lease_until, timeout=30)
    assert sweep_webhooks.apply_async().get(timeout=60) == {"requeued": 1}  # the beat task, run on the rescuer
    wait_until(lambda: WebhookDelivery.objects.get().status == WebhookDeliveryStatus.SUCCEEDED)
    second = receiver.requests[1]
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == delivery.webhook_id
    assert first.body == second.body
    killed, rescued = WebhookAttempt.objects.order_by("number")
    assert killed.finished_at is None and killed.status_code is None  # the dead worker's attempt, left open
    assert rescued.succeeded and rescued.status_code == 200


def test_two_workers_never_both_send_the_same_attempt(workers, receiver):
    workers("w1")
    workers("w2")
    receiver.default = (200, 1.0)  # slow: both workers hold a copy of the task while the first is sending
    webhook_endpoint_create(tenant=None, url=receiver.url, event_types=["tenant.created"])
    tenant_create(slug="acme", name="Acme", contact_email="billing@acme.example")
    delivery = WebhookDelivery.objects.get()
    for _ in range(6):  # duplicates of its task, taken by both workers while the first copy is being sent
        deliver_webhook.apply_async(args=[delivery.pk])
    wait_until(lambda: WebhookDelivery.objects.get().status == WebhookDeliveryStatus.SUCCEEDED)
    time.sleep(3)  # every copy has run by now (each finds the delivery leased or done)
    assert len(receiver.requests) == 1
    assert WebhookAttempt.objects.count() == 1


def test_a_transactions_events_go_out_in_batches_each_once(workers, receiver):
    from django.db import transaction

    workers("w1")
    workers("w2")
    webhook_endpoint_create(tenant=None, url=receiver.url, event_types=["tenant.created"])
    with transaction.atomic():  # 45 deliveries: three messages (20, 20, 5) once it commits
        for n in range(45):
            tenant_create(slug=f"t{n}", name=f"T{n}", contact_email=f"billing@t{n}.example")
    requests = receiver.wait_for(45)
    wait_until(lambda: not WebhookDelivery.objects.exclude(status=WebhookDeliveryStatus.SUCCEEDED).exists())
    time.sleep(1)
    assert len(receiver.requests) == 45
    assert {r.headers["webhook-id"] for r in requests} == set(WebhookDelivery.objects.values_list("webhook_id", flat=True))
