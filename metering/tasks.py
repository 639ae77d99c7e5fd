"""Celery tasks for metering: thin wrappers around services, safe to run twice."""

from celery import shared_task

from metering.services.sync import usage_sync


@shared_task(acks_late=True)
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
