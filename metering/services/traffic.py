"""Generated access-log traffic: realistic records for demo tenants, written straight into the local lake.

Records are computed by DuckDB from a hash of (row number, seed), vectorised (10M rows in seconds,
no Python loop per row), so the same seed gives the same records. About 0.5% of the rows repeat
the previous request (Firehose's at-least-once duplicates), about 1% use the older log format
without tenant_id (attributed through the user), and about 0.2% come from unknown users.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import duckdb
import pyarrow as pa
from django.db import transaction

from tenants.models import Plan, Tenant, TenantStatus, TenantUser

USER_NAMESPACE = uuid.UUID("6f1e0c3a-8b2d-4c57-9a41-3d2e1f0b7c65")
USERS_PER_DEMO_TENANT = 3
CHUNK_ROWS = 1_000_000


@dataclass(frozen=True)
class TrafficTenant:
    slug: str
    usernames: tuple[str, ...]


def demo_username(slug: str, k: int) -> str:
    """A stable cognito:username-like id (a UUID, as Cognito's sub) for a generated user."""
    return str(uuid.uuid5(USER_NAMESPACE, f"{slug}/{k}"))


def traffic_tenants_ensure(*, count: int, start: datetime) -> list[TrafficTenant]:
    """The first ``count`` active tenants (by slug), creating demo tenants where there are fewer.

    A demo tenant gets three tenant users (mirror rows only: generated traffic needs usernames, not
    logins) and a subscription to an imported plan (round robin over the public plans), starting at
    ``start`` with no trial, so that the generated period can be synced and billed.
    """
    from tenants.selectors import tenant_has_active_subscription
    from tenants.services.lifecycle import tenant_create
    from tenants.services.subscriptions import subscription_create

    tenants = list(Tenant.objects.filter(status=TenantStatus.ACTIVE).order_by("slug")[:count])
    missing = count - len(tenants)
    if missing > 0:
        if not Plan.objects.exists():
            _import_demo_plans()
        versions = [p.current_version for p in Plan.objects.order_by("code") if p.current_version is not None]
        n = 0
        with transaction.atomic():
            while missing > 0:
                n += 1
                slug = f"demo-{n:04d}"
                if Tenant.objects.filter(slug=slug).exists():
                    continue
                tenant = tenant_create(slug=slug, name=f"Demo tenant {n}", contact_email=f"billing@{slug}.example",
                                       status=TenantStatus.ACTIVE)
                TenantUser.objects.bulk_create([
                    TenantUser(tenant=tenant, username=demo_username(slug, k), email=f"user{k}@{slug}.example",
                               role="owner" if k == 0 else "member")
                    for k in range(USERS_PER_DEMO_TENANT)
                ])
                if versions and not tenant_has_active_subscription(tenant=tenant):
                    subscription_create(tenant=tenant, plan_version=versions[(n - 1) % len(versions)],
                                        started_at=start, with_trial=False)
                tenants.append(tenant)
                missing -= 1
    usernames: dict[int, list[str]] = {}
    for tenant_id, username in TenantUser.objects.filter(tenant__in=tenants).order_by("username").values_list(
            "tenant_id", "username"):
        usernames.setdefault(tenant_id, []).append(username)
    return [TrafficTenant(slug=t.slug, usernames=tuple(usernames.get(t.pk, ()))) for t in tenants]


def _import_demo_plans() -> None:
    """A portal with no plans gets the demo plans (as load_demo does), so demo tenants can subscribe."""
    import json
    from pathlib import Path

    from tenants.services.plans import plans_import

    fixture = Path(__file__).resolve().parents[2] / "tenants" / "fixtures" / "demo_plans.json"
    plans_import(document=json.loads(fixture.read_text()))


# Uniform numbers in [0, 1) from a hash of (source row, seed, stream): one stream per field.
def _u(stream: int) -> str:
    return f"(hash(src, $seed, {stream}) % 1000000) / 1000000.0"


_GENERATE_SQL = f"""
WITH base AS (
    SELECT i, CASE WHEN i > 0 AND hash(i, $seed, 0) % 1000 < 5 THEN i - 1 ELSE i END AS src
    FROM range($first, $last) r(i)
), draws AS (
    SELECT src,
        least(floor(pow({_u(1)}, 1.6) * $tenants), $tenants - 1)::INTEGER AS t,
        {_u(2)} AS u_time, {_u(3)} AS u_method, {_u(4)} AS u_path, {_u(5)} AS u_status,
        {_u(6)} AS u_size, {_u(7)} AS u_ip, {_u(8)} AS u_user, {_u(9)} AS u_format
    FROM base
), shaped AS (
    SELECT d.*, tt.slug, tt.n_users,
        CASE WHEN u_status < 0.88 THEN 200 WHEN u_status < 0.91 THEN 400 WHEN u_status < 0.92 THEN 403
             WHEN u_status < 0.94 THEN 404 WHEN u_status < 0.98 THEN 429 WHEN u_status < 0.995 THEN 500
             ELSE 504 END AS status
    FROM draws d JOIN traffic_tenants tt ON tt.t = d.t
)
SELECT
    substr(md5(src::VARCHAR || '/' || $seed::VARCHAR), 1, 8) || '-' || substr(md5(src::VARCHAR || '/' || $seed::VARCHAR), 9, 4)
        || '-4' || substr(md5(src::VARCHAR || '/' || $seed::VARCHAR), 14, 3) || '-a'
        || substr(md5(src::VARCHAR || '/' || $seed::VARCHAR), 18, 3) || '-'
        || substr(md5(src::VARCHAR || '/' || $seed::VARCHAR), 21, 12) AS request_id,
    CASE WHEN u_user < 0.002 THEN '192.0.2.' || (1 + floor(u_ip * 254))::INTEGER
         ELSE '10.' || (s.t // 256)::VARCHAR || '.' || (s.t % 256)::VARCHAR || '.' || (1 + floor(u_ip * 40))::INTEGER
    END AS ip,
    CASE WHEN u_user < 0.002 THEN 'unknown-' || substr(md5('u/' || src::VARCHAR), 1, 12)
         WHEN n_users = 0 THEN NULL
         ELSE tu.username END AS "user",
    epoch_ms($start_ms + floor(u_time * $span_ms)::BIGINT) AS request_time,
    CASE WHEN u_method < 0.85 THEN 'GET' WHEN u_method < 0.95 THEN 'POST' WHEN u_method < 0.98 THEN 'PUT'
         ELSE 'DELETE' END AS http_method,
    CASE WHEN u_path < 0.80 THEN '/random/strings' WHEN u_path < 0.90 THEN '/random/numbers'
         WHEN u_path < 0.97 THEN '/random/uuids' ELSE '/health' END AS resource_path,
    status::INTEGER AS status,
    'HTTP/1.1' AS protocol,
    (CASE WHEN status = 200 THEN 20 + floor(pow(u_size, 2) * 4000) ELSE 20 + floor(u_size * 60) END)::INTEGER
        AS response_length,
    CASE WHEN u_user < 0.002 THEN NULL WHEN u_format < 0.01 AND n_users > 0 THEN NULL ELSE slug END AS tenant_id
FROM shaped s
LEFT JOIN traffic_users tu ON tu.t = s.t AND tu.k = floor(u_user * greatest(n_users, 1))::INTEGER
"""


def generate_batches(*, tenants: Sequence[TrafficTenant], events: int, start: datetime, end: datetime, seed: int,
                     chunk_rows: int = CHUNK_ROWS, threads: int | None = None) -> Iterator[pa.Table]:
    """Arrow tables of generated records (the lake's Arrow schema), ``chunk_rows`` at a time."""
    from metering.lake.local import ARROW_SCHEMA

    if not tenants:
        raise ValueError("no tenants to generate traffic for")
    if end <= start:
        raise ValueError("--end must be after --start")
    con = duckdb.connect()
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    con.execute("CREATE TABLE traffic_tenants (t INTEGER, slug VARCHAR, n_users INTEGER)")
    con.executemany("INSERT INTO traffic_tenants VALUES (?, ?, ?)",
                    [(i, t.slug, len(t.usernames)) for i, t in enumerate(tenants)])
    con.execute("CREATE TABLE traffic_users (t INTEGER, k INTEGER, username VARCHAR)")
    rows = [(i, k, name) for i, t in enumerate(tenants) for k, name in enumerate(t.usernames)]
    if rows:
        con.executemany("INSERT INTO traffic_users VALUES (?, ?, ?)", rows)
    start_ms = int(start.astimezone(UTC).timestamp() * 1000)
    span_ms = int(end.astimezone(UTC).timestamp() * 1000) - start_ms
    try:
        for first in range(0, events, chunk_rows):
            last = min(events, first + chunk_rows)
            params = {"seed": int(seed), "first": first, "last": last, "tenants": len(tenants),
                      "start_ms": start_ms, "span_ms": span_ms}
            table = con.sql(_GENERATE_SQL, params=params).to_arrow_table()
            yield table.cast(ARROW_SCHEMA)
    finally:
        con.close()


def traffic_generate(*, tenants: int, events: int, start: datetime, end: datetime, seed: int, lake=None,
                     progress: Callable[[int], None] | None = None) -> int:
    """Generate ``events`` records for ``tenants`` tenants over [start, end) into the local lake."""
    from metering.lake import get_lake

    lake = lake or get_lake()
    if not hasattr(lake, "append_arrow"):
        raise ValueError("generate_traffic writes to the local lake (LAKE_BACKEND=local)")
    lake.ensure_table()  # a writer: it creates the lake, even when asked for no events
    specs = traffic_tenants_ensure(count=tenants, start=start)
    written = 0
    for batch in generate_batches(tenants=specs, events=events, start=start, end=end, seed=seed):
        written += lake.append_arrow(batch)
        if progress:
            progress(batch.num_rows)
    return written
