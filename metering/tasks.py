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


@shared_task(acks_late=True, throws=(LakeError,))
def run_billing(as_of: str | None = None, period: str | None = None) -> dict:
    """Bill closed periods and finalize due drafts; a rerun (or a second worker) adds nothing."""
    from datetime import datetime

    from metering.services.billing.run import billing_run

    result = billing_run(
        as_of=datetime.fromisoformat(as_of) if as_of else None, period=period, triggered_by="celery"
    )
    return {"billing_run": result.run.pk, "created": len(result.created), "finalized": len(result.finalized),
            "status": result.run.status}


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
