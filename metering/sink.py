"""The local buffered sink: Firehose's part in the embedded default.

Access-log lines go through the same transform as in AWS (metering.transform) and are appended to
the local Iceberg table in batches, when the buffer holds LAKE_SINK_MAX_RECORDS records or its
oldest record is LAKE_SINK_MAX_SECONDS old, whichever comes first (Firehose's buffering hints).
Lines the transform refuses are written to an error file under the warehouse (Firehose's error
output prefix), never to the table.

Accepted records are also appended to a spool file per process until they are in the table, so a
web process killed between two flushes loses nothing: the next sink to start (in any process)
appends the spool of a process that is gone. Duplicates this may cause (a kill during a flush) are
counted once, as every redelivery is.

The accepted events of ``POST /api/v1/events/`` have a spool of their own, appended outside the
requests (metering.event_spool); both sinks flush at a normal exit through ``at_exit``.
"""

from __future__ import annotations

import atexit
import concurrent.futures.thread  # noqa: F401  (registers its shutdown before at_exit's callbacks: they run first)
import json
import logging
import os
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from django.conf import settings

from metering.transform import transform_record

logger = logging.getLogger(__name__)


class BufferedSink:
    def __init__(self, *, lake=None, max_records: int, max_seconds: float, error_dir: Path | None = None,
                 spool_dir: Path | None = None, fsync: bool = False):
        self._lake = lake
        self.max_records = max(1, max_records)
        self.max_seconds = max_seconds
        self.error_dir = error_dir
        self.spool_dir = spool_dir
        self.fsync = fsync
        self._buffer: list[dict] = []
        self._oldest: float | None = None
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self.failed = 0
        self._spool = None
        if spool_dir is not None:
            spool_dir.mkdir(parents=True, exist_ok=True)
            self._spool_path = spool_dir / f"{os.getpid()}.jsonl"

    @property
    def lake(self):
        if self._lake is None:
            from metering.lake import get_lake

            self._lake = get_lake()
        return self._lake

    def put(self, raw: bytes | str) -> bool:
        """Transform one access-log line and buffer it; returns whether the transform accepted it."""
        ok, record, error = transform_record(raw)
        if not ok:
            self.failed += 1
            self._write_error(raw, error)
            return False
        self.put_records([record])
        return True

    def put_records(self, records: list[dict]) -> None:
        """Buffer records ready for the table (spooled first, so a killed process loses none)."""
        if not records:
            return
        with self._lock:
            self._spool_write(records)
            self._buffer.extend(records)
            if self._oldest is None:
                self._oldest = time.monotonic()
                self._arm_timer()
            flush_now = len(self._buffer) >= self.max_records or (
                time.monotonic() - self._oldest >= self.max_seconds)
        if flush_now:
            self.flush()

    def pending(self) -> int:
        return len(self._buffer)

    def flush(self) -> int:
        """Append the buffered records to the lake now; returns how many were written."""
        with self._lock:
            batch, self._buffer, self._oldest = self._buffer, [], None
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        if not batch:
            return 0
        try:
            written = self.lake.append(batch)
        except Exception:
            # Keep the records for the next flush rather than losing them (Firehose retries too).
            logger.exception("local sink: appending %s records failed; kept for the next flush", len(batch))
            with self._lock:
                self._buffer[:0] = batch
                self._oldest = self._oldest or time.monotonic()
            return 0
        with self._lock:
            # The spool now holds only what is still buffered (records put during the append).
            self._spool_rewrite(self._buffer)
        return written

    # --- the spool -----------------------------------------------------------------------------------

    def _spool_write(self, records: list[dict]) -> None:
        if self.spool_dir is None:
            return
        if self._spool is None:
            self._spool = self._spool_path.open("a", encoding="utf-8")
        self._spool.write("".join(json.dumps(r) + "\n" for r in records))
        self._spool.flush()
        if self.fsync:
            os.fsync(self._spool.fileno())

    def _spool_rewrite(self, records: list[dict]) -> None:
        if self.spool_dir is None:
            return
        if self._spool is not None:
            self._spool.close()
            self._spool = None
        if not records:
            self._spool_path.unlink(missing_ok=True)
            return
        tmp = self._spool_path.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
        os.replace(tmp, self._spool_path)

    def recover_spools(self) -> int:
        """Append the spools of sink processes that are gone; returns how many records."""
        if self.spool_dir is None:
            return 0
        recovered = 0
        for path in sorted(self.spool_dir.glob("*.jsonl")):
            try:
                pid = int(path.stem)
            except ValueError:
                continue
            if pid == os.getpid() or process_alive(pid):
                continue
            claimed = path.with_name(f"{path.stem}.recovering-{os.getpid()}")
            try:
                os.rename(path, claimed)  # atomic: two recovering processes cannot both take it
            except FileNotFoundError:
                continue
            records = [json.loads(line) for line in claimed.read_text(encoding="utf-8").splitlines() if line.strip()]
            if records:
                self.lake.append(records)
            claimed.unlink()
            recovered += len(records)
        return recovered

    def _arm_timer(self) -> None:
        if self.max_seconds <= 0:
            return
        self._timer = threading.Timer(self.max_seconds, self._flush_quietly)
        self._timer.daemon = True
        self._timer.start()

    def _flush_quietly(self) -> None:
        try:
            self.flush()
        except Exception:  # pragma: no cover - logged, the next put or flush retries
            logger.exception("local sink: timed flush failed")

    def _write_error(self, raw, error: str | None) -> None:
        if self.error_dir is None:
            return
        now = datetime.now(UTC)
        folder = self.error_dir / f"year={now:%Y}" / f"month={now:%m}" / f"day={now:%d}"
        folder.mkdir(parents=True, exist_ok=True)
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes | bytearray) else raw
        with (folder / f"processing-failed-{now:%H}.jsonl").open("a") as fh:
            fh.write(json.dumps({"error": error, "raw": text}) + "\n")


def at_exit(func) -> None:
    """Call ``func`` when the process exits normally, before the interpreter stops its thread pools.

    A plain ``atexit`` callback runs after concurrent.futures has refused new work ("cannot schedule new
    futures after interpreter shutdown"), and pyiceberg writes through a thread pool: a flush there fails
    and leaves the records spooled until another process recovers them. threading's own exit hook (the one
    concurrent.futures uses, called in reverse order of registration, so ours, registered later, first)
    runs while the pools still work: a gunicorn worker's exit, a command's end, an interpreter's.
    """
    def call() -> None:
        try:
            func()
        except Exception:  # an exception here would skip the other exit hooks (threading runs them unguarded)
            logger.exception("flush at exit failed; the spool keeps the records for the next process")

    register = getattr(threading, "_register_atexit", None)
    if register is not None:
        try:
            register(call)
            return
        except RuntimeError:  # already shutting down
            pass
    atexit.register(call)


def process_alive(pid: int) -> bool:
    """Whether a process with this id runs (one of another user counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_sink: BufferedSink | None = None
_sink_lock = threading.Lock()


def get_sink() -> BufferedSink:
    """The process's sink (one buffer per web process, as each API Gateway stage has one stream)."""
    global _sink
    with _sink_lock:
        if _sink is None:
            _sink = BufferedSink(
                max_records=settings.LAKE_SINK_MAX_RECORDS,
                max_seconds=settings.LAKE_SINK_MAX_SECONDS,
                error_dir=Path(settings.LAKE_WAREHOUSE_DIR) / "errors",
                spool_dir=Path(settings.LAKE_WAREHOUSE_DIR) / "spool",
            )
            at_exit(_sink.flush)
            try:
                _sink.recover_spools()
            except Exception:  # the spools stay for the next start; the API keeps answering
                logger.exception("local sink: recovering spooled records failed")
        return _sink


def reset_sink() -> None:
    """Flush and forget the process's sink (tests, or after the lake settings changed)."""
    global _sink
    with _sink_lock:
        sink, _sink = _sink, None
    if sink is not None:
        sink.flush()


def recover_orphaned_spools(lake=None) -> int:
    """Append the spooled records of dead web processes (the usage sync calls this before reading)."""
    spool = Path(settings.LAKE_WAREHOUSE_DIR) / "spool"
    if not spool.is_dir():
        return 0
    sink = BufferedSink(lake=lake, max_records=1, max_seconds=0, spool_dir=spool)
    return sink.recover_spools()
