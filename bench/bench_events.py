"""Benchmark of event ingestion: batches of events posted at a fixed rate to gunicorn on PostgreSQL (issue 15).

Run as ``python bench/bench_events.py [--rate 20000] [--batch 100] [--seconds 20] [--workers N] [--check]``.

1. Uses its own PostgreSQL database (``bench_events`` on the server of DATABASE_URL, default
   postgres://postgres@127.0.0.1:5432/postgres; ``--database`` names another) with 4 tenants, each with a
   fresh API key holding events:write (``api_key_create``); the receipts of earlier runs are deleted first.
2. Starts gunicorn on 127.0.0.1 (a free port) with DEBUG off, persistent database connections, throttling
   out of the way (API_THROTTLE_RATE), EVENTS_BACKEND=local and LAKE_WAREHOUSE_DIR in a temporary folder
   (the other settings, e.g. EVENTS_APPEND_SECONDS, come from the environment as for the portal).
3. Sends POST /api/v1/events/ with ``--batch`` events each (unique transaction ids, the tenants in turn,
   Bearer mk_...) at ``--rate`` events/s from the open-loop load generator of bench/_load.py: latency
   counts from each request's scheduled time (no coordinated omission). A request succeeds when it
   answers 202 with every event of its batch accepted; one still unsent 10 s after its time is a failure
   (not sent), so an overloaded server ends the run soon.
4. Prints p50, p90, p99, max, the achieved throughput and the errors, and the CPU the load cost (gunicorn,
   its PostgreSQL backends, this load generator: per request, and the rate the machine's cores could take
   if they did nothing else); then stops gunicorn (its workers append their spools as they exit) and
   counts the receipts in the database, the rows in the local events table and what was left in spool
   files (appended here, as the next process would; none when the exit appends work), to show that every
   accepted event reached the table once. ``--check`` exits 1 unless the achieved rate is within 5 % of
   ``--rate``, p99 < 100 ms and nothing failed or went missing (issue 15's target: 20,000 events/s).

The other half of issue 15's benchmark, a sync of 10 million events, is ``bench/bench_sync.py --source events``.
"""

from __future__ import annotations

import argparse
import atexit
import http.client
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from _load import (
    ROOT,
    bench_database_url,
    child_pids,
    cpu_seconds,
    ensure_database,
    free_port,
    load,
    percentile,
    setup_django,
    start_gunicorn,
    stop_gunicorn,
)

sys.path.insert(0, str(ROOT))

BENCH_DB = "bench_events"
TENANTS = 4
P99_TARGET_MS = 100


def prepare(run: str) -> list[str]:
    """Migrate, make the bench tenants with a new events:write key each; returns the raw keys."""
    from django.core.management import call_command
    from django.db import connection

    from metering.models import EventReceipt, EventRejection
    from tenants.models import ApiKey, Tenant
    from tenants.services.api_keys import api_key_create

    call_command("migrate", verbosity=0, interactive=False)
    tenants = [Tenant.objects.get_or_create(slug=f"bench-events-{i}", defaults={
        "name": f"Bench events {i}", "contact_email": f"billing@bench-events-{i}.example"})[0] for i in range(TENANTS)]
    EventReceipt.objects.filter(tenant__in=tenants).delete()
    EventRejection.objects.filter(tenant__in=tenants).delete()
    ApiKey.objects.filter(tenant__in=tenants).delete()
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM ANALYZE {EventReceipt._meta.db_table}")
    return [api_key_create(tenant=tenant, name=f"bench {run}", scopes=["events:write"])[1] for tenant in tenants]


def bodies(run: str, count: int, batch: int) -> list[bytes]:
    """``count`` request bodies of ``batch`` events each, made before the run so the generator only sends."""
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    return [json.dumps({"events": [
        {"transaction_id": f"{run}-{i}-{j}", "code": "llm.completion", "timestamp": now,
         "properties": {"model": "bench-1", "input_tokens": 1000 + j, "output_tokens": 200, "cached": j % 2 == 0}}
        for j in range(batch)]}, separators=(",", ":")).encode() for i in range(count)]


def post(port: int, body: bytes, key: str, batch: int) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", "/api/v1/events/", body=body,
                     headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
        response = conn.getresponse()
        answer = response.read()
        if response.status == 202 and json.loads(answer).get("accepted") != batch:
            return -1  # a 202 that did not accept the whole batch counts as an error
        return response.status
    finally:
        conn.close()


def lake_counts(run: str) -> tuple[int, int]:
    """(rows of this run in the local events table, distinct transaction ids among them)."""
    import pyarrow.compute as pc

    from metering.lake.events import LocalEventsTable

    try:
        ids = LocalEventsTable.from_settings().table().scan(selected_fields=("transaction_id",)).to_arrow()
    except Exception:  # never written
        return 0, 0
    column = ids.column("transaction_id")
    mine = column.filter(pc.starts_with(column, f"{run}-"))
    return len(mine), len(pc.unique(mine))


def database_backends(name: str) -> list[int]:
    """The PostgreSQL server processes serving database ``name`` (the workers' connections), when on this host."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", [name])
        return [pid for (pid,) in cursor.fetchall()]


def spooled(spool_dir: Path) -> int:
    if not spool_dir.is_dir():
        return 0
    return sum(1 for path in spool_dir.iterdir() if path.suffix in (".jsonl", ".ready")
               for line in path.open(encoding="utf-8") if line.strip())


def print_slowest_seconds(timeline: list[tuple[float, float]], started: float, every: float, shown: int = 3) -> None:
    """Where the tail comes from: the seconds of the run whose requests waited longest, with the wall clock's
    position in the appenders' EVENTS_APPEND_SECONDS cycle (they close segments at 0, append 0.5 s later)."""
    seconds: dict[int, list[float]] = {}
    for due, latency in timeline:
        seconds.setdefault(int(due), []).append(latency * 1000)
    worst = sorted(seconds.items(), key=lambda item: max(item[1]), reverse=True)[:shown]
    print("slowest seconds (by when the requests were due): " + "; ".join(
        f"{second}-{second + 1} s (append cycle {(started + second) % every:.1f} s): {len(ms)} requests, "
        f"median {statistics.median(ms):.0f} ms, max {max(ms):.0f} ms" for second, ms in worst))


def default_workers() -> int:
    return 2 * (os.cpu_count() or 1) + 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=20000.0, help="events per second (default 20000)")
    parser.add_argument("--batch", type=int, default=100, help="events per request (default 100)")
    parser.add_argument("--seconds", type=float, default=20.0, help="how long to send (default 20)")
    parser.add_argument("--workers", type=int, default=default_workers(),
                        help=f"gunicorn sync workers (default 2 × cores + 1 = {default_workers()})")
    parser.add_argument("--threads", type=int, default=64, help="load generator threads (default 64)")
    parser.add_argument("--database", default=BENCH_DB, help=f"the PostgreSQL database to use (default {BENCH_DB})")
    parser.add_argument("--check", action="store_true",
                        help=f"exit 1 unless --rate is achieved with p99 < {P99_TARGET_MS} ms, no error, none missing")
    args = parser.parse_args()

    base_url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    db_url = bench_database_url(base_url, args.database)
    var_dir = ROOT / "var" / "bench_events"
    var_dir.mkdir(parents=True, exist_ok=True)
    warehouse = Path(tempfile.mkdtemp(prefix="bench_events_lake_"))
    atexit.register(shutil.rmtree, warehouse, ignore_errors=True)
    sink_env = {"EVENTS_BACKEND": "local", "LAKE_WAREHOUSE_DIR": str(warehouse)}
    os.environ.update(sink_env)  # this process counts (and recovers) what the workers wrote
    ensure_database(base_url, args.database)
    setup_django(db_url, var_dir)
    from django.conf import settings

    from metering.event_sink import events_spool_dir, recover_event_spools
    from metering.models import EventReceipt

    run = uuid.uuid4().hex[:8]
    keys = prepare(run)
    requests = int(args.rate / args.batch * args.seconds)
    payloads = bodies(run, requests, args.batch)
    req_rate = args.rate / args.batch

    port = free_port()
    log = var_dir / "gunicorn.log"
    server = start_gunicorn(db_url, var_dir, port, args.workers, log, extra_env=sink_env)
    try:
        warm = bodies(f"{run}w", args.workers * 2, args.batch)  # every worker's connection, key cache and sink
        for i, body in enumerate(warm):
            status = post(port, body, keys[i % len(keys)], args.batch)
            if status != 202:
                raise SystemExit(f"warm-up request answered {status}; see {log}")
        # CPU of the load alone: gunicorn (its workers, their appender threads), their PostgreSQL backends, and
        # this process (the load generator), to say what a request costs the machine.
        web = [server.pid, *child_pids(server.pid)]
        db_backends = database_backends(args.database)
        cpu_before = (cpu_seconds(web), cpu_seconds(db_backends), time.process_time())
        timeline: list[tuple[float, float]] = []
        started = time.time() + 0.1  # the load generator's first request is due 0.1 s after it starts
        latencies, failures, wall = load(lambda i: post(port, payloads[i], keys[i % len(keys)], args.batch),
                                         req_rate, args.seconds, args.threads, expected=202, give_up=10,
                                         timeline=timeline)
        cpu_after = (cpu_seconds(web), cpu_seconds(db_backends), time.process_time())
    finally:
        stop_gunicorn(server)

    ms = [v * 1000 for v in latencies]
    p50, p90, p99 = (percentile(ms, p) for p in (50, 90, 99))
    sent = len(ms) * args.batch
    accepted_rate = (len(ms) - len(failures)) * args.batch / wall
    print(f"POST /api/v1/events/ ({args.batch} events a request, {TENANTS} tenants with an events:write key each)")
    print(f"target {args.rate:.0f} events/s ({req_rate:.0f} req/s) for {args.seconds:.0f} s; "
          f"gunicorn {args.workers} sync workers on 127.0.0.1:{port}; {os.cpu_count()} cores; "
          f"EVENTS_BACKEND=local, EVENTS_APPEND_SECONDS={settings.EVENTS_APPEND_SECONDS:g}; "
          f"load average before {os.getloadavg()[0]:.1f}")
    print(f"requests {len(ms)}  errors {len(failures)}  events due {sent:,}  "
          f"accepted {accepted_rate:,.0f} events/s ({len(ms) / wall:.1f} req/s)")
    print(f"latency ms  p50 {p50:.1f}  p90 {p90:.1f}  p99 {p99:.1f}  max {max(ms):.1f}  mean {statistics.mean(ms):.1f}")
    if failures:
        print(f"failures (first 5): {failures[:5]}")
    print_slowest_seconds(timeline, started, settings.EVENTS_APPEND_SECONDS)
    cpu = [after - before for before, after in zip(cpu_before, cpu_after, strict=True)]
    if sum(cpu) and ms:
        per_request = sum(cpu) / len(ms) * 1000
        print(f"CPU during the load: gunicorn {cpu[0]:.1f} s, PostgreSQL backends {cpu[1]:.1f} s, load generator "
              f"{cpu[2]:.1f} s = {per_request:.1f} ms a request ({per_request / args.batch * 1000:.0f} µs an event); "
              f"all {os.cpu_count()} cores busy with this alone: at most about "
              f"{os.cpu_count() / per_request * 1000 * args.batch:,.0f} events/s")

    # Every accepted event counted once: receipts, the table, the spools the workers left.
    receipts = EventReceipt.objects.filter(transaction_id__startswith=f"{run}-").count()
    rows_at_stop, _ = lake_counts(run)
    left_in_spools = spooled(events_spool_dir())
    recovered = recover_event_spools()
    rows, distinct = lake_counts(run)
    expected = sent - len(failures) * args.batch
    print(f"receipts {receipts:,} (accepted in 202 answers: {expected:,}; warm-up excluded)")
    print(f"events table: {rows_at_stop:,} rows when gunicorn stopped, {left_in_spools:,} left in spools "
          f"({recovered:,} appended from them here); now {rows:,} rows, {distinct:,} distinct transaction ids")
    complete = receipts == distinct == rows  # a timed-out request may still have been accepted: not missing
    print("every accepted event in the table once:", "yes" if complete else "NO")
    print("sync of 10 million events: see bench/bench_sync.py --source events")

    ok = (not failures and complete and p99 < P99_TARGET_MS and accepted_rate >= 0.95 * args.rate)
    print(f"target {args.rate:,.0f} events/s with p99 < {P99_TARGET_MS} ms and no error:", "met" if ok else "NOT met")
    return 0 if ok or not args.check else 1


if __name__ == "__main__":
    raise SystemExit(main())
