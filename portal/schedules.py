"""The periodic tasks celery beat runs, kept in django-celery-beat's tables (visible and editable in the admin).

They are created by every `migrate` that finds them missing; an edit made in the admin is kept (a later migrate
does not reset it).
"""

import json

from django.apps import apps as global_apps
from django.db import DEFAULT_DB_ALIAS
from django.db.models import Q

# name -> (task, crontab fields). Apps append their schedules here.
DEFAULT_SCHEDULES: dict[str, tuple[str, dict]] = {
    "End finished trials": ("tenants.tasks.end_trials", {"minute": "*/15"}),
    # Tenants' downgrades and cancellations take effect at their period's end (billing prices them from their
    # time whenever this runs; it moves the subscription and cancels the tenant).
    "Apply scheduled subscription changes": ("tenants.tasks.apply_subscription_requests", {"minute": "*/5"}),
    "Purge cancelled tenants' users": ("tenants.tasks.purge_cancelled_users", {"minute": "30", "hour": "3"}),
    "Expire unverified signups": ("tenants.tasks.expire_signups", {"minute": "*/10"}),
    # The safety net of email delivery (retries are the task's own): lost tasks, expired secrets.
    "Retry lost emails": ("tenants.tasks.sweep_emails", {"minute": "*/5"}),
    # The safety net of webhook delivery: tasks lost after commit, workers killed mid-attempt (lease ended).
    "Retry lost webhook deliveries": ("tenants.tasks.sweep_webhooks", {"minute": "*"}),
    "Sync usage from the lake": ("metering.tasks.sync_usage", {"minute": "*/5"}),
    # Hourly: closed periods are billed soon after they close, drafts finalized once their grace period is over.
    "Run billing": ("metering.tasks.run_billing", {"minute": "7"}),
    # Rejected events are shown for EVENTS_REJECTIONS_KEEP_DAYS days (the receipts are kept forever).
    "Prune old event rejections": ("metering.tasks.prune_event_rejections", {"minute": "41", "hour": "2"}),
    # Runs whose worker was killed (no heartbeat for RUN_STALE_AFTER_SECONDS) are marked failed.
    "Fail runs whose worker died": ("portal.tasks.fail_stale_runs", {"minute": "*/5"}),
    # Staff hear of a pipeline late beyond PIPELINE_LATE_ALERT_MINUTES (a failing sync tells them itself).
    "Check the pipeline is on time": ("metering.tasks.check_pipeline", {"minute": "*/5"}),
    # Unpaid invoices: a reminder per step of INVOICE_REMINDER_DAYS, each sent once.
    "Send payment reminders": ("metering.tasks.send_payment_reminders", {"minute": "17", "hour": "8"}),
    # Hourly: AWS Marketplace tenants' closed hours reported with BatchMeterUsage, failures retried (docs/marketplace.md).
    "Report usage to AWS Marketplace": ("metering.tasks.report_marketplace_usage", {"minute": "23"}),
}


def ensure_schedules(*, using: str = DEFAULT_DB_ALIAS, apps=global_apps, **kwargs) -> None:
    """Add each default schedule that the database lacks (post_migrate receiver; safe to run again).

    A schedule counts as present when a periodic task has its name or runs its task, so a schedule the
    admin renamed, re-timed or disabled stays as the admin left it. One the admin deleted comes back at
    the next migrate: disabling is how a schedule is stopped.
    """
    try:
        apps.get_model("django_celery_beat", "PeriodicTask")
    except LookupError:  # beat's tables are not migrated (e.g. `migrate django_celery_beat zero`)
        return
    from django_celery_beat.models import CrontabSchedule, PeriodicTask

    tasks = PeriodicTask.objects.using(using)
    for name, (task, cron) in DEFAULT_SCHEDULES.items():
        if tasks.filter(Q(name=name) | Q(task=task)).exists():
            continue
        fields = {"minute": "*", "hour": "*", "day_of_week": "*", "day_of_month": "*", "month_of_year": "*", **cron}
        crontabs = CrontabSchedule.objects.using(using)
        schedule = crontabs.filter(timezone="UTC", **fields).order_by("pk").first() or crontabs.create(
            timezone="UTC", **fields)
        tasks.create(name=name, task=task, crontab=schedule, kwargs=json.dumps({}))
