"""The periodic check of runs: billing runs, usage syncs and deployments whose worker stopped beating are
marked failed; live and finished ones are left alone; the admin shows each run's heartbeat."""

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection, connections, transaction
from django.urls import reverse
from django.utils import timezone

from metering.models import BillingRun, BillingRunStatus, SyncOutcome, SyncRun
from metering.runs import beat, heartbeat
from portal.deployments.models import Deployment, DeploymentStatus, PipelineEnvironment

WINDOW = {"window_start": datetime(2026, 11, 1, tzinfo=UTC), "window_end": datetime(2026, 11, 1, 1, tzinfo=UTC)}


def runs(age: timedelta, *, state="running"):
    """One billing run, sync and deployment whose last heartbeat is ``age`` old."""
    beat_at = timezone.now() - age
    billing = BillingRun.objects.create(as_of=beat_at, heartbeat_at=beat_at, status=state)
    sync = SyncRun.objects.create(backend="LocalLake", started_at=beat_at, heartbeat_at=beat_at, outcome=state,
                                  **WINDOW)
    environment, _ = PipelineEnvironment.objects.get_or_create(name="prod", account="123456789012",
                                                               region="eu-west-1")
    deployment = Deployment.objects.create(environment=environment, action="synth", status=state,
                                           started_at=beat_at, heartbeat_at=beat_at)
    return billing, sync, deployment


def test_the_periodic_check_fails_dead_runs_and_leaves_live_and_finished_ones(db, settings):
    from portal.tasks import fail_stale_runs

    settings.RUN_STALE_AFTER_SECONDS = 600
    dead = runs(timedelta(minutes=11))
    live = runs(timedelta(minutes=9))
    # Before heartbeats existed: a run with none is judged by its start.
    legacy = SyncRun.objects.create(backend="LocalLake", started_at=timezone.now() - timedelta(days=3), **WINDOW)
    done = BillingRun.objects.create(as_of=timezone.now(), heartbeat_at=timezone.now() - timedelta(days=1),
                                     status=BillingRunStatus.DONE)

    result = fail_stale_runs.apply().get()

    assert result == {"billing run": [dead[0].pk], "usage sync": [dead[1].pk, legacy.pk], "deployment": [dead[2].pk]}
    for run in (*dead, *live, legacy, done):
        run.refresh_from_db()
    billing, sync, deployment = dead
    assert billing.status == BillingRunStatus.FAILED and billing.finished_at is not None
    assert billing.errors.startswith("The worker stopped responding: no heartbeat since ")
    assert billing.errors.endswith("(more than 600 s); marked failed by the periodic check.")
    assert sync.outcome == SyncOutcome.FAILED and "worker stopped responding" in sync.error
    assert deployment.status == DeploymentStatus.FAILED and "worker stopped responding" in deployment.error
    assert legacy.outcome == SyncOutcome.FAILED
    assert [live[0].status, live[1].outcome, live[2].status] == ["running"] * 3
    assert done.status == BillingRunStatus.DONE and done.errors == ""
    # Twice: nothing more to do.
    assert fail_stale_runs.apply().get() == {"billing run": [], "usage sync": [], "deployment": []}


def test_the_check_is_scheduled_in_beat(db):
    from django_celery_beat.models import PeriodicTask

    from portal.schedules import ensure_schedules

    ensure_schedules()
    task = PeriodicTask.objects.get(task="portal.tasks.fail_stale_runs")
    assert task.enabled and task.crontab.minute == "*/5"


def test_a_run_beats_while_it_works(db, settings):
    settings.RUN_STALE_AFTER_SECONDS = 0  # every beat writes
    run = SyncRun.objects.create(backend="LocalLake", started_at=timezone.now() - timedelta(hours=1),
                                 heartbeat_at=timezone.now() - timedelta(hours=1), **WINDOW)
    before = run.heartbeat_at
    beat()  # outside a run: nothing to do, nothing fails
    with heartbeat(run):
        beat()
    run.refresh_from_db()
    assert run.heartbeat_at > before + timedelta(minutes=59)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_beat_inside_a_transaction_is_seen_at_once_by_other_connections(settings):
    """A billing batch is one transaction: its beats go through a connection of their own, or a checker
    would see none until the batch commits."""
    settings.RUN_STALE_AFTER_SECONDS = 0
    old = timezone.now() - timedelta(hours=1)
    run = BillingRun.objects.create(as_of=old, heartbeat_at=old)
    other = connections.create_connection("default")
    try:
        with transaction.atomic(), heartbeat(run):
            beat()
            with other.cursor() as cursor:
                cursor.execute(f"SELECT heartbeat_at FROM {BillingRun._meta.db_table} WHERE id = %s", [run.pk])
                seen = cursor.fetchone()[0]
            assert seen > old + timedelta(minutes=59)
    finally:
        other.close()
    assert connection.vendor == "postgresql"


def test_the_admin_shows_heartbeats_and_dead_runs(admin_client, settings):
    settings.RUN_STALE_AFTER_SECONDS = 600
    runs(timedelta(minutes=30))
    runs(timedelta(seconds=20))
    for name in ("admin:metering_billingrun_changelist", "admin:metering_syncrun_changelist",
                 "admin:deployments_deployment_changelist"):
        page = admin_client.get(reverse(name)).content.decode()
        assert "Heartbeat" in page, name
        assert "no heartbeat for 30 min: worker lost?" in page, name
        assert re.search(r"alive \(heartbeat 2\d s ago\)", page), name
