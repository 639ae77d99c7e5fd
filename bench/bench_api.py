"""Benchmark of the usage API: a tenant's month of daily usage under a fixed 100 requests/s, on PostgreSQL.

Run as ``python bench/bench_api.py [--rate 100] [--seconds 20] [--workers 3] [--reseed] [--check] [--etag]``, or
``--tenants 10000 --months 3`` over the kept large data set of bench/_scale.py instead of step 1's.
``--etag`` sends each request as a caching client repeats it: with If-None-Match and the ETag of its copy
(304 while no sync changed the usage).

1. Seeds its own PostgreSQL database (``bench_api`` on the server of DATABASE_URL, default
   postgres://postgres@127.0.0.1:5432/postgres): 200 tenants × 30 days × 24 hours × 3 metrics of hourly
   usage (432,000 rows, with COPY), and one tenant user with an ID token for 20 of the tenants.
   A second run reuses the data (``--reseed`` rebuilds it).
2. Starts gunicorn on 127.0.0.1 (a free port) with DEBUG off and persistent database connections.
3. Sends GET /api/v1/usage/?granularity=day over the 30 days (90 buckets, one page) at a fixed rate
   from a small open-loop load generator (a scheduler and a thread pool; loopback only; it stops by
   itself). Latency is measured from each request's scheduled time, so a stalled server cannot hide
   its queue (no coordinated omission).
4. Prints p50, p90, p99, max, the achieved throughput and the error count; ``--check`` exits 1 when
   p99 >= 50 ms or any request failed (issue 7's target).
"""

from __future__ import annotations

import argparse
import http.client
import os
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

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

BENCH_DB = "bench_api"
TENANTS = 200
DAYS = 30
METRICS = ("api_calls", "data_out_mb", "active_ips")
TOKEN_TENANTS = 20


def window() -> tuple[datetime, datetime]:
    end = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return end - timedelta(days=DAYS), end


def seed(reseed: bool) -> None:
    from django.core.management import call_command
    from django.db import connection, transaction

    from metering.models import HourlyUsage
    from tenants.models import Metric, Tenant

    call_command("migrate", verbosity=0, interactive=False)
    start, end = window()
    expected = TENANTS * DAYS * 24 * len(METRICS)
    have = HourlyUsage.objects.filter(hour__gte=start, hour__lt=end).count()
    if have == expected and not reseed:
        print(f"seed: reusing {have:,} hourly rows in {BENCH_DB}")
        rollup(start, end)
        vacuum()
        return
    t0 = time.perf_counter()
    with transaction.atomic():
        HourlyUsage.objects.all().delete()
        metrics = []
        for code, aggregation, field, divisor in (("api_calls", "count", "", 1), ("data_out_mb", "sum", "response_length", 1000000),
                                                  ("active_ips", "unique_count", "ip", 1)):
            metric, _ = Metric.objects.update_or_create(code=code, defaults={
                "name": code, "aggregation": aggregation, "field": field, "divisor": divisor})
            metrics.append(metric)
        tenants = []
        for i in range(TENANTS):
            tenant, _ = Tenant.objects.get_or_create(slug=f"bench-{i:03d}", defaults={
                "name": f"Bench {i}", "contact_email": f"billing@bench-{i:03d}.example"})
            tenants.append(tenant)
        now = datetime.now(UTC)
        hours = [start + timedelta(hours=h) for h in range(DAYS * 24)]
        with connection.cursor() as cursor:
            with cursor.connection.cursor().copy(
                "COPY metering_hourlyusage (tenant_id, metric_id, hour, value, updated_at) FROM STDIN"
            ) as copy:
                for t, tenant in enumerate(tenants):
                    for m, metric in enumerate(metrics):
                        for h, hour in enumerate(hours):
                            copy.write_row((tenant.pk, metric.pk, hour, (t * 7 + m * 13 + h * 31) % 1000 + 1, now))
    rollup(start, end)
    vacuum()
    print(f"seed: {HourlyUsage.objects.count():,} hourly rows for {TENANTS} tenants in {time.perf_counter() - t0:.1f} s")


def rollup(start: datetime, end: datetime) -> None:
    """The daily rollup of the seeded hours (once), as the sync writes it: the API's day buckets of a unique_count
    metric are the day's row (without them every answer lacked active_ips' 30 buckets and counted as wrong)."""
    from django.db import transaction

    from metering.models import DailyUsage
    from metering.services.sync import daily_usage_refresh

    if not DailyUsage.objects.filter(day__gte=start.date(), day__lt=end.date()).exists():
        with transaction.atomic():
            daily_usage_refresh(start=start, end=end)


def vacuum() -> None:
    """Statistics and the visibility map up to date, as autovacuum would have them on a live database."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE metering_hourlyusage")
        cursor.execute("VACUUM ANALYZE metering_dailyusage")


def tokens(prefix: str = "bench-", step: int = 1) -> list[tuple[str, str]]:
    """(tenant slug, ID token) for TOKEN_TENANTS tenants (every ``step``-th), making their users once."""
    from tenants.models import Tenant, TenantRole, TenantUser
    from tenants.services.identity import tenant_user_create, tenant_user_issue_token

    result = []
    for tenant in Tenant.objects.filter(slug__startswith=prefix).order_by("slug")[:TOKEN_TENANTS * step:step]:
        tenant_user = TenantUser.objects.filter(tenant=tenant).first()
        if tenant_user is None:
            tenant_user, _ = tenant_user_create(tenant=tenant, email=f"user@{tenant.slug}.example",
                                                role=TenantRole.OWNER, password="Bench-Password-123")
        result.append((tenant.slug, tenant_user_issue_token(tenant_user=tenant_user)))
    return result


def workers_backends(since: datetime) -> list[int]:
    """The PostgreSQL server processes of the bench's database that started since ``since`` (the workers')."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                       "AND pid <> pg_backend_pid() AND backend_start >= %s", [since])
        return [pid for (pid,) in cursor.fetchall()]


def one_request(port: int, path: str, token: str, etag: str | None = None) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        headers = {"Authorization": f"Bearer {token}", **({"If-None-Match": etag} if etag else {})}
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        body = response.read()
        if response.status == 200 and b'"count":90' not in body:
            return -1  # a wrong answer counts as an error
        if etag and response.status == 304:
            return 200  # the client's copy stands: a right answer
        return response.status
    finally:
        conn.close()


def etag_of(port: int, path: str, token: str) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
        response = conn.getresponse()
        response.read()
        return response.getheader("ETag")
    finally:
        conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=100.0, help="requests per second (default 100)")
    parser.add_argument("--seconds", type=float, default=20.0, help="how long to send (default 20)")
    parser.add_argument("--workers", type=int, default=3, help="gunicorn sync workers (default 3)")
    parser.add_argument("--threads", type=int, default=32, help="load generator threads (default 32)")
    parser.add_argument("--reseed", action="store_true", help="rebuild the bench database's usage")
    parser.add_argument("--check", action="store_true", help="exit 1 unless p99 < 50 ms with no errors")
    parser.add_argument("--tenants", type=int, default=TENANTS,
                        help="with --months: the large data set's tenants (bench/_scale.py), e.g. 10000")
    parser.add_argument("--months", type=int, default=0,
                        help="the kept large data set of bench/_scale.py over this many whole months and this one")
    parser.add_argument("--etag", action="store_true",
                        help="repeat requests as a caching client does: If-None-Match with the answer's ETag (304)")
    args = parser.parse_args()

    base_url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    var_dir = ROOT / "var" / "bench_api"
    var_dir.mkdir(parents=True, exist_ok=True)
    if args.months:
        sys.path.insert(0, str(ROOT / "bench"))
        import _scale
        from django.utils import timezone as _tz

        db_url = _scale.setup_scale(base_url, var_dir, tenants=args.tenants, months=args.months)
        info = _scale.seed_scale(tenants=args.tenants, months=args.months, today=_tz.now().date())
        print(f"data set: {args.tenants:,} tenants, {info['hourly_rows']:,} hourly rows from {info['start']} "
              f"({info['hourly_bytes'] / 2**30:.1f} GiB with indexes)")
        callers = tokens("tenant-", step=max(1, args.tenants // TOKEN_TENANTS))
    else:
        db_url = bench_database_url(base_url, BENCH_DB)
        ensure_database(base_url, BENCH_DB)
        setup_django(db_url, var_dir)
        seed(args.reseed)
        callers = tokens()
    start, end = window()
    query = urlencode({"granularity": "day", "start": start.isoformat().replace("+00:00", "Z"),
                       "end": end.isoformat().replace("+00:00", "Z"), "page_size": 100})
    paths_tokens = [(f"/api/v1/usage/?{query}", token) for _, token in callers]

    port = free_port()
    log = var_dir / "gunicorn.log"
    server_started = datetime.now(UTC)
    server = start_gunicorn(db_url, var_dir, port, args.workers, log)
    try:
        for path, token in paths_tokens:  # warm up every worker's connection and caches
            for _ in range(args.workers):
                status = one_request(port, path, token)
                if status != 200:
                    raise SystemExit(f"warm-up request answered {status}; see {log}")
        if args.etag:  # each caller's copy and its tag, as a client keeps them
            paths_tokens = [(path, token, etag_of(port, path, token)) for path, token in paths_tokens]
        # CPU of the load alone: the gunicorn workers, their PostgreSQL backends (those of the bench's database
        # that started with them: another client of that database at the same time would count too) and this
        # process (the load generator). Beside a busy machine's p99, what a request costs.
        web = [server.pid, *child_pids(server.pid)]
        db_backends = workers_backends(server_started)
        cpu_before = (cpu_seconds(web), cpu_seconds(db_backends), time.process_time())
        load_before = os.getloadavg()[0]
        latencies, failures, wall = load(lambda i: one_request(port, *paths_tokens[i % len(paths_tokens)]),
                                         args.rate, args.seconds, args.threads)
        cpu_after = (cpu_seconds(web), cpu_seconds(db_backends), time.process_time())
    finally:
        stop_gunicorn(server)

    ms = [v * 1000 for v in latencies]
    p50, p90, p99 = (percentile(ms, p) for p in (50, 90, 99))
    print(f"GET /api/v1/usage/ (a tenant's {DAYS} days, daily, {len(METRICS)} metrics; {args.tenants:,} tenants in "
          f"the table{', repeats with If-None-Match: 304' if args.etag else ''})")
    print(f"target rate {args.rate:.0f} req/s for {args.seconds:.0f} s; gunicorn {args.workers} sync workers on 127.0.0.1:{port}")
    print(f"requests {len(ms)}  errors {len(failures)}  throughput {len(ms) / wall:.1f} req/s")
    print(f"latency ms  p50 {p50:.1f}  p90 {p90:.1f}  p99 {p99:.1f}  max {max(ms):.1f}  mean {statistics.mean(ms):.1f}")
    if failures:
        print(f"failures (first 5): {failures[:5]}")
    cpu = [after - before for before, after in zip(cpu_before, cpu_after, strict=True)]
    if ms:
        print(f"CPU ms/request: gunicorn {cpu[0] / len(ms) * 1000:.1f}, PostgreSQL {cpu[1] / len(ms) * 1000:.1f}, "
              f"load generator {cpu[2] / len(ms) * 1000:.1f} ({os.cpu_count()} cores; load average "
              f"{load_before:.1f} before the load)")
    ok = p99 < 50 and not failures
    print("target p99 < 50 ms:", "met" if ok else "NOT met")
    return 0 if ok or not args.check else 1


if __name__ == "__main__":
    raise SystemExit(main())
