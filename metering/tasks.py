"""Celery tasks for metering: thin wrappers around services, safe to run twice."""

from celery import shared_task

from metering.lake import LakeError
from metering.services.sync import usage_sync


# throws: a lake failure is an expected outcome (recorded on the run, retried by the next tick), logged by
# the worker in one line rather than as an unexpected error with a traceback.
@shared_task(acks_late=True, throws=(LakeError,))
def sync_usage(start: str | None = None, end: str | None = None) -> dict:
    """Sync hourly usage from the lake (default window: from the cursor minus the lookback to now).

    The service retries a failed lake query with backoff itself and records every run; a run that
    still fails raises here, and the next beat tick starts again from the unchanged cursor.
    """
    from datetime import datetime

    run = usage_sync(
        start=datetime.fromisoformat(start) if start else None,
        end=datetime.fromisoformat(end) if end else None,
        triggered_by="celery",
    )
    return {"sync_run": run.pk, "outcome": run.outcome, "rows_written": run.rows_written,
            "window": [run.window_start.isoformat(), run.window_end.isoformat()]}


@shared_task(bind=True, acks_late=True, throws=(LakeError,))
def run_billing(self, as_of: str | None = None, period: str | None = None, finalize_now: bool = False,
                sync: bool = True) -> dict:
    """Start a billing run and share it among the workers: its chunks beyond the first are each announced by a
    bill_run_chunks task on this task's queue, and this worker takes chunks too. A rerun (or a second run)
    adds nothing. Returns the run's state as this worker leaves it ("running" while others hold chunks)."""
    from datetime import datetime

    from metering.services.billing.run import billing_run_start

    run = billing_run_start(as_of=datetime.fromisoformat(as_of) if as_of else None, period=period,
                            finalize_now=finalize_now, sync=sync, triggered_by="celery")
    queue = _queue_of(self)
    for _ in range(run.chunks.count() - 1):
        bill_run_chunks.apply_async(args=[run.pk], queue=queue)
    return _bill_chunks(run.pk, queue)


@shared_task(bind=True, acks_late=True)
def bill_run_chunks(self, run_id: int) -> dict:
    """Take chunks of a billing run until none is left (metering.services.billing.run); when chunks are still
    held by other workers, look again after a beat interval, to take any whose worker died."""
    return _bill_chunks(run_id, _queue_of(self))


def _queue_of(task) -> str:
    from django.conf import settings

    return (task.request.delivery_info or {}).get("routing_key") or settings.CELERY_TASK_DEFAULT_QUEUE


def _bill_chunks(run_id: int, queue: str) -> dict:
    from metering.models import BillingRun
    from metering.services.billing.run import billing_run_check_later, billing_run_work

    work = billing_run_work(run=run_id)
    if work.waiting and (delay := billing_run_check_later(run=run_id)) is not None:
        bill_run_chunks.apply_async(args=[run_id], queue=queue, countdown=delay)
    run = BillingRun.objects.get(pk=run_id)
    return {"billing_run": run.pk, "chunks": work.chunks, "status": run.status, "created": run.invoices_created,
            "finalized": run.invoices_finalized}


@shared_task
def prune_event_rejections() -> dict:
    """Delete event rejections older than EVENTS_REJECTIONS_KEEP_DAYS days (receipts are kept forever)."""
    from django.utils import timezone

    from metering.services.events import event_rejections_prune

    return {"deleted": event_rejections_prune(now=timezone.now())}


@shared_task
def check_pipeline() -> dict:
    """Tell staff when the usage pipeline is late beyond PIPELINE_LATE_ALERT_MINUTES (once per stall)."""
    from metering.services.alerts import pipeline_late_check

    notice = pipeline_late_check()
    return {"notice": notice.pk if notice else None}


@shared_task
def send_payment_reminders() -> dict:
    """Remind tenants of unpaid invoices on the INVOICE_REMINDER_DAYS schedule (each step once)."""
    from metering.services.billing.payments import payment_reminders_send

    return {"reminders": len(payment_reminders_send())}


@shared_task(acks_late=True)
def report_marketplace_usage(now: str | None = None) -> dict:
    """Report the closed hours' usage of AWS Marketplace tenants (BatchMeterUsage), and retry what failed;
    one record per customer, dimension and hour, so a second run sends nothing twice. `now`: ISO time (tests)."""
    from datetime import datetime

    from metering.services.marketplace import marketplace_usage_report

    return marketplace_usage_report(now=datetime.fromisoformat(now) if now else None).as_dict()
