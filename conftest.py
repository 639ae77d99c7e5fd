"""Shared test fixtures: markers that skip what this machine lacks, and a real Celery worker."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings

from tenants.tests.webhook_receiver import receiver  # noqa: E402,F401  (a fixture: a real HTTP receiver on 127.0.0.1)

ROOT = Path(__file__).resolve().parent


def _is_postgres() -> bool:
    return settings.DATABASES["default"]["ENGINE"].endswith("postgresql")


def _is_redis_broker() -> bool:
    return settings.CELERY_BROKER_URL.startswith("redis://")


def pytest_collection_modifyitems(config, items):
    skip_pg = pytest.mark.skip(reason="needs PostgreSQL: set DATABASE_URL=postgres://... (CI does)")
    skip_redis = pytest.mark.skip(reason="needs Redis and a real worker: set CELERY_BROKER_URL=redis://... (CI does)")
    for item in items:
        if "postgres" in item.keywords and not _is_postgres():
            item.add_marker(skip_pg)
        if "redis" in item.keywords and not _is_redis_broker():
            item.add_marker(skip_redis)


@pytest.fixture(autouse=True)
def _emails_sent_in_process(request, monkeypatch):
    """Email is handed to a Celery worker after commit; a test without a real worker runs that task in its own
    process instead (eagerly: retries follow at once, without the backoff wait), so `mail.outbox` has the
    email once the transaction commits. Tests with `celery_worker_process` keep the broker."""
    if "celery_worker_process" in request.fixturenames:
        return
    from tenants.services import email
    from tenants.tasks import deliver_emails

    # .get() raises what the task raised (a bug must fail the test); a retry is applied again at once.
    monkeypatch.setattr(email, "_enqueue", lambda ids: deliver_emails.apply(args=[ids]).get())


def _process_env() -> dict[str, str]:
    """The environment of a worker or beat process working on the test database (and this process's
    environment, so a test's monkeypatch.setenv reaches it)."""
    from django.db import connection

    db = settings.DATABASES["default"]
    env = dict(os.environ)
    if _is_postgres():
        env["DATABASE_URL"] = (
            f"postgres://{db['USER'] or 'postgres'}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{connection.settings_dict['NAME']}"
        )
    else:  # pragma: no cover - the redis marker keeps this to CI, where the database is PostgreSQL
        env["DATABASE_URL"] = f"sqlite:///{connection.settings_dict['NAME']}"
    env["PORTAL_VAR_DIR"] = str(settings.VAR_DIR)
    return env


def _wait_for_line(proc: subprocess.Popen, log: Path, line: str, what: str, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while line not in log.read_text():
        if proc.poll() is not None or time.time() > deadline:
            raise RuntimeError(f"{what} did not start:\n{log.read_text()}")
        time.sleep(0.2)


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture
def celery_worker_process(transactional_db, tmp_path):
    """A real `celery worker` process on the configured Redis broker, using the test database.

    Use with data committed by the test (transactional_db), since the worker is another process.
    Its log is tmp_path / "worker.log".
    """
    env = _process_env()
    queue = f"test-{os.getpid()}-{int(time.time() * 1000)}"
    log = tmp_path / "worker.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "portal", "worker", "--pool=solo", "--concurrency=1",
         "-Q", queue, "--without-heartbeat", "--without-gossip", "--without-mingle", "--loglevel=INFO"],
        cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
    )
    try:
        _wait_for_line(proc, log, "ready.", "the Celery worker")
        yield queue
    finally:
        _stop(proc)


@pytest.fixture
def celery_beat_process(celery_worker_process, tmp_path):
    """A real `celery beat` (the portal's DatabaseScheduler) beside celery_worker_process, running the test
    database's periodic tasks on that worker: each task's queue is set to the worker's, as Admin -> Periodic
    tasks can (so no other worker, and no message left on the default queue, is involved). Set
    BEAT_EVERY_SECONDS with monkeypatch.setenv before it starts to shorten the schedules. Its log is
    tmp_path / "beat.log"; yields the worker's queue.
    """
    from django_celery_beat.models import PeriodicTask

    PeriodicTask.objects.update(queue=celery_worker_process)
    log = tmp_path / "beat.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "portal", "beat", "--loglevel=INFO",
         "--schedule", str(tmp_path / "celerybeat-schedule"), "--pidfile="],
        cwd=ROOT, env=_process_env(), stdout=log.open("w"), stderr=subprocess.STDOUT,
    )
    try:
        _wait_for_line(proc, log, "beat: Starting...", "Celery beat")
        yield celery_worker_process
    finally:
        _stop(proc)
