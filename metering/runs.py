"""Heartbeats of long runs (billing runs, usage syncs, pipeline deployments), and failing the runs whose worker died.

A run records ``heartbeat_at`` while it works: ``with heartbeat(run):`` around the work, and
``beat()`` at its progress points (between billing batches, at each phase of a sync and while it
waits for Athena, while a deployment streams its log). A worker killed with SIGKILL, or a machine
that vanished, cannot record the end of its run; its heartbeat then ages, and the next run of the
same kind, or the periodic check (``portal.tasks.fail_stale_runs``, over every registered kind), marks it failed once the
heartbeat is older than RUN_STALE_AFTER_SECONDS. A run marked so that was only slow still records
its real outcome when it ends.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.apps import apps
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import Q
from django.utils import timezone

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunKind:
    """How a kind of run records its state: a model with ``started_at``, ``finished_at`` and
    ``heartbeat_at``, a state field with a running and a failed value, and an error field."""

    label: str
    model: str
    state_field: str
    error_field: str
    running: str = "running"
    failed: str = "failed"


BILLING_RUNS = RunKind("billing run", "metering.BillingRun", state_field="status", error_field="errors")
USAGE_SYNCS = RunKind("usage sync", "metering.SyncRun", state_field="outcome", error_field="error")
# The kinds the periodic check looks at: metering's own, and those a layer above adds when it starts
# (the deployments app registers its Deployment runs).
RUN_KINDS: list[RunKind] = [BILLING_RUNS, USAGE_SYNCS]


def register_run_kind(kind: RunKind) -> None:
    if kind not in RUN_KINDS:
        RUN_KINDS.append(kind)


def beat_interval() -> float:
    """Seconds between two heartbeat writes of a run: often enough to never look stale."""
    return min(60.0, settings.RUN_STALE_AFTER_SECONDS / 5)


def stale_cutoff(now: datetime | None = None) -> datetime:
    return (now or timezone.now()) - timedelta(seconds=settings.RUN_STALE_AFTER_SECONDS)


# --- beating -----------------------------------------------------------------------------------------


class _Beat:
    """One run beating in this context: its row, and when it was last written."""

    def __init__(self, model, pk: int):
        self.model = model
        self.pk = pk
        self.last = time.monotonic()
        self._side = None

    def write(self) -> bool:
        stamp = timezone.now()
        connection = connections[DEFAULT_DB_ALIAS]
        if not _in_transaction(connection):
            self.model.objects.filter(pk=self.pk).update(heartbeat_at=stamp)
        elif connection.vendor == "postgresql":
            # Inside a transaction (a billing batch) the update would show only at its commit, too late
            # for whoever checks: it goes through a connection of its own, in autocommit.
            if self._side is None:
                self._side = connections.create_connection(DEFAULT_DB_ALIAS)
            qn = self._side.ops.quote_name
            meta = self.model._meta
            with self._side.cursor() as cursor:
                cursor.execute(f"UPDATE {qn(meta.db_table)} SET {qn('heartbeat_at')} = %s "
                               f"WHERE {qn(meta.pk.column)} = %s", [stamp, self.pk])
        else:
            return False  # SQLite has one writer at a time, which is this transaction: beat after it
        self.last = time.monotonic()
        return True

    def close(self) -> None:
        if self._side is not None:
            self._side.close()
            self._side = None


def _in_transaction(connection) -> bool:
    """Inside a transaction of the code (a test case's own wrapping transaction does not count)."""
    return any(not getattr(block, "_from_testcase", False) for block in connection.atomic_blocks)


_beating: ContextVar[tuple[_Beat, ...]] = ContextVar("run_heartbeats", default=())


@contextmanager
def heartbeat(run) -> Iterator[None]:
    """While the block runs, ``beat()`` keeps ``run.heartbeat_at`` fresh (runs nest: a billing run's
    final sync beats for both)."""
    entry = _Beat(type(run), run.pk)
    token = _beating.set((*_beating.get(), entry))
    try:
        yield
    finally:
        _beating.reset(token)
        entry.close()


def beat(*, force: bool = False) -> None:
    """A sign of life of the runs of this context (at most one write per beat_interval, unless forced);
    nothing outside a run."""
    now = time.monotonic()
    for entry in _beating.get():
        if force or now - entry.last >= beat_interval():
            try:
                entry.write()
            except Exception:  # a missed beat must not fail the work it reports on
                logger.warning("could not record the heartbeat of %s %s", entry.model.__name__, entry.pk,
                               exc_info=True)


# --- failing dead runs -------------------------------------------------------------------------------


def runs_fail_stale(*, kind: RunKind, by: str, now: datetime | None = None) -> list[int]:
    """Mark failed the runs of ``kind`` still recorded as running whose heartbeat (or, without one, start)
    is older than RUN_STALE_AFTER_SECONDS; returns their ids.

    Each is updated only if it is still stale at that instant, so a run that beat meanwhile is left
    alone, and two checkers cannot both claim the same run."""
    model = apps.get_model(kind.model)
    now = now or timezone.now()
    cutoff = stale_cutoff(now)
    stale = model.objects.filter(**{kind.state_field: kind.running}).filter(
        Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, started_at__lt=cutoff))
    failed = []
    for pk, last, started in stale.order_by("pk").values_list("pk", "heartbeat_at", "started_at"):
        seen = (last or started).astimezone(UTC)
        message = (f"The worker stopped responding: no heartbeat since {seen:%Y-%m-%d %H:%M:%S} UTC (more than "
                   f"{settings.RUN_STALE_AFTER_SECONDS} s); marked failed by {by}.")
        if stale.filter(pk=pk).update(**{kind.state_field: kind.failed, kind.error_field: message,
                                         "finished_at": now}):
            logger.warning("%s %s: %s", kind.label, pk, message)
            failed.append(pk)
    return failed


def stale_runs_fail_all(*, by: str) -> dict[str, list[int]]:
    """runs_fail_stale for every kind of run: {kind's label: ids marked failed}."""
    return {kind.label: runs_fail_stale(kind=kind, by=by) for kind in RUN_KINDS}


def liveness(run, *, running: bool, now: datetime | None = None) -> str:
    """What the admin shows of a run's heartbeat: how long ago it beat, and whether that is too long."""
    if not running:
        return ""
    last = run.heartbeat_at or run.started_at
    if last is None:
        return "not started"
    age = ((now or timezone.now()) - last).total_seconds()
    ago = f"{age:.0f} s" if age < 120 else f"{age / 60:.0f} min"
    if age > settings.RUN_STALE_AFTER_SECONDS:
        return f"no heartbeat for {ago}: worker lost? (marked failed by the next check)"
    return f"alive (heartbeat {ago} ago)"
