"""Benchmark of webhook delivery: N events to a loopback receiver, delivered, signed and recorded.

Run as ``python bench/bench_webhooks.py [--events 3000] [--per-transaction 100] [--workers 2] [--concurrency 8]``. With
CELERY_BROKER_URL=redis://… it starts that many real ``celery worker`` processes (thread pool) on a queue of
its own, so the figure is the deployed path: the outbox row, the task on the broker, the claim, the signed
POST and the recorded attempt. Without Redis it runs the same service (``webhook_delivery_attempt``) from a
thread pool in this process. PostgreSQL when DATABASE_URL points at it (it creates and drops its own database
``bench_webhooks``), else a temporary SQLite file. It prints the events written per second and the
deliveries per second (issue 16's target: 200/s); every event must arrive once, signed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DB_NAME = "bench_webhooks"


def _prepare_database() -> str:
    url = os.environ.get("DATABASE_URL", "")
    if url.startswith("postgres"):
        import psycopg

        with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME}")
            conn.execute(f"CREATE DATABASE {DB_NAME}")
        os.environ["DATABASE_URL"] = url.rsplit("/", 1)[0] + f"/{DB_NAME}"
        return "PostgreSQL"
    folder = tempfile.mkdtemp(prefix="bench-webhooks-")
    os.environ["DATABASE_URL"] = f"sqlite:///{folder}/bench.sqlite3"
    os.environ["PORTAL_VAR_DIR"] = folder
    return "SQLite"


class Receiver:
    def __init__(self):
        self.ids: list[str] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.lock:
                    receiver.ids.append(self.headers["webhook-id"])
                    receiver.times.append(time.perf_counter())
                    if len(receiver.ids) % 500 == 0:
                        receiver.samples.append((self.headers, body))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.samples: list = []
        self.times: list[float] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.request_queue_size = 512
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--workers", type=int, default=2, help="celery worker processes (Redis only)")
    parser.add_argument("--per-transaction", type=int, default=100,
                        help="events written per transaction (their deliveries are queued together, 20 a task)")
    parser.add_argument("--concurrency", type=int, default=8, help="threads per worker (or in this process)")
    args = parser.parse_args()
    engine = _prepare_database()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    os.environ["WEBHOOKS_ALLOW_PRIVATE"] = "true"  # the receiver is on loopback
    os.environ["EMAIL_URL"] = "dummymail://"
    broker = os.environ.get("CELERY_BROKER_URL", "")
    real_workers = broker.startswith("redis://")
    queue = f"bench-webhooks-{os.getpid()}"
    os.environ["CELERY_TASK_DEFAULT_QUEUE"] = queue
    if not real_workers:
        os.environ["CELERY_BROKER_URL"] = "memory://"
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection, transaction
    from standardwebhooks import Webhook

    from tenants.models import Tenant, WebhookDelivery, WebhookDeliveryStatus
    from tenants.webhooks import delivery as delivery_services
    from tenants.webhooks import events
    from tenants.webhooks.endpoints import webhook_endpoint_create

    call_command("migrate", verbosity=0)
    receiver = Receiver()
    _endpoint, secret = webhook_endpoint_create(tenant=None, url=receiver.url, event_types=["tenant.suspended"])
    tenant = Tenant.objects.create(slug="bench", name="Bench", contact_email="billing@bench.example")

    procs = []
    pending: list[int] = []
    if not real_workers:
        events.enqueue = pending.extend  # this process delivers them below

    n = args.events
    began = time.perf_counter()
    per = args.per_transaction
    for start in range(0, n, per):  # a transaction's deliveries are queued together once it commits
        with transaction.atomic():
            for _ in range(min(per, n - start)):
                events.webhook_emit(type="tenant.suspended", resource=tenant, tenant=tenant)
    written = time.perf_counter() - began
    print(f"{engine}: {n} events written, {per} a transaction (with their deliveries, queued on commit) in {written:.2f} s: "
          f"{n / written:.0f} events/s")

    # Delivery is timed on its own: the workers start once every task is queued (on a 2-core machine the
    # writing would otherwise take CPU from them), and the clock runs from their start to the last answer.
    if real_workers:
        log_dir = Path(tempfile.mkdtemp(prefix="bench-webhooks-logs-"))
        for i in range(args.workers):
            log = log_dir / f"worker{i}.log"
            pool = ["--pool=threads", f"--concurrency={args.concurrency}"] if args.concurrency > 1 else ["--pool=solo"]
            procs.append((subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "portal", "worker", *pool, "-n", f"bench{i}@%h", "-Q", queue,
                 "--without-heartbeat", "--without-gossip", "--without-mingle", "--loglevel=WARNING"],
                cwd=ROOT, env=dict(os.environ), stdout=log.open("w"), stderr=subprocess.STDOUT), log))
    began = time.perf_counter()
    if not real_workers:
        def attempt(pk):
            try:
                return delivery_services.webhook_delivery_attempt(delivery_id=pk).outcome
            finally:
                connection.close()

        with ThreadPoolExecutor(args.concurrency) as pool:
            list(pool.map(attempt, pending))
    deadline = time.time() + 600
    while len(receiver.ids) < n and time.time() < deadline:
        time.sleep(0.05)
    elapsed = time.perf_counter() - began
    while time.time() < deadline and WebhookDelivery.objects.exclude(status=WebhookDeliveryStatus.SUCCEEDED).exists():
        time.sleep(0.1)
    recorded = time.perf_counter() - began
    where = (f"{args.workers} celery workers × {args.concurrency} threads on Redis" if real_workers
             else f"{args.concurrency} threads in this process")
    unique = len(set(receiver.ids))
    steady = receiver.times[-1] - receiver.times[0]
    print(f"{engine}, {where}: {len(receiver.ids)} deliveries received ({unique} distinct webhook-ids) in "
          f"{elapsed:.2f} s from the workers' start (all recorded succeeded after {recorded:.2f} s)")
    print(f"{engine}, {where}: {(len(receiver.times) - 1) / steady:.0f} deliveries/s "
          f"(first to last delivery, {steady:.2f} s)")
    for headers, body in receiver.samples:
        Webhook(secret).verify(body, dict(headers.items()))
    succeeded = WebhookDelivery.objects.filter(status=WebhookDeliveryStatus.SUCCEEDED).count()
    assert unique == n == succeeded, (unique, n, succeeded)
    for proc, _log in procs:
        proc.terminate()
    for proc, _log in procs:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    connection.close()
    if engine == "PostgreSQL":
        import psycopg

        with psycopg.connect(os.environ["DATABASE_URL"].rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")


if __name__ == "__main__":
    main()
