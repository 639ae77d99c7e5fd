"""The portal's entry points run in another process on the test database: a management command as an
operator runs it (exit status, stdout, stderr), or a run to kill -9 half way.

Use with data committed by the test (``transactional_db``): the other process has its own connection.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]


def portal_env(**extra: str) -> dict[str, str]:
    """The environment of a portal process that uses this test's database (and settings given as strings)."""
    db = connection.settings_dict
    env = dict(os.environ)
    if connection.vendor == "postgresql":
        env["DATABASE_URL"] = (f"postgres://{db['USER'] or 'postgres'}@{db['HOST'] or '127.0.0.1'}:"
                               f"{db['PORT'] or 5432}/{db['NAME']}")
    else:
        if connection.creation.is_in_memory_db(db["NAME"]):
            pytest.skip("another process cannot open an in-memory SQLite test database: set DATABASE_TEST_NAME "
                        "(or DATABASE_URL=postgres://..., as CI does)")
        env["DATABASE_URL"] = f"sqlite:///{Path(db['NAME']).resolve()}"
    env["PORTAL_VAR_DIR"] = str(settings.VAR_DIR)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def manage(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    """``python manage.py <args>``, as an operator types it."""
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


# A portal process with one function replaced by ``PAUSE_AT``: on its ``PAUSE_CALL``-th call it touches the
# file ``PAUSE_FLAG`` and sleeps, to be killed there; ``PAUSE_PATCH`` sets module integers first
# ("module.NAME=3,..."). It then runs a management command, or a Celery worker (``_PAUSING_WORKER``).
_PAUSE = """
import os, sys, time, importlib
import django
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
django.setup()

if os.environ.get("PAUSE_AT"):
    module_name, _, name = os.environ["PAUSE_AT"].rpartition(".")
    module = importlib.import_module(module_name)
    real = getattr(module, name)
    calls = {"n": 0}

    def pausing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == int(os.environ["PAUSE_CALL"]):
            open(os.environ["PAUSE_FLAG"], "w").close()
            time.sleep(600)
        return real(*args, **kwargs)

    setattr(module, name, pausing)
for assignment in filter(None, os.environ.get("PAUSE_PATCH", "").split(",")):
    target, _, value = assignment.partition("=")
    owner, _, attribute = target.rpartition(".")
    setattr(importlib.import_module(owner), attribute, int(value))
"""
_PAUSING = _PAUSE + """
from django.core.management import call_command
call_command(*sys.argv[1:])
"""
_PAUSING_WORKER = _PAUSE + """
from portal.celery import app
app.worker_main(["worker", *sys.argv[1:]])
"""


def start_worker(*, queue: str, env: dict[str, str], log: Path, name: str, pause_at: str = "", call: int = 0,
                 flag: Path | None = None, patch: str = "") -> subprocess.Popen:
    """A real Celery worker process (solo pool) on `queue`, returned once ready; with `pause_at`, it stops at
    the `call`-th call of that function (touching `flag`), to be killed there."""
    env = {**env, "PAUSE_AT": pause_at, "PAUSE_CALL": str(call), "PAUSE_FLAG": str(flag or ""), "PAUSE_PATCH": patch}
    proc = subprocess.Popen(
        [sys.executable, "-c", _PAUSING_WORKER, "--pool=solo", "--concurrency=1", "-Q", queue, "-n", f"{name}@%h",
         "--without-heartbeat", "--without-gossip", "--without-mingle", "--loglevel=INFO"],
        cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 90
    while "ready." not in log.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"the Celery worker {name} did not start:\n{log.read_text()}")
        time.sleep(0.2)
    return proc


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=20)


def start_paused(*args: str, pause_at: str, call: int, flag: Path, env: dict[str, str], patch: str = "",
                 timeout: float = 90) -> subprocess.Popen:
    """Start ``manage.py <args>`` in a process that stops at the ``call``-th call of ``pause_at`` (a dotted
    module attribute) and return it once it is there, to be killed."""
    env = {**env, "PAUSE_AT": pause_at, "PAUSE_CALL": str(call), "PAUSE_FLAG": str(flag), "PAUSE_PATCH": patch}
    log = flag.with_suffix(".log")
    proc = subprocess.Popen([sys.executable, "-c", _PAUSING, *args], cwd=ROOT, env=env,
                            stdout=log.open("w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    while not flag.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"the run never reached {pause_at} call {call}:\n{log.read_text()}")
        time.sleep(0.1)
    return proc


def concurrently(work, *, times: int = 2) -> list:
    """``work()`` in ``times`` threads released together (each with its own database connection, closed
    after); returns their results; raises the first exception any of them raised."""
    import threading

    barrier = threading.Barrier(times)
    results, errors = [], []

    def worker():
        try:
            barrier.wait()
            results.append(work())
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(times)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results
