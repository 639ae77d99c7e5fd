"""What the HTTP benchmarks share (bench_api, bench_events): their own PostgreSQL database, gunicorn on a free
port with DEBUG off, and an open-loop load generator that measures latency from each request's scheduled time.
"""

from __future__ import annotations

import concurrent.futures
import http.client
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[1]


def bench_database_url(base_url: str, name: str) -> str:
    """DATABASE_URL's server with the database ``name`` (PostgreSQL only)."""
    parts = urlsplit(base_url)
    if not parts.scheme.startswith("postgres"):
        sys.exit(f"{name} needs PostgreSQL: DATABASE_URL is {base_url!r}")
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", "", ""))


def ensure_database(base_url: str, name: str) -> None:
    import psycopg

    parts = urlsplit(base_url)
    admin_url = urlunsplit(("postgresql", parts.netloc, "/postgres", "", ""))
    try:
        conn = psycopg.connect(admin_url, autocommit=True)
    except psycopg.OperationalError as exc:
        sys.exit(f"{Path(sys.argv[0]).name} needs a PostgreSQL server (DATABASE_URL, default "
                 f"postgres://postgres@127.0.0.1:5432/postgres): {str(exc).strip()}")
    with conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def setup_django(db_url: str, var_dir: Path) -> None:
    os.environ["DATABASE_URL"] = db_url
    os.environ["PORTAL_VAR_DIR"] = str(var_dir)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    import django

    django.setup()
    from django.conf import settings

    # Seeding makes logins and keys: a fast hasher here (this process only) keeps that to a second.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_gunicorn(db_url: str, var_dir: Path, port: int, workers: int, log: Path,
                   extra_env: dict[str, str] | None = None) -> subprocess.Popen:
    """gunicorn with sync workers on 127.0.0.1:``port``, DEBUG off, persistent connections, throttling out of
    the way; returns once /healthz answers."""
    env = dict(os.environ, DATABASE_URL=f"{db_url}?conn_max_age=600", PORTAL_VAR_DIR=str(var_dir), DJANGO_DEBUG="false",
               API_THROTTLE_RATE="1000000/minute", LOG_LEVEL="WARNING", IDENTITY_BACKEND="local", **(extra_env or {}))
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "portal.wsgi:application", "--bind", f"127.0.0.1:{port}",
         "--workers", str(workers), "--worker-class", "sync", "--log-level", "warning"],
        cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
    )
    deadline = time.time() + 90  # a loaded machine (other work, a bench seeding beside) starts workers slowly
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"gunicorn exited:\n{log.read_text()}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            conn.getresponse().read()
            return proc
        except OSError:
            time.sleep(0.2)
    proc.terminate()
    raise SystemExit("gunicorn did not answer within 90 s")


def stop_gunicorn(proc: subprocess.Popen) -> None:
    """SIGTERM (a graceful stop: the workers finish their request and exit), SIGKILL after 15 s."""
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()


def load(send: Callable[[int], int | str], rate: float, seconds: float, threads: int, expected: int = 200,
         give_up: float | None = None, timeline: list[tuple[float, float]] | None = None):
    """Open loop: request i (``send(i)`` returns its status) is due at t0 + i/rate whatever happened before;
    latency counts from then. Returns (latencies in seconds, the statuses other than ``expected``, wall time).
    A request not yet sent ``give_up`` seconds after it was due is not sent: a failure, so that a server far
    behind ends the run soon after ``seconds`` rather than a long queue later. ``timeline``, when given, receives
    (when the request was due, in seconds from the start; its latency) for each request."""
    total = int(rate * seconds)
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()

    def run(i: int, due: float) -> None:
        if give_up is not None and time.perf_counter() - due > give_up:
            status = f"not sent: {give_up:.0f} s late"
        else:
            try:
                status = send(i)
            except OSError as exc:
                status = repr(exc)
        elapsed = time.perf_counter() - due
        with lock:
            latencies.append(elapsed)
            if timeline is not None:
                timeline.append((due - t0, elapsed))
            if status != expected:
                failures.append(str(status))

    with concurrent.futures.ThreadPoolExecutor(max_workers=threads) as pool:
        t0 = time.perf_counter() + 0.1
        for i in range(total):
            due = t0 + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            pool.submit(run, i, due)
    wall = time.perf_counter() - t0
    return latencies, failures, wall


def child_pids(parent: int) -> list[int]:
    """The processes whose parent is ``parent`` (gunicorn's workers), from /proc; [] where there is no /proc."""
    pids = []
    for entry in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = entry.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent:
            pids.append(int(entry.parent.name))
    return pids


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds the processes ``pids`` have used so far (Linux /proc; gone ones count 0)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / tick


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]
