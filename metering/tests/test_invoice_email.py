"""Invoice email when the mail server is down: recorded with the invoice, retried, failed visibly, resent from the admin."""

import io
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib.admin.models import LogEntry
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from metering.models import HourlyUsage, Invoice, InvoiceStatus
from metering.services.billing.invoices import invoice_void
from tenants.models import DeliveryStatus, EmailDelivery, EmailKind, Metric
from tenants.services import email as email_services
from tenants.services.email import _enqueue as enqueue_on_the_broker
from tenants.services.subscriptions import subscription_create
from tenants.tasks import deliver_emails, sweep_emails
from tenants.tests.factories import TenantFactory, import_sample_plans
from tenants.tests.smtp import SmtpServer, free_port, smtp_fixture  # noqa: F401  (the `smtp` fixture)

OCT = datetime(2026, 10, 1, tzinfo=UTC)
AS_OF = "2026-11-01T02:00:00Z"
FAILED_LINK = "/admin/tenants/emaildelivery/?status__exact=failed"


@pytest.fixture
def staff(client, django_user_model, db):
    user = django_user_model.objects.create_superuser("boss", "boss@example.com", "Corr3ct-Horse-Battery!")
    client.force_login(user)
    client.user = user
    return client


def _customer(slug="acme", calls=1500):
    versions = import_sample_plans()
    tenant = TenantFactory(slug=slug)
    subscription_create(tenant=tenant, plan_version=versions["starter"], started_at=OCT, with_trial=False)
    HourlyUsage.objects.create(tenant=tenant, metric=Metric.objects.get(code="api_calls"),
                               hour=OCT + timedelta(days=2), value=Decimal(calls))
    return tenant


def _run_billing(*extra):
    call_command("run_billing", "--as-of", AS_OF, "--finalize-now", "--no-sync", *extra, stdout=io.StringIO())


def _failed_count(page: str) -> int:
    import re

    match = re.search(rf'<a href="{re.escape(FAILED_LINK)}">(\d+)</a>', page)
    assert match, "the dashboard has no failed-email count linked to the admin list"
    return int(match.group(1))


def test_smtp_down_while_billing_finalizes_then_resend_from_the_admin(
    smtp, staff, settings, django_capture_on_commit_callbacks
):
    settings.EMAIL_MAX_ATTEMPTS = 3
    _customer()
    with django_capture_on_commit_callbacks(execute=True):
        _run_billing()
    invoice = Invoice.objects.get()
    assert invoice.status == InvoiceStatus.FINALIZED and invoice.number == "INV-2026-000001"  # the invoice stands
    delivery = EmailDelivery.objects.get()
    assert (delivery.kind, delivery.recipient, delivery.about) == (EmailKind.INVOICE, "billing@acme.example", invoice)
    assert delivery.status == DeliveryStatus.FAILED and delivery.attempts == 3
    assert "Connection refused" in delivery.last_error and delivery.sent_at is None
    assert smtp.messages == []

    # The provider sees it: on the dashboard (linked to the filtered list), the list, the invoice.
    assert _failed_count(staff.get("/admin/dashboard/").content.decode()) == 1
    listing = staff.get(FAILED_LINK + "&q=acme").content.decode()
    assert "billing@acme.example" in listing and "Connection refused" in listing
    assert "Failed to billing@acme.example, 3 attempt(s)" in staff.get(f"/admin/metering/invoice/{invoice.pk}/change/").content.decode()
    assert "billing@acme.example" not in staff.get("/admin/tenants/emaildelivery/?status__exact=sent").content.decode()
    assert invoice.number in staff.get("/admin/metering/invoice/?email=failed").content.decode()

    # The server is back: Resend (a POST of the admin action) sends it, once.
    smtp.start()
    with django_capture_on_commit_callbacks(execute=True):
        response = staff.post("/admin/tenants/emaildelivery/", {"action": "resend", "_selected_action": [delivery.pk]})
    assert response.status_code == 302
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SENT and delivery.sent_at is not None and delivery.attempts == 1
    assert (delivery.resends, delivery.resent_by) == (1, staff.user) and delivery.resent_at is not None
    assert LogEntry.objects.filter(object_id=str(delivery.pk), change_message="Resent").exists()
    assert len(smtp.messages) == 1
    assert smtp.messages[0]["To"] == "billing@acme.example" and "INV-2026-000001" in smtp.messages[0]["Subject"]
    assert "Total: 1.50 USD" in smtp.bodies()[0]
    assert smtp.attachments() == [("INV-2026-000001.pdf", "application/pdf")]  # through a real SMTP server
    assert _failed_count(staff.get("/admin/dashboard/").content.decode()) == 0

    # A duplicate task (a redelivered message) sends nothing again.
    deliver_emails.apply(args=[[delivery.pk]]).get()
    assert len(smtp.messages) == 1


def test_a_permanent_refusal_fails_at_once(db, smtp, settings, django_capture_on_commit_callbacks):
    smtp.start()
    smtp.refused.add("billing@acme.example")
    _customer()
    with django_capture_on_commit_callbacks(execute=True):
        _run_billing()
    delivery = EmailDelivery.objects.get()
    assert delivery.status == DeliveryStatus.FAILED and delivery.attempts == 1
    assert "550" in delivery.last_error and smtp.messages == []


def test_broker_down_at_finalization_loses_nothing_the_sweep_sends_it(
    db, smtp, monkeypatch, django_capture_on_commit_callbacks
):
    """The billing run succeeds with the broker down; the committed email is found and sent by the sweep."""
    from kombu.exceptions import OperationalError

    def broker_down(*args, **kwargs):
        raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    eager = email_services._enqueue
    monkeypatch.setattr(email_services, "_enqueue", enqueue_on_the_broker)
    monkeypatch.setattr(deliver_emails, "delay", broker_down)
    _customer()
    with django_capture_on_commit_callbacks(execute=True):
        _run_billing()
    delivery = EmailDelivery.objects.get()
    assert delivery.status == DeliveryStatus.PENDING and delivery.attempts == 0

    monkeypatch.setattr(email_services, "_enqueue", eager)  # the broker is back
    smtp.start()
    assert sweep_emails.apply().get()["requeued"] == 0  # due moments ago: its task may still come
    EmailDelivery.objects.update(next_attempt_at=timezone.now() - timedelta(minutes=10))
    assert sweep_emails.apply().get()["requeued"] == 1
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SENT and len(smtp.messages) == 1
    assert sweep_emails.apply().get()["requeued"] == 0 and len(smtp.messages) == 1


def test_one_failed_attempt_is_recorded_with_its_backoff(db, smtp, settings, monkeypatch, django_capture_on_commit_callbacks):
    settings.EMAIL_RETRY_DELAY = 60
    monkeypatch.setattr(email_services, "_enqueue", lambda ids: None)  # no worker: attempts made by hand below
    _customer()
    with django_capture_on_commit_callbacks(execute=True):
        _run_billing()
    delivery = EmailDelivery.objects.get()
    before = timezone.now()
    result = email_services.email_deliveries_send(delivery_ids=[delivery.pk])
    delivery.refresh_from_db()
    assert result.retry == [delivery.pk] and delivery.status == DeliveryStatus.PENDING and delivery.attempts == 1
    assert timedelta(seconds=59) < delivery.next_attempt_at - before < timedelta(seconds=62)
    assert 55 < result.countdown() <= 60
    email_services.email_deliveries_send(delivery_ids=[delivery.pk])
    delivery.refresh_from_db()
    assert delivery.attempts == 2 and timedelta(seconds=119) < delivery.next_attempt_at - before < timedelta(seconds=125)
    smtp.start()
    assert email_services.email_deliveries_send(delivery_ids=[delivery.pk]).sent == [delivery.pk]
    assert email_services.email_deliveries_send(delivery_ids=[delivery.pk]).skipped == [delivery.pk]
    assert len(smtp.messages) == 1


def test_voiding_an_unsent_invoice_cancels_its_email(smtp, monkeypatch, staff, django_capture_on_commit_callbacks):
    monkeypatch.setattr(email_services, "_enqueue", lambda ids: None)  # the task never came
    _customer()
    with django_capture_on_commit_callbacks(execute=True):
        _run_billing()
    invoice_void(invoice=Invoice.objects.get(), reason="wrong plan")
    delivery = EmailDelivery.objects.get()
    assert delivery.status == DeliveryStatus.CANCELLED and "voided" in delivery.last_error
    smtp.start()
    email_services.email_deliveries_send(delivery_ids=[delivery.pk])
    assert smtp.messages == []
    # Resend refuses it, with the reason.
    response = staff.post("/admin/tenants/emaildelivery/", {"action": "resend", "_selected_action": [delivery.pk]},
                          follow=True)
    assert "was cancelled" in response.content.decode()
    assert smtp.messages == []


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_workers_sending_the_same_email_send_it_once(smtp, monkeypatch):
    """Two tasks for one email at the same moment (a redelivered message): the row lock lets one send."""
    monkeypatch.setattr(email_services, "_enqueue", lambda ids: None)
    _customer()
    _run_billing()
    delivery = EmailDelivery.objects.get()
    smtp.delay = 1.0
    smtp.start()
    results, errors = [], []
    barrier = threading.Barrier(2)

    def send():
        try:
            barrier.wait()
            results.append(email_services.email_deliveries_send(delivery_ids=[delivery.pk]))
        except Exception as exc:  # asserted below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=send) for _ in range(2)]
    [thread.start() for thread in threads]
    [thread.join() for thread in threads]
    assert not errors, errors
    assert sorted((len(r.sent), len(r.skipped)) for r in results) == [(0, 1), (1, 0)]
    assert len(smtp.messages) == 1
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SENT and delivery.attempts == 1


# --- on a real worker (Redis broker) -----------------------------------------------------------------


@pytest.fixture
def mail_down(monkeypatch):
    """The worker's mail server: a port where nothing listens yet, short backoff (0.5 s, 1 s, 2 s …)."""
    port = free_port()
    monkeypatch.setenv("EMAIL_URL", f"smtp://127.0.0.1:{port}")
    monkeypatch.setenv("EMAIL_RETRY_DELAY", "0.5")
    monkeypatch.setenv("EMAIL_MAX_ATTEMPTS", "4")
    server = SmtpServer(port)
    yield server
    server.stop()


@pytest.fixture
def mail_worker(mail_down, celery_worker_process, monkeypatch):
    """A real worker on the test's queue; this process (billing, the admin) queues emails to it."""
    app = deliver_emails.app  # the project's Celery app (shared_task binds to it)
    monkeypatch.setattr(email_services, "_enqueue", enqueue_on_the_broker)
    default_queue = app.conf.task_default_queue
    app.conf.task_default_queue = celery_worker_process  # (Celery's settings object cannot be monkeypatched)
    yield mail_down
    app.conf.task_default_queue = default_queue


def _wait_for(check, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        delivery = EmailDelivery.objects.get()
        if check(delivery):
            return delivery
        time.sleep(0.2)
    raise AssertionError(f"timed out; the email is {EmailDelivery.objects.values().get()}")


@pytest.mark.redis
def test_worker_retries_with_backoff_and_sends_when_the_server_is_back(mail_worker):
    _customer()
    _run_billing()  # commits: the email's task goes to the worker
    delivery = _wait_for(lambda d: d.attempts >= 2)
    assert delivery.status == DeliveryStatus.PENDING and "Connection refused" in delivery.last_error
    mail_worker.start()
    delivery = _wait_for(lambda d: d.status != DeliveryStatus.PENDING)
    assert delivery.status == DeliveryStatus.SENT and 3 <= delivery.attempts <= 4
    assert len(mail_worker.messages) == 1 and "INV-2026-000001" in mail_worker.messages[0]["Subject"]
    # The same email queued again (a duplicate message) is not sent twice.
    deliver_emails.apply_async(args=[[delivery.pk]]).get(timeout=60)
    assert len(mail_worker.messages) == 1


@pytest.mark.redis
def test_worker_gives_up_then_resend_from_the_admin_sends_it(mail_worker, client, django_user_model):
    _customer()
    _run_billing()
    delivery = _wait_for(lambda d: d.status != DeliveryStatus.PENDING, timeout=90)
    assert delivery.status == DeliveryStatus.FAILED and delivery.attempts == 4
    assert "Connection refused" in delivery.last_error
    mail_worker.start()
    client.force_login(django_user_model.objects.create_superuser("boss", "boss@example.com", "Corr3ct-Horse-Battery!"))
    response = client.post("/admin/tenants/emaildelivery/", {"action": "resend", "_selected_action": [delivery.pk]})
    assert response.status_code == 302
    delivery = _wait_for(lambda d: d.status == DeliveryStatus.SENT)
    assert delivery.attempts == 1 and delivery.resends == 1 and len(mail_worker.messages) == 1
