"""The periodic tasks celery beat runs, kept in django-celery-beat's tables (visible and editable in the admin).

They are created once after migrate; an edit made in the admin is kept (a later migrate does not reset it).
"""

import json

# name -> (task, crontab fields). Apps append their schedules here.
DEFAULT_SCHEDULES: dict[str, tuple[str, dict]] = {
    "End finished trials": ("tenants.tasks.end_trials", {"minute": "*/15"}),
    "Purge cancelled tenants' users": ("tenants.tasks.purge_cancelled_users", {"minute": "30", "hour": "3"}),
    "Expire unverified signups": ("tenants.tasks.expire_signups", {"minute": "*/10"}),
    # The safety net of email delivery (retries are the task's own): lost tasks, expired secrets.
    "Retry lost emails": ("tenants.tasks.sweep_emails", {"minute": "*/5"}),
    "Sync usage from the lake": ("metering.tasks.sync_usage", {"minute": "*/5"}),
    # Hourly: closed periods are billed soon after they close, drafts finalized once their grace period is over.
    "Run billing": ("metering.tasks.run_billing", {"minute": "7"}),
    # Runs whose worker was killed (no heartbeat for RUN_STALE_AFTER_SECONDS) are marked failed.
    "Fail runs whose worker died": ("portal.tasks.fail_stale_runs", {"minute": "*/5"}),
}


def ensure_schedules(**kwargs) -> None:
    from django_celery_beat.models import CrontabSchedule, PeriodicTask

    for name, (task, cron) in DEFAULT_SCHEDULES.items():
        if PeriodicTask.objects.filter(name=name).exists():
            continue
        fields = {"minute": "*", "hour": "*", "day_of_week": "*", "day_of_month": "*", "month_of_year": "*", **cron}
        schedule, _ = CrontabSchedule.objects.get_or_create(timezone="UTC", **fields)
        PeriodicTask.objects.create(name=name, task=task, crontab=schedule, kwargs=json.dumps({}))
