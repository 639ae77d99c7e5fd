"""Celery tasks for tenants: thin wrappers around services, safe to run twice."""

from celery import shared_task

from tenants.services.lifecycle import tenants_end_trials


@shared_task
def end_trials() -> int:
    """Activate trialing tenants whose trial is over; returns how many changed."""
    return len(tenants_end_trials())
