"""Where accepted events go: the local events table (through a buffered, spooled sink) or Firehose.

``EVENTS_BACKEND`` chooses: ``local`` (default) or ``firehose`` (the Direct PUT stream named by
EVENTS_FIREHOSE_STREAM, a deployed pipeline's setting, into the Iceberg ``events`` table the CDK app creates).

Why a receipt never claims an event that never reaches the lake: ``events_ingest`` hands the newly
accepted events to the sink INSIDE the transaction that inserts their receipts, as its last step,
and commits only when the sink has taken them. Locally "taken" means written and fsynced to this
process's spool file (the sink appends the spool to the table when its buffer is full or old, and any
process appends the spool of a process that died); on AWS it means Firehose answered every record
of PutRecordBatch without error (failed records are retried with backoff, then the request fails
with 503 and the receipts roll back, so the client's retry is accepted, not a duplicate).
The other way round, a crash after the sink took the events but before the commit leaves rows in
the lake without receipts: the client got no 202 and retries with the same transaction ids, which are
then accepted again; the lake holds such an event twice, and readers count (tenant_id, transaction_id)
once, as Firehose's own at-least-once redelivery requires anyway.
"""

from __future__ import annotations

import atexit
import json
import logging
import threading
import time
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from metering.sink import BufferedSink
from portal.kernel import ApplicationError, pipeline_setting

logger = logging.getLogger(__name__)

FIREHOSE_MAX_RECORDS = 500  # PutRecordBatch's limits
FIREHOSE_MAX_BYTES = 4 * 1024 * 1024
FIREHOSE_ATTEMPTS = 4
FIREHOSE_BACKOFF_SECONDS = 0.1


class EventDeliveryError(ApplicationError):
    """The events could not be handed to the lake; nothing was accepted (the client should retry)."""

    status_code = 503


class LocalEventSink:
    """Events into the local events table: spooled (fsynced) at once, appended in batches."""

    def __init__(self, *, table=None, max_records: int, max_seconds: float, spool_dir: Path):
        from metering.lake.events import LocalEventsTable

        self.buffer = BufferedSink(lake=table or LocalEventsTable.from_settings(), max_records=max_records,
                                   max_seconds=max_seconds, spool_dir=spool_dir, fsync=True)

    def put_records(self, records: list[dict]) -> None:
        try:
            self.buffer.put_records(records)
        except OSError as exc:
            raise EventDeliveryError(f"The events could not be spooled ({exc.strerror or exc}); retry later.") from exc

    def flush(self) -> int:
        return self.buffer.flush()

    def recover_spools(self) -> int:
        return self.buffer.recover_spools()


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

    def put_records(self, records: list[dict]) -> None:
        for batch in firehose_batches([(json.dumps(r, separators=(",", ":")) + "\n").encode() for r in records]):
            self._put_batch(batch)

    def flush(self) -> int:
        return 0  # nothing is buffered: every put is sent before it returns

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


def events_spool_dir() -> Path:
    return Path(settings.LAKE_WAREHOUSE_DIR) / "events-spool"


_sink = None
_sink_lock = threading.Lock()


def get_event_sink():
    """The process's event sink for EVENTS_BACKEND (the local one recovers dead processes' spools first)."""
    global _sink
    with _sink_lock:
        if _sink is None:
            backend = settings.EVENTS_BACKEND
            if backend == "local":
                sink = LocalEventSink(max_records=settings.LAKE_SINK_MAX_RECORDS,
                                      max_seconds=settings.LAKE_SINK_MAX_SECONDS, spool_dir=events_spool_dir())
                atexit.register(sink.flush)
                try:
                    sink.recover_spools()
                except Exception:  # the spools stay for the next start; the API keeps answering
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
        sink.flush()


def recover_orphaned_event_spools(table=None) -> int:
    """Append the spooled events of dead processes to the local events table (for the sync over events)."""
    if not events_spool_dir().is_dir():
        return 0
    return LocalEventSink(table=table, max_records=1, max_seconds=0, spool_dir=events_spool_dir()).recover_spools()
