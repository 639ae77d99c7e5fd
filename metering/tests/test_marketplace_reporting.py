"""Usage reported to AWS Marketplace, against moto's Marketplace Metering Service (BatchMeterUsage): the hourly
task writes one record per customer, dimension and closed hour (the plan's ``marketplace_dimensions``), sends
them, stores AWS's answers, retries failures, and never sends an hour twice; the admin lists them by state and
sends failed ones again. Such a tenant's invoices are records: paid as issued, never emailed."""

from datetime import timedelta
from decimal import Decimal
from unittest import mock

import pytest
from botocore.stub import Stubber
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID
from moto.meteringmarketplace.models import meteringmarketplace_backends

from metering.models import (
    Invoice,
    InvoiceStatus,
    MarketplaceRecordStatus,
    MarketplaceUsageRecord,
    SyncCursor,
)
from metering.pricing import DocumentError, parse_plan
from metering.services.billing.run import billing_run
from metering.tasks import report_marketplace_usage
from metering.tests.test_billing import NOV, OCT, add_usage
from tenants.models import BillingChannel, EmailDelivery, EmailKind, MarketplaceCustomer
from tenants.services.plans import plan_save
from tenants.services.subscriptions import subscription_create
from tenants.tests.factories import TenantFactory, import_sample_plans

pytestmark = pytest.mark.django_db
PRODUCT = "prod-abc123"
NOW = timezone.now().replace(minute=30)  # every run of a test at the same time: the same hours


def report():
    return report_marketplace_usage.apply(kwargs={"now": NOW.isoformat()}).get()


@pytest.fixture
def aws(monkeypatch, settings):
    """moto's Marketplace Metering Service, its product's subscribers, and a count of BatchMeterUsage calls."""
    settings.MARKETPLACE_REGION = "us-east-1"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        import boto3

        client = boto3.client("meteringmarketplace", region_name="us-east-1")
        calls = []
        real = client.batch_meter_usage

        def counted(**kwargs):
            calls.append(kwargs)
            return real(**kwargs)

        client.batch_meter_usage = counted
        client.calls = calls
        monkeypatch.setattr("metering.services.marketplace.marketplace_client", lambda: client)
        meteringmarketplace_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].customers_by_product[PRODUCT].append("cust-1")
        yield client


@pytest.fixture
def hours():
    """The hours the task reports now: closed, at least an hour old (MARKETPLACE_REPORT_DELAY_MINUTES), at most
    6 hours old; the usage sync has covered them."""
    now = NOW
    last_end = (now - timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
    first = (now - timedelta(hours=6)).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    SyncCursor.objects.create(name="local", synced_until=now)
    return [first + timedelta(hours=n) for n in range(int((last_end - first) / timedelta(hours=1)))]


def marketplace_tenant(slug, customer_id):
    versions = import_sample_plans()
    document = {**versions["pro"].document, "marketplace_dimensions": {"api_calls": "ApiCalls", "data_out_mb": "DataOut"}}
    version, _ = plan_save(document=document)
    tenant = TenantFactory(slug=slug, billing_channel=BillingChannel.AWS_MARKETPLACE)
    MarketplaceCustomer.objects.create(customer_identifier=customer_id, product_code=PRODUCT, tenant=tenant)
    subscription_create(tenant=tenant, plan_version=version, started_at=timezone.now() - timedelta(days=40),
                        with_trial=False)
    return tenant


def test_each_hour_is_reported_once_per_dimension(aws, hours):
    tenant = marketplace_tenant("acme", "cust-1")
    add_usage(tenant, "api_calls", hours[0], 1200)
    add_usage(tenant, "data_out_mb", hours[1], 2_500_001)  # bytes: 2.500001 MB, reported as 3
    TenantFactory(slug="globex")  # invoiced as usual: nothing reported
    outcome = report()
    assert outcome == {"written": 2 * len(hours), "accepted": 2 * len(hours), "refused": 0, "retrying": 0, "failed": 0}
    records = {(r.dimension, r.hour): r for r in MarketplaceUsageRecord.objects.all()}
    assert records[("ApiCalls", hours[0])].quantity == 1200 and records[("DataOut", hours[1])].quantity == 3
    assert records[("ApiCalls", hours[1])].quantity == 0  # an hour without usage is reported as 0
    assert all(r.status == MarketplaceRecordStatus.ACCEPTED and r.metering_record_id for r in records.values())
    sent = [(u["CustomerIdentifier"], u["Dimension"], u["Quantity"]) for call in aws.calls for u in call["UsageRecords"]]
    assert ("cust-1", "ApiCalls", 1200) in sent and len(sent) == 2 * len(hours)
    assert all(call["ProductCode"] == PRODUCT and len(call["UsageRecords"]) <= 25 for call in aws.calls)
    # Run again (a retry of the task, or the next hour before it closed): nothing written, nothing sent.
    calls = len(aws.calls)
    assert report()["written"] == 0
    assert len(aws.calls) == calls
    # The database keeps one record per customer, dimension and hour, whatever writes it.
    first = records[("ApiCalls", hours[0])]
    with pytest.raises(IntegrityError), transaction.atomic():
        MarketplaceUsageRecord.objects.create(customer=first.customer, tenant=tenant, product_code=PRODUCT,
                                              dimension="ApiCalls", metric_code="api_calls", hour=hours[0], quantity=5)


def test_failures_are_stored_retried_and_shown_in_the_admin(aws, hours, settings, monkeypatch, admin_client):
    settings.MARKETPLACE_MAX_ATTEMPTS = 2
    marketplace_tenant("acme", "cust-1")
    unsubscribed = marketplace_tenant("initech", "cust-gone")
    down = Stubber(aws)
    for _ in range(4):
        down.add_client_error("batch_meter_usage", "InternalServiceErrorException", http_status_code=500)
    with down:
        outcome = report()
    assert outcome["retrying"] == 4 * len(hours) and outcome["accepted"] == 0
    pending = MarketplaceUsageRecord.objects.filter(status=MarketplaceRecordStatus.PENDING)
    assert pending.count() == 4 * len(hours)
    assert all(r.attempts == 1 and "InternalServiceErrorException" in r.last_error for r in pending)
    # AWS is back: the next run sends the same records; the customer AWS no longer knows is refused.
    outcome = report()
    assert outcome["accepted"] == 2 * len(hours) and outcome["refused"] == 2 * len(hours)
    assert set(MarketplaceUsageRecord.objects.filter(tenant=unsubscribed).values_list("status", flat=True)) == {
        MarketplaceRecordStatus.NOT_SUBSCRIBED}

    # Out of attempts: failed, listed in the admin, and sent again on request.
    MarketplaceUsageRecord.objects.filter(tenant=unsubscribed).update(status=MarketplaceRecordStatus.PENDING, attempts=1)
    down = Stubber(aws)
    for _ in range(2):
        down.add_client_error("batch_meter_usage", "ThrottlingException", http_status_code=400)
    with down:
        assert report()["failed"] == 2 * len(hours)
    changelist = reverse("admin:metering_marketplaceusagerecord_changelist")
    page = admin_client.get(changelist, {"status__exact": "failed"}).content.decode()
    assert "ThrottlingException" in page and "initech" in page
    failed = list(MarketplaceUsageRecord.objects.filter(status=MarketplaceRecordStatus.FAILED).values_list("pk", flat=True))
    admin_client.post(changelist, {"action": "send_again", "_selected_action": failed})
    assert MarketplaceUsageRecord.objects.filter(pk__in=failed, status=MarketplaceRecordStatus.PENDING).count() == len(failed)
    # The admin's button reports as of the real clock: held at NOW, as report() is, so the hours stay those of
    # the fixture when the suite was collected in one hour and runs this test in the next.
    with mock.patch("django.utils.timezone.now", return_value=NOW):
        assert admin_client.post(reverse("admin:metering_marketplaceusagerecord_report_now")).status_code == 302
    assert set(MarketplaceUsageRecord.objects.filter(pk__in=failed).values_list("status", flat=True)) == {
        MarketplaceRecordStatus.NOT_SUBSCRIBED}


def test_records_too_old_for_aws_are_failed_without_a_call(aws, hours):
    tenant = marketplace_tenant("acme", "cust-1")
    customer = tenant.marketplace_customer
    old = hours[0] - timedelta(hours=2)
    MarketplaceUsageRecord.objects.create(customer=customer, tenant=tenant, product_code=PRODUCT, dimension="ApiCalls",
                                          metric_code="api_calls", hour=old, quantity=Decimal(4))
    report()
    record = MarketplaceUsageRecord.objects.get(hour=old)
    assert record.status == MarketplaceRecordStatus.FAILED and "within 6 hours" in record.last_error
    assert all(u["Timestamp"] != old for call in aws.calls for u in call["UsageRecords"])


@pytest.mark.parametrize(("dimensions", "error"), [
    ({"nope": "X"}, "names no metric of the plan's charges"),
    ({"api_calls": "bad name!"}, "AWS Marketplace dimension name"),
    ({"api_calls": "X", "data_out_mb": "X"}, "same dimension"),
    (["api_calls"], "must map metric codes"),
])
def test_a_plans_dimensions_are_checked_at_import(dimensions, error):
    doc = {"code": "p", "currency": "USD", "interval": "month", "marketplace_dimensions": dimensions,
           "charges": [{"metric": "api_calls", "model": "per_unit", "unit_amount": "0.001"},
                       {"metric": "data_out_mb", "model": "per_unit", "unit_amount": "0.1"}]}
    with pytest.raises(DocumentError, match=error):
        parse_plan(doc)


def test_a_marketplace_tenants_invoices_are_records_never_emailed_or_owed():
    versions = import_sample_plans()
    aws_tenant = TenantFactory(slug="acme", billing_channel=BillingChannel.AWS_MARKETPLACE)
    usual = TenantFactory(slug="globex")
    for tenant in (aws_tenant, usual):
        subscription_create(tenant=tenant, plan_version=versions["starter"], started_at=OCT, with_trial=False)
        add_usage(tenant, "api_calls", OCT + timedelta(days=1), 1000)
    billing_run(as_of=NOV + timedelta(hours=2), sync=False, finalize_now=True)
    collected = Invoice.objects.get(tenant=aws_tenant)
    assert collected.status == InvoiceStatus.PAID and collected.paid_at is not None and collected.number
    assert Invoice.objects.get(tenant=usual).status == InvoiceStatus.FINALIZED
    emails = EmailDelivery.objects.filter(kind=EmailKind.INVOICE)
    assert [e.recipient for e in emails] == ["billing@globex.example"]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_workers_reporting_at_once_send_each_record_once(aws, hours):
    from metering.tests.processes import concurrently

    marketplace_tenant("acme", "cust-1")
    for n in range(15):  # 16 tenants × 2 dimensions × the hours: several batches of 25 to share
        marketplace_tenant(f"t{n}", f"cust-{n + 2}")
    meteringmarketplace_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].customers_by_product[PRODUCT].extend(
        f"cust-{n + 2}" for n in range(15))
    concurrently(report, times=2)
    sent = [(u["CustomerIdentifier"], u["Dimension"], u["Timestamp"]) for call in aws.calls for u in call["UsageRecords"]]
    assert len(sent) == len(set(sent)) == 16 * 2 * len(hours)
    assert MarketplaceUsageRecord.objects.filter(status=MarketplaceRecordStatus.ACCEPTED).count() == 16 * 2 * len(hours)


@pytest.fixture
def marketplace_endpoint(monkeypatch):
    """A stand-in for the Marketplace Metering endpoint that a worker process can reach (moto's mock lives in this
    process only, and its server mode needs Flask): BatchMeterUsage answers Success per record, and every record
    received is kept."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    received = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's name)
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            assert self.headers["X-Amz-Target"] == "AWSMPMeteringService.BatchMeterUsage"
            received.extend(body["UsageRecords"])
            answer = json.dumps({"Results": [{"UsageRecord": record, "MeteringRecordId": f"id-{len(received)}-{n}",
                                              "Status": "Success"} for n, record in enumerate(body["UsageRecords"])],
                                 "UnprocessedRecords": []}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-amz-json-1.1")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("AWS_ENDPOINT_URL_MARKETPLACE_METERING", f"http://127.0.0.1:{server.server_address[1]}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    try:
        yield received
    finally:
        server.shutdown()


@pytest.mark.redis
def test_the_hourly_task_on_a_real_worker_reports_each_hour_once(marketplace_endpoint, hours, celery_worker_process):
    tenant = marketplace_tenant("acme", "cust-1")
    add_usage(tenant, "api_calls", hours[-1], 42)
    first = report_marketplace_usage.apply_async(kwargs={"now": NOW.isoformat()}, queue=celery_worker_process)
    assert first.get(timeout=120)["accepted"] == 2 * len(hours)
    again = report_marketplace_usage.apply_async(kwargs={"now": NOW.isoformat()}, queue=celery_worker_process)
    assert again.get(timeout=120) == {"written": 0, "accepted": 0, "refused": 0, "retrying": 0, "failed": 0}
    assert len(marketplace_endpoint) == 2 * len(hours)
    assert {"CustomerIdentifier": "cust-1", "Dimension": "ApiCalls", "Quantity": 42} in [
        {k: v for k, v in record.items() if k != "Timestamp"} for record in marketplace_endpoint]
    assert MarketplaceUsageRecord.objects.filter(status=MarketplaceRecordStatus.ACCEPTED).count() == 2 * len(hours)
