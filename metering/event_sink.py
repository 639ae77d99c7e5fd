"""Where accepted events go: the local events table (through a spool appended in the background) or Firehose.

``EVENTS_BACKEND`` chooses: ``local`` (default) or ``firehose`` (the Direct PUT stream named by
EVENTS_FIREHOSE_STREAM, a deployed pipeline's setting, into the Iceberg ``events`` table the CDK app creates).

Why a receipt never claims an event that never reaches the lake: ``events_ingest`` hands the newly
accepted events to the sink INSIDE the transaction that inserts their receipts, as its last step,
and commits only when the sink has taken them. Locally "taken" means written and fsynced to this
process's segment of the spool, and nothing more: the request never touches the Iceberg table. Appenders
outside the requests (a thread in each process, the usage sync, the next process to start) move the
segments into the table, one commit for many requests, within EVENTS_APPEND_SECONDS plus one append while
the process runs, at its normal exit, or when the next appender finds the segment of a dead process
(metering.event_spool has the details). On AWS "taken" means Firehose answered every record of
PutRecordBatch without error (failed records are retried with backoff, then the request fails
with 503 and the receipts roll back, so the client's retry is accepted, not a duplicate).
The other way round, a crash after the sink took the events but before the commit leaves rows in
the lake without receipts: the client got no 202 and retries with the same transaction ids, which are
then accepted again; the lake holds such an event twice, and readers count (tenant_id, transaction_id)
once, as Firehose's own at-least-once redelivery requires anyway.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import NamedTuple

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from metering.event_spool import EventSpool
from metering.lake.events import event_line
from metering.sink import at_exit
from portal.kernel import ApplicationError, pipeline_setting

logger = logging.getLogger(__name__)

FIREHOSE_MAX_RECORDS = 500  # PutRecordBatch's limits
FIREHOSE_MAX_BYTES = 4 * 1024 * 1024
FIREHOSE_ATTEMPTS = 4
FIREHOSE_BACKOFF_SECONDS = 0.1


class EventDeliveryError(ApplicationError):
    """The events could not be handed to the lake; nothing was accepted (the client should retry)."""

    status_code = 503


class EventRow(NamedTuple):
    """An accepted event as the sinks take it from ``events_ingest``: its values formatted for the lake
    (timestamp by ``iso_utc``, properties by ``properties_json``); ``received_at`` is given per batch."""

    transaction_id: str
    tenant_slug: str
    code: str
    timestamp: str
    properties: str

    def record(self, received_at: str) -> dict:
        """The row as ``metering.lake.events.event_record`` makes it (what ``put_records`` takes)."""
        return {"transaction_id": self.transaction_id, "tenant_id": self.tenant_slug, "code": self.code,
                "timestamp": self.timestamp, "properties": self.properties, "received_at": received_at}


class LocalEventSink:
    """Events into the local events table: fsynced into the spool by the request, appended by others."""

    def __init__(self, *, table=None, spool_dir: Path, every: float, background: bool = True):
        from metering.lake.events import LocalEventsTable

        self.spool = EventSpool(spool_dir=spool_dir, table=table or LocalEventsTable.from_settings(), every=every,
                                background=background)

    def put_records(self, records: list[dict]) -> None:
        try:
            self.spool.write(records)
        except OSError as exc:
            raise EventDeliveryError(f"The events could not be spooled ({exc.strerror or exc}); retry later.") from exc

    def put_events(self, rows: list[EventRow], *, received_at: str) -> None:
        """``put_records`` for ``events_ingest``: the spool's lines made as text, without a dict per event."""
        try:
            self.spool.write_lines([event_line(transaction_id=r.transaction_id, tenant_slug=r.tenant_slug, code=r.code,
                                               timestamp=r.timestamp, properties=r.properties, received_at=received_at)
                                    for r in rows])
        except OSError as exc:
            raise EventDeliveryError(f"The events could not be spooled ({exc.strerror or exc}); retry later.") from exc

    def flush(self) -> int:
        """Append this process's spooled events (and any other appendable segment) now; returns how many."""
        return self.spool.flush()

    def close(self) -> int:
        return self.spool.close()

    def recover_spools(self) -> int:
        return self.spool.append_ready()


class FirehoseEventSink:
    """Events into a Firehose Direct PUT stream: PutRecordBatch of at most 500 records and 4 MiB, the
    failed records (FailedPutCount, a per-record ErrorCode) retried with backoff, then EventDeliveryError."""

    def __init__(self, *, stream: str, client=None, attempts: int = FIREHOSE_ATTEMPTS,
                 backoff: float = FIREHOSE_BACKOFF_SECONDS):
        if not stream:
            raise ImproperlyConfigured("EVENTS_BACKEND=firehose needs EVENTS_FIREHOSE_STREAM (a deploy writes it)")
        self.stream = stream
        self._client = client
        self.attempts = attempts
        self.backoff = backoff

    @property
    def client(self):
        if self._client is None:
            import boto3

            self._client = boto3.client("firehose", region_name=settings.AWS_REGION)
        return self._client

    def put_events(self, rows: list[EventRow], *, received_at: str) -> None:
        self.put_records([row.record(received_at) for row in rows])

    def put_records(self, records: list[dict]) -> None:
        for batch in firehose_batches([(json.dumps(r, separators=(",", ":")) + "\n").encode() for r in records]):
            self._put_batch(batch)

    def flush(self) -> int:
        return 0  # nothing is buffered: every put is sent before it returns

    def close(self) -> int:
        return 0

    def _put_batch(self, batch: list[bytes]) -> None:
        pending = batch
        error = None
        for attempt in range(self.attempts):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                answer = self.client.put_record_batch(DeliveryStreamName=self.stream,
                                                      Records=[{"Data": data} for data in pending])
            except Exception as exc:  # the whole call failed (throttled, network): retry it all
                error = f"{type(exc).__name__}: {exc}"
                continue
            if not answer.get("FailedPutCount"):
                return
            failed = [(data, result) for data, result in zip(pending, answer["RequestResponses"], strict=True)
                      if result.get("ErrorCode")]
            pending = [data for data, _ in failed]
            error = f"{failed[0][1].get('ErrorCode')}: {failed[0][1].get('ErrorMessage', '')}".strip()
            logger.warning("firehose: %s of %s records failed (%s); retrying", len(pending), len(batch), error)
        raise EventDeliveryError(
            f"Firehose stream {self.stream} refused {len(pending)} of {len(batch)} events after {self.attempts} "
            f"attempts ({error}); nothing was accepted, retry later.")


def firehose_batches(items: list[bytes]) -> list[list[bytes]]:
    """``items`` cut into PutRecordBatch calls of at most 500 records and 4 MiB each."""
    batches, current, size = [], [], 0
    for data in items:
        if current and (len(current) == FIREHOSE_MAX_RECORDS or size + len(data) > FIREHOSE_MAX_BYTES):
            batches.append(current)
            current, size = [], 0
        current.append(data)
        size += len(data)
    if current:
        batches.append(current)
    return batches


def preload_appender() -> None:
    """Import what the local sink's appender needs (pyarrow's compute and JSON reader, pyiceberg's writer)
    now: a web process calls this as it starts, so that its first append does not spend half a second of
    CPU, holding the GIL its requests need, importing them in the middle of serving."""
    if settings.EVENTS_BACKEND != "local":
        return
    import pyarrow.compute  # noqa: F401
    import pyarrow.json  # noqa: F401
    import pyarrow.parquet  # noqa: F401
    import pyiceberg.catalog.sql  # noqa: F401
    import pyiceberg.io.pyarrow  # noqa: F401


def events_spool_dir() -> Path:
    return Path(settings.LAKE_WAREHOUSE_DIR) / "events-spool"


_sink = None
_sink_lock = threading.Lock()


def get_event_sink():
    """The process's event sink for EVENTS_BACKEND (the local one appends what dead processes left first)."""
    global _sink
    with _sink_lock:
        if _sink is None:
            backend = settings.EVENTS_BACKEND
            if backend == "local":
                if settings.EVENTS_APPEND_SECONDS <= 0:
                    raise ImproperlyConfigured("EVENTS_APPEND_SECONDS must be more than 0 (seconds between appends)")
                sink = LocalEventSink(spool_dir=events_spool_dir(), every=settings.EVENTS_APPEND_SECONDS)
                try:
                    sink.recover_spools()
                except Exception:  # the spools stay for the next appender; the API keeps answering
                    logger.exception("event sink: recovering spooled events failed")
            elif backend == "firehose":
                sink = FirehoseEventSink(stream=pipeline_setting("EVENTS_FIREHOSE_STREAM"))
            else:
                raise ImproperlyConfigured(f"EVENTS_BACKEND must be 'local' or 'firehose', not {backend!r}")
            _sink = sink
        return _sink


def reset_event_sink() -> None:
    """Flush and forget the process's event sink (tests, the send_events command, changed settings)."""
    global _sink
    with _sink_lock:
        sink, _sink = _sink, None
    if sink is not None:
        sink.close()


def _forget_in_child() -> None:
    """A forked child starts without a sink: its parent's segment, lock and thread are the parent's."""
    global _sink, _sink_lock
    _sink, _sink_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_in_child)
at_exit(reset_event_sink)  # a normal exit appends the process's segment (before the thread pools stop)


def recover_event_spools(table=None) -> int:
    """Append every spooled event that may be appended now: this process's own (when it ingests), the closed
    segments of every process, and those dead processes left (the usage sync calls this before reading)."""
    if settings.EVENTS_BACKEND != "local" and table is None:
        return 0
    own = _sink
    if isinstance(own, LocalEventSink) and table is None:
        return own.flush()
    if not events_spool_dir().is_dir():
        return 0
    return LocalEventSink(table=table, spool_dir=events_spool_dir(), every=0, background=False).recover_spools()


recover_orphaned_event_spools = recover_event_spools  # the name the bench and older callers use
