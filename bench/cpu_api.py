"""CPU per request of the usage API, in process: GET /api/v1/usage/?granularity=day through the WSGI application
(as gunicorn calls it, DEBUG off, a persistent connection), timed with time.process_time (this process's CPU:
the database server's work is not in it), so the figure holds on a busy machine where wall-clock latency does not.

Run as ``python bench/cpu_api.py [--database bench_api] [--requests 500] [--etag] [--profile]`` on PostgreSQL
(DATABASE_URL's server). The database is bench_api.py's (seeded by it: ``--database`` names another one seeded the
same way, e.g. for a second checkout), or ``--tenants 10000 --months 3`` for the large data set of bench/_scale.py.
Prints the CPU ms per request (median of 5 rounds; and the PostgreSQL backend's, from /proc) and a hash of the answers (the same before and after a change
that must not change them).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _load import ROOT, bench_database_url, cpu_seconds, ensure_database, setup_django  # noqa: E402

sys.path.insert(0, str(ROOT))


def environ_for(path: str, token: str, etag: str | None = None) -> dict:
    route, _, query = path.partition("?")
    environ = {
        "REQUEST_METHOD": "GET", "PATH_INFO": route, "QUERY_STRING": query, "SCRIPT_NAME": "",
        "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000", "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "127.0.0.1", "HTTP_AUTHORIZATION": f"Bearer {token}", "HTTP_ACCEPT": "*/*",
        "wsgi.version": (1, 0), "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(b""), "wsgi.errors": sys.stderr,
        "wsgi.multithread": False, "wsgi.multiprocess": True, "wsgi.run_once": False,
    }
    if etag:
        environ["HTTP_IF_NONE_MATCH"] = etag
    return environ


def call(application, path: str, token: str, etag: str | None = None) -> tuple[str, dict, bytes]:
    seen = {}

    def start_response(status, headers, exc_info=None):
        seen["status"], seen["headers"] = status, dict(headers)

    result = application(environ_for(path, token, etag), start_response)
    try:
        body = b"".join(result)
    finally:
        if hasattr(result, "close"):
            result.close()
    return seen["status"], seen["headers"], body


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", default="bench_api", help="bench_api.py's database (default bench_api)")
    parser.add_argument("--tenants", type=int, default=0, help="with --months: the large data set of bench/_scale.py")
    parser.add_argument("--months", type=int, default=0)
    parser.add_argument("--requests", type=int, default=500, help="requests per round (default 500)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--etag", action="store_true", help="each request with If-None-Match: its ETag (304)")
    parser.add_argument("--profile", action="store_true", help="cProfile one round (top 40 by cumulative time)")
    args = parser.parse_args()

    base_url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    var_dir = Path(os.environ.get("PORTAL_VAR_DIR") or ROOT / "var" / "bench_api")
    var_dir.mkdir(parents=True, exist_ok=True)
    os.environ.update(DJANGO_DEBUG="false", API_THROTTLE_RATE="1000000/minute", LOG_LEVEL="WARNING",
                      IDENTITY_BACKEND="local")
    import bench_api

    if args.months:
        import _scale

        db_url = _scale.scale_database(base_url, args.tenants, args.months)
        setup_django(db_url, var_dir)
        callers = bench_api.tokens("tenant-", step=max(1, args.tenants // bench_api.TOKEN_TENANTS))
    else:
        db_url = bench_database_url(base_url, args.database)
        ensure_database(base_url, args.database)
        bench_api.BENCH_DB = args.database
        setup_django(db_url, var_dir)
        bench_api.seed(False)
        callers = bench_api.tokens()
    from django.conf import settings

    settings.DATABASES["default"]["CONN_MAX_AGE"] = 600
    from urllib.parse import urlencode

    from portal.wsgi import application

    start, end = bench_api.window()
    query = urlencode({"granularity": "day", "start": start.isoformat().replace("+00:00", "Z"),
                       "end": end.isoformat().replace("+00:00", "Z"), "page_size": 100})
    path = f"/api/v1/usage/?{query}"
    digest = hashlib.sha256()
    etags = {}
    for slug, token in callers:  # warm up, and the answers' hash
        status, headers, body = call(application, path, token)
        if not status.startswith("200") or b'"count":90' not in body:
            raise SystemExit(f"{slug}: {status} {body[:300]!r}")
        digest.update(body)
        etags[token] = headers.get("ETag")
    print(f"answers of {len(callers)} tenants: sha256 {digest.hexdigest()[:16]}")
    expected = "304" if args.etag else "200"
    plan = [(token, etags[token] if args.etag else None) for _, token in callers]

    from django.db import connection

    with connection.cursor() as cursor:  # the PostgreSQL backend serving this process (the same connection throughout)
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]
    server = []

    def round_() -> float:
        began, began_server = time.process_time(), cpu_seconds([backend])
        for i in range(args.requests):
            token, etag = plan[i % len(plan)]
            status, _, _ = call(application, path, token, etag)
            if not status.startswith(expected):
                raise SystemExit(f"answered {status}")
        server.append((cpu_seconds([backend]) - began_server) * 1000 / args.requests)
        return (time.process_time() - began) * 1000 / args.requests

    if args.profile:
        import cProfile
        import pstats

        profiler = cProfile.Profile(time.process_time)  # CPU, not the wait for the server
        profiler.enable()
        round_()
        profiler.disable()
        pstats.Stats(profiler).sort_stats(os.environ.get("PROFILE_SORT", "cumulative")).print_stats(int(os.environ.get("PROFILE_LINES", "60")))
    figures = [round_() for _ in range(args.rounds)]
    print(f"GET {path.split('?')[0]} granularity=day{' (If-None-Match: 304)' if args.etag else ''}: "
          f"CPU ms/request median {statistics.median(figures):.2f}  "
          f"(rounds: {', '.join(f'{f:.2f}' for f in figures)}); the database server's CPU ms/request "
          f"{statistics.median(server[-len(figures):]):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
