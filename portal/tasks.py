"""Celery tasks of the portal itself: the periodic check that fails runs whose worker died."""

from celery import shared_task


@shared_task(acks_late=True)
def fail_stale_runs() -> dict:
    """Mark failed every billing run, usage sync and deployment still "running" without a recent heartbeat."""
    from metering.runs import stale_runs_fail_all

    return stale_runs_fail_all(by="the periodic check")
