"""The beat schedules exist after `migrate`, the command a provider runs: on an empty database, and again
after admin edits (which a later migrate keeps)."""

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from portal.schedules import DEFAULT_SCHEDULES

ROOT = Path(__file__).resolve().parents[2]


def migrate(tmp_path: Path) -> Path:
    """`manage.py migrate` in a subprocess on a fresh SQLite file; returns the file."""
    database = tmp_path / "fresh.sqlite3"
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{database}", "PORTAL_VAR_DIR": str(tmp_path / "var")}
    done = subprocess.run([sys.executable, "manage.py", "migrate", "--noinput"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return database


def periodic_tasks(database: Path) -> dict[str, tuple]:
    with sqlite3.connect(database) as con:
        rows = con.execute("""
            SELECT t.name, t.task, t.enabled, c.minute, c.hour, c.day_of_week, c.day_of_month, c.month_of_year
            FROM django_celery_beat_periodictask t LEFT JOIN django_celery_beat_crontabschedule c
            ON c.id = t.crontab_id""").fetchall()
    return {name: rest for name, *rest in rows}


def expected(cron: dict) -> tuple:
    fields = {"minute": "*", "hour": "*", "day_of_week": "*", "day_of_month": "*", "month_of_year": "*", **cron}
    return (fields["minute"], fields["hour"], fields["day_of_week"], fields["day_of_month"], fields["month_of_year"])


@pytest.mark.slow
def test_migrate_on_an_empty_database_creates_the_enabled_schedules_and_keeps_admin_edits(tmp_path):
    database = migrate(tmp_path)
    tasks = periodic_tasks(database)
    for name in ("Sync usage from the lake", "Run billing", "End finished trials", "Purge cancelled tenants' users",
                 "Expire unverified signups"):
        assert name in tasks, f"{name!r} missing after migrate: {sorted(tasks)}"
    for name, (task, cron) in DEFAULT_SCHEDULES.items():
        assert tasks[name] == [task, 1, *expected(cron)], name

    # What an operator does in Admin -> Periodic tasks: stop one, rename one, re-time one, delete one.
    with sqlite3.connect(database) as con:
        con.execute("UPDATE django_celery_beat_periodictask SET enabled = 0 WHERE name = 'Run billing'")
        con.execute("UPDATE django_celery_beat_periodictask SET name = 'Trials' WHERE name = 'End finished trials'")
        con.execute("INSERT INTO django_celery_beat_crontabschedule (minute, hour, day_of_week, day_of_month, "
                    "month_of_year, timezone) VALUES ('*/30', '*', '*', '*', '*', 'UTC')")
        con.execute("UPDATE django_celery_beat_periodictask SET crontab_id = last_insert_rowid() "
                    "WHERE name = 'Sync usage from the lake'")
        con.execute("DELETE FROM django_celery_beat_periodictask WHERE name = 'Expire unverified signups'")
    migrate(tmp_path)
    again = periodic_tasks(database)
    assert again["Run billing"][1] == 0, "a schedule the admin disabled stays disabled"
    assert "Trials" in again and "End finished trials" not in again, "a renamed schedule is not added twice"
    assert again["Sync usage from the lake"][2] == "*/30", "the admin's timing is kept"
    assert again["Expire unverified signups"][1] == 1, "a deleted schedule comes back (disabling stops one)"
    assert len(again) == len(DEFAULT_SCHEDULES)


def test_the_test_database_was_migrated_with_the_schedules(db):
    """pytest-django builds the test database with `migrate` (PostgreSQL in CI): the schedules are there too."""
    from django_celery_beat.models import PeriodicTask

    rows = {t.name: (t.task, t.enabled) for t in PeriodicTask.objects.all()}
    assert {name: (task, True) for name, (task, _) in DEFAULT_SCHEDULES.items()}.items() <= rows.items()


def test_sync_is_scheduled_in_beat(db):
    from django_celery_beat.models import PeriodicTask

    from portal.schedules import DEFAULT_SCHEDULES, ensure_schedules

    assert ("metering.tasks.sync_usage", {"minute": "*/5"}) in DEFAULT_SCHEDULES.values()
    ensure_schedules()
    assert PeriodicTask.objects.filter(task="metering.tasks.sync_usage").exists()
