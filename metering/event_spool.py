"""The local event sink's spool: requests write (and fsync) segment files; appenders outside the requests
move them into the Iceberg events table, many requests per commit.

Files in the spool folder (LAKE_WAREHOUSE_DIR/events-spool, one folder per machine: the locks below are
flock(2) locks, which hold between processes of one machine):

- ``<pid>.<n>.jsonl``: the segment process <pid> writes now, one JSON line per accepted event, fsynced
  before the request's receipts commit. The process holds an exclusive flock on it while it lives; the
  kernel drops that lock however the process ends (exit, SIGKILL, OOM), so a segment whose lock can be
  taken belongs to a dead process, whatever its pid says (pids are reused, by a container's restart too).
  A segment is made as ``<pid>.<n>.new``, locked, then renamed: an unlocked ``.jsonl`` is never a new one.
- ``<pid>.<n>.ready``: a segment its process closed; any appender takes it.
- ``append.lock``: an appender holds it while it appends, so that on one machine one commit at a time
  takes every ready segment: no commit conflicts between processes, and one commit for many requests.
- ``<pid>.jsonl`` and ``<name>.recovering-<pid>``: what the spool of the buffered sink (before segments)
  left; taken once that pid is gone.

Each process that ingests runs an appender thread (a daemon): on every wall-clock multiple of
EVENTS_APPEND_SECONDS, the same instants in every process, it closes its segment (when it holds events);
half a second later it takes ``append.lock``, appends every ready segment and every segment no live process
holds in one Iceberg commit, and deletes them. So an event accepted by a running process is in the table
within EVENTS_APPEND_SECONDS plus the time one append takes (a fraction of a second to a few seconds); a
failed append leaves the segments for the next tick. A process that exits normally appends its own
segment before its interpreter shuts down (``metering.sink.at_exit``); one that dies leaves it to the next
appender of any process (the next tick of a live process, the next process to start, or the usage sync,
which calls ``recover_event_spools`` before it reads).

Appending can repeat (a process killed between the commit and the deletion of its segments): the table then
holds an event twice, and readers count (tenant_id, transaction_id) once, as they must for Firehose too.
"""

from __future__ import annotations

import fcntl
import io
import json
import logging
import math
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.json as pa_json

from metering.sink import process_alive

logger = logging.getLogger(__name__)

LOCK_FILE = "append.lock"
APPEND_MAX_BYTES = 128 * 1024 * 1024  # one commit takes at most about this much spool (a backlog is cut)
APPEND_DELAY = 0.5  # seconds from the tick (every process closes its segment) to the append
KEEP_SNAPSHOTS = 100  # the events table's snapshots kept (metering.lake.events.LocalEventsTable.expire_snapshots)
_LINE_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)  # made once: json.dumps makes one a call


class EventSpool:
    """One process's segment of the spool, its appender thread, and the appending of anyone's segments."""

    def __init__(self, *, spool_dir: Path, table, every: float, background: bool = True):
        self.spool_dir = Path(spool_dir)
        self.table = table  # a LocalEventsTable (to_arrow, append_arrow, arrow_schema)
        self.every = every
        self.background = background and every > 0
        self.pid = os.getpid()
        self._lock = threading.Lock()  # the segment: requests' writes against rotation
        self._append_lock = threading.Lock()  # this process's appends (append.lock is per open file, not thread)
        self._fd: int | None = None
        self._path: Path | None = None
        self._size = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.spool_dir.mkdir(parents=True, exist_ok=True)

    # --- the request's part: write and fsync ---------------------------------------------------------

    def write(self, records: Sequence[dict]) -> None:
        """Append ``records`` to this process's segment and fsync it; OSError when they are not durable (then
        none of them stays in the segment, as far as the disk lets us truncate it back)."""
        encode = _LINE_JSON.encode
        self.write_lines([encode(r) for r in records])

    def write_lines(self, lines: Sequence[str]) -> None:
        """``write`` for records already encoded, one compact JSON object (without its newline) each."""
        if not lines:
            return
        data = ("\n".join(lines) + "\n").encode()
        with self._lock:
            if self._fd is None:
                self._open_segment()
            start = self._size
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(self._fd, view):]
                _sync(self._fd)
            except OSError:
                # The request fails (no receipt): take its lines back, or at least never write after a torn one.
                try:
                    os.ftruncate(self._fd, start)
                    _sync(self._fd)
                except OSError:
                    self._close_segment()
                raise
            self._size = start + len(data)
        if self.background and self._thread is None:
            self._start_thread()

    def _open_segment(self) -> None:
        name = f"{self.pid}.{time.time_ns()}"
        self.spool_dir.mkdir(parents=True, exist_ok=True)  # again: a folder removed under a running process
        new = self.spool_dir / f"{name}.new"
        fd = os.open(new, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            path = self.spool_dir / f"{name}.jsonl"
            os.rename(new, path)
            # The name must outlive a power cut as the data will (an orphaned .new is taken for never written).
            _sync_dir(self.spool_dir)
        except OSError:
            os.close(fd)
            new.unlink(missing_ok=True)
            raise
        self._fd, self._path, self._size = fd, path, 0

    def _close_segment(self) -> None:
        """Hand the segment to the appenders (renamed to .ready, then unlocked); the next write opens another."""
        if self._fd is None:
            return
        fd, path, size = self._fd, self._path, self._size
        self._fd, self._path, self._size = None, None, 0
        try:
            if size:
                os.rename(path, path.with_suffix(".ready"))
            else:
                path.unlink(missing_ok=True)
        finally:
            os.close(fd)  # drops the flock: a segment not renamed is then an orphan, taken all the same

    def rotate(self) -> None:
        with self._lock:
            self._close_segment()

    # --- appending (any process, one at a time per machine) -------------------------------------------

    def append_ready(self) -> int:
        """Append every ready segment and every orphan to the table, one commit per APPEND_MAX_BYTES; returns
        how many events. Raises what the table raises (the segments then stay for the next try)."""
        if not self._candidates():
            return 0  # nothing to do: no lock taken
        appended = 0
        with self._append_lock:
            lock_fd = os.open(self.spool_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(lock_fd, fcntl.LOCK_EX)
                while True:
                    batch = self._take(APPEND_MAX_BYTES)
                    if not batch:
                        break
                    began = time.monotonic()
                    tables = [t for t in (self._read(path) for path in batch) if t is not None and t.num_rows]
                    if tables:
                        data = pa.concat_tables(tables)
                        self.table.append_arrow(data)
                        appended += data.num_rows
                        logger.info("event spool: %s events from %s segments appended in %.2f s", data.num_rows,
                                    len(batch), time.monotonic() - began)
                    for path in batch:
                        path.unlink(missing_ok=True)
                if appended:
                    self._expire_snapshots()
            finally:
                os.close(lock_fd)
        return appended

    def _expire_snapshots(self) -> None:
        """Keep the table's metadata (and so every append's cost) from growing with each commit."""
        expire = getattr(self.table, "expire_snapshots", None)
        if expire is None:
            return
        try:
            forgotten = expire(keep=KEEP_SNAPSHOTS)
        except Exception:  # the events are in; the next append tries again
            logger.exception("event spool: expiring the events table's old snapshots failed")
            return
        if forgotten:
            logger.info("event spool: %s old snapshots of the events table expired", forgotten)

    def flush(self) -> int:
        """Close this process's segment and append everything appendable now (tests, commands, exit)."""
        self.rotate()
        return self.append_ready()

    def close(self) -> int:
        """Stop the appender thread and flush (the process is about to exit, or the sink is replaced)."""
        if self._closed:
            return 0
        self._closed = True
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=60)
        return self.flush()

    def _candidates(self) -> list[Path]:
        try:
            names = os.listdir(self.spool_dir)
        except FileNotFoundError:
            return []
        own = self._path.name if self._path is not None else None
        return [self.spool_dir / name for name in names
                if name != own and (name.endswith((".ready", ".jsonl", ".new")) or ".recovering-" in name)]

    def _take(self, max_bytes: int) -> list[Path]:
        """The segments to append now (holding append.lock): ready ones, orphans, oldest first."""
        taken, size = [], 0
        for path in sorted(self._candidates(), key=_age_key):
            name = path.name
            if name.endswith(".ready"):
                pass
            elif name.endswith((".jsonl", ".new")) and name.count(".") == 2:
                if not _orphaned(path):
                    continue
                if name.endswith(".new"):  # its process died making it (before any write), or is making it now
                    pid = name.split(".", 1)[0]
                    if pid.isdigit() and int(pid) != os.getpid() and not process_alive(int(pid)):
                        path.unlink(missing_ok=True)
                    continue
            elif name.endswith(".jsonl") or ".recovering-" in name:  # the single-file spool of earlier versions
                pid = name.split(".", 1)[0] if name.endswith(".jsonl") else name.rsplit("-", 1)[-1]
                if not pid.isdigit() or int(pid) == os.getpid() or process_alive(int(pid)):
                    continue
            else:
                continue
            try:
                length = path.stat().st_size
            except FileNotFoundError:
                continue
            if taken and size + length > max_bytes:
                break
            taken.append(path)
            size += length
        return taken

    def _read(self, path: Path) -> pa.Table | None:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        if not data:
            return None
        schema = self.table.arrow_schema
        try:
            return pa_json.read_json(io.BytesIO(data), parse_options=pa_json.ParseOptions(
                explicit_schema=schema, unexpected_field_behavior="ignore"))
        except pa.ArrowInvalid:
            pass
        # A torn line (a write that failed half way: its request was refused) spoils the fast reader only.
        records = []
        for number, line in enumerate(data.decode("utf-8", "replace").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except ValueError:
                logger.warning("event spool: %s line %s is not a whole event (a failed write); skipped", path.name,
                               number)
        return self.table.to_arrow(records) if records else None

    # --- the appender thread --------------------------------------------------------------------------

    def _start_thread(self) -> None:
        with self._lock:
            if self._thread is not None or self._closed:
                return
            self._thread = threading.Thread(target=self._run, name="event-spool-appender", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            now = time.time()
            tick = (math.floor(now / self.every) + 1) * self.every
            if self._stop.wait(tick - now):
                return
            try:
                self.rotate()
                if self._stop.wait(min(APPEND_DELAY, self.every / 4)):
                    return
                self.append_ready()
            except Exception:  # the segments stay; the next tick tries again
                logger.exception("event spool: appending to the events table failed; retried at the next tick")


def _sync(fd: int) -> None:
    """fdatasync where there is one: the data and the file's new size reach the disk, not its times."""
    (getattr(os, "fdatasync", None) or os.fsync)(fd)


def _sync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _age_key(path: Path) -> tuple[int, str]:
    parts = path.name.split(".")
    return (int(parts[1]) if len(parts) > 2 and parts[1].isdigit() else 0, path.name)


def _orphaned(path: Path) -> bool:
    """Whether no live process holds ``path``'s lock (its writer is gone)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True

