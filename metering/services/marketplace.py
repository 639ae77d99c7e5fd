"""Usage reported to AWS Marketplace each hour (BatchMeterUsage), for the tenants collected through it.

- Which hours: each closed hour that the usage sync has covered and that is at least
  ``MARKETPLACE_REPORT_DELAY_MINUTES`` old (late records still count until then), and at most 6 hours old
  (AWS refuses older records). A record is written once per customer, dimension and hour (unique in the
  database: AWS's own key), with that hour's quantity of the metric the plan maps to the dimension
  (``marketplace_dimensions``), 0 included, rounded up to a whole number.
- Sending: the pending records, 25 a call per product code, each call's records locked (``skip_locked``:
  two workers share the work) and their results stored: ``Success`` accepted, ``DuplicateRecord`` and
  ``CustomerNotSubscribed`` refused for good, ``UnprocessedRecords`` and failed calls retried by the next run
  until ``MARKETPLACE_MAX_ATTEMPTS``. A retry sends the very record that was written, and AWS answers a record
  it holds already with the same result, so an hour is never counted twice, even when a worker dies after
  AWS accepted a call and before its result was stored.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from metering.models import HourlyUsage, MarketplaceRecordStatus, MarketplaceUsageRecord, SyncCursor
from tenants.models import MarketplaceCustomer, Metric, SubscriptionStatus
from tenants.services.marketplace import marketplace_client

logger = logging.getLogger(__name__)

BATCH = 25  # BatchMeterUsage takes at most 25 records a call
AWS_MAX_AGE = timedelta(hours=6)  # AWS refuses records older than this


@dataclass
class ReportResult:
    written: int = 0
    accepted: int = 0
    refused: int = 0
    retrying: int = 0
    failed: int = 0

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def _hour(at: datetime) -> datetime:
    return at.replace(minute=0, second=0, microsecond=0)


def _reportable_hours(now: datetime) -> list[datetime]:
    """Closed hours, synced, old enough for late records, young enough for AWS."""
    cursor = SyncCursor.objects.filter(name=settings.LAKE_BACKEND).values_list("synced_until", flat=True).first()
    if cursor is None:
        return []
    last_end = min(_hour(now - timedelta(minutes=settings.MARKETPLACE_REPORT_DELAY_MINUTES)), _hour(cursor))
    first = _hour(now - AWS_MAX_AGE) + timedelta(hours=1)
    hours, hour = [], first
    while hour + timedelta(hours=1) <= last_end:
        hours.append(hour)
        hour += timedelta(hours=1)
    return hours


def marketplace_records_write(*, now: datetime) -> int:
    """Write the records of the reportable hours that have none yet; returns how many were written."""
    hours = _reportable_hours(now)
    if not hours:
        return 0
    customers = list(MarketplaceCustomer.objects.filter(tenant__isnull=False).select_related("tenant"))
    written = 0
    metrics = {metric.code: metric for metric in Metric.objects.all()}
    for customer in customers:
        subscription = (customer.tenant.subscriptions.filter(status=SubscriptionStatus.ACTIVE)
                        .select_related("plan_version").first())
        if subscription is None:
            continue
        dimensions = (subscription.plan_version.document or {}).get("marketplace_dimensions") or {}
        if not dimensions:
            continue
        wanted = [metrics[code] for code in dimensions if code in metrics]
        values: dict[tuple[int, datetime], object] = {
            (row.metric_id, row.hour): row.value
            for row in HourlyUsage.objects.filter(tenant=customer.tenant, metric__in=wanted, hour__in=hours)
        }
        rows = []
        for metric in wanted:
            divisor = metric.divisor or 1
            for hour in hours:
                value = values.get((metric.pk, hour), 0)
                rows.append(MarketplaceUsageRecord(
                    customer=customer, tenant=customer.tenant, product_code=customer.product_code,
                    dimension=dimensions[metric.code], metric_code=metric.code, hour=hour,
                    quantity=math.ceil(value / divisor)))
        # The unique (customer, dimension, hour) keeps the first record: a second run writes nothing new.
        before = MarketplaceUsageRecord.objects.filter(customer=customer).count()
        MarketplaceUsageRecord.objects.bulk_create(rows, ignore_conflicts=True)
        written += MarketplaceUsageRecord.objects.filter(customer=customer).count() - before
    return written


def marketplace_records_send(*, now: datetime, client=None, result: ReportResult | None = None) -> ReportResult:
    """Send the pending records (BatchMeterUsage, 25 a call) and store each one's result."""
    result = result or ReportResult()
    # Too old for AWS: it would refuse the whole call. Recorded as failed, never sent.
    too_old = MarketplaceUsageRecord.objects.filter(status=MarketplaceRecordStatus.PENDING,
                                                    hour__lte=now - AWS_MAX_AGE)
    result.failed += too_old.update(status=MarketplaceRecordStatus.FAILED,
                                    last_error="Not sent within 6 hours of its hour: AWS no longer takes it.")
    client = client or marketplace_client()
    tried: set[int] = set()  # each record once per run: what AWS did not take waits for the next run
    while True:
        with transaction.atomic():
            batch = list(MarketplaceUsageRecord.objects.select_for_update(skip_locked=True, of=("self",))
                         .filter(status=MarketplaceRecordStatus.PENDING).exclude(pk__in=tried)
                         .select_related("customer").order_by("product_code", "hour", "pk")[:BATCH])
            if not batch:
                return result
            product = batch[0].product_code
            batch = [record for record in batch if record.product_code == product]
            tried.update(record.pk for record in batch)
            _send(client, product, batch, now, result)


def _send(client, product: str, batch: list[MarketplaceUsageRecord], now: datetime, result: ReportResult) -> None:
    for record in batch:
        record.attempts += 1
        record.last_attempt_at = now
    try:
        answer = client.batch_meter_usage(ProductCode=product, UsageRecords=[
            {"Timestamp": record.hour, "CustomerIdentifier": record.customer.customer_identifier,
             "Dimension": record.dimension, "Quantity": record.quantity} for record in batch])
    except (ClientError, BotoCoreError) as exc:
        error = f"BatchMeterUsage failed: {exc}"
        logger.warning("marketplace: %s", error)
        answers = {}
    else:
        error = "AWS did not process it (UnprocessedRecords): retried by the next run."
        answers = {(r["UsageRecord"]["CustomerIdentifier"], r["UsageRecord"]["Dimension"],
                    _hour(r["UsageRecord"]["Timestamp"])): r for r in answer.get("Results", [])}
    for record in batch:
        found = answers.get((record.customer.customer_identifier, record.dimension, record.hour))
        status = found and found.get("Status")
        if status == "Success":
            record.status = MarketplaceRecordStatus.ACCEPTED
            record.metering_record_id = found.get("MeteringRecordId", "")
            record.last_error = ""
            result.accepted += 1
        elif status in ("DuplicateRecord", "CustomerNotSubscribed"):
            record.status = (MarketplaceRecordStatus.DUPLICATE if status == "DuplicateRecord"
                             else MarketplaceRecordStatus.NOT_SUBSCRIBED)
            record.last_error = f"AWS answered {status}."
            result.refused += 1
        else:
            record.last_error = error
            if record.attempts >= settings.MARKETPLACE_MAX_ATTEMPTS:
                record.status = MarketplaceRecordStatus.FAILED
                result.failed += 1
            else:
                result.retrying += 1
    MarketplaceUsageRecord.objects.bulk_update(
        batch, ["status", "attempts", "last_attempt_at", "metering_record_id", "last_error"])


def marketplace_usage_report(*, now: datetime | None = None, client=None) -> ReportResult:
    """The hourly task: write the new hours' records, then send every pending one."""
    now = now or timezone.now()
    result = ReportResult(written=marketplace_records_write(now=now))
    if not MarketplaceUsageRecord.objects.filter(status=MarketplaceRecordStatus.PENDING).exists():
        return result
    return marketplace_records_send(now=now, client=client, result=result)


def marketplace_records_retry(*, ids) -> int:
    """Staff send failed records again at the next run (while AWS still takes their hour)."""
    return MarketplaceUsageRecord.objects.filter(pk__in=list(ids), status=MarketplaceRecordStatus.FAILED).update(
        status=MarketplaceRecordStatus.PENDING, attempts=0)


