"""Shared test fixtures: markers that skip what this machine lacks, and a real Celery worker."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings

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


@pytest.fixture
def celery_worker_process(transactional_db, tmp_path):
    """A real `celery worker` process on the configured Redis broker, using the test database.

    Use with data committed by the test (transactional_db), since the worker is another process.
    """
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
    queue = f"test-{os.getpid()}-{int(time.time() * 1000)}"
    log = tmp_path / "worker.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "portal", "worker", "--pool=solo", "--concurrency=1",
         "-Q", queue, "--without-heartbeat", "--without-gossip", "--without-mingle", "--loglevel=INFO"],
        cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.time() + 60
        while "ready." not in log.read_text():
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"the Celery worker did not start:\n{log.read_text()}")
            time.sleep(0.2)
        yield queue
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
