"""The lake's ``events`` table: the events accepted by ``POST /api/v1/events/`` (issue 15).

Same Iceberg database as the access-log table (LAKE_DATABASE), named by LAKE_EVENTS_TABLE, partitioned
by day(timestamp); on AWS the CDK app creates it and Firehose writes it, locally the portal's event sink
writes it through ``LocalEventsTable`` (created by that writer only; readers never create it).

Columns: transaction_id, tenant_id (the tenant's slug), code, timestamp (UTC, microseconds),
properties (the properties object as compact JSON, keys sorted), received_at. Rows arrive at least
once (a sink retried after a crash may append a row twice): readers count (tenant_id, transaction_id)
once, as the access-log queries count request_id once.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from json.encoder import c_make_encoder, encode_basestring, encode_basestring_ascii

import pyarrow as pa
from django.conf import settings
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.transforms import DayTransform
from pyiceberg.types import NestedField, StringType, TimestampType

from metering.lake.local import LocalIcebergTable, _lock, _naive_utc

EXPIRE_AT_MOST = 500  # snapshots forgotten per call: RemoveSnapshots checks each against all (quadratic)

EVENTS_ICEBERG_SCHEMA = Schema(
    NestedField(1, "transaction_id", StringType(), required=False),
    NestedField(2, "tenant_id", StringType(), required=False),
    NestedField(3, "code", StringType(), required=False),
    NestedField(4, "timestamp", TimestampType(), required=False),
    NestedField(5, "properties", StringType(), required=False),
    NestedField(6, "received_at", TimestampType(), required=False),
)
EVENTS_PARTITION_SPEC = PartitionSpec(PartitionField(source_id=4, field_id=1000, transform=DayTransform(),
                                                     name="timestamp_day"))
EVENTS_ARROW_SCHEMA = pa.schema([
    ("transaction_id", pa.string()), ("tenant_id", pa.string()), ("code", pa.string()),
    ("timestamp", pa.timestamp("us")), ("properties", pa.string()), ("received_at", pa.timestamp("us")),
])


def compact_json(*, sort_keys: bool = False, ensure_ascii: bool = True):
    """A function that encodes a JSON-ready value as ``json.dumps(value, separators=(",", ":"), sort_keys=...,
    ensure_ascii=...)`` does (the same text), for hot paths: the C encoder is made once here, where
    JSONEncoder.encode makes one a call. It does not look for circular references: give it none."""
    fallback = json.JSONEncoder(separators=(",", ":"), sort_keys=sort_keys, ensure_ascii=ensure_ascii).encode
    if c_make_encoder is None:
        return fallback
    encoder = c_make_encoder(None, fallback.__self__.default, encode_basestring_ascii if ensure_ascii else encode_basestring,
                             None, ":", ",", sort_keys, False, True)

    def encode(value) -> str:
        if type(value) is str:  # what JSONEncoder.encode does for a bare string
            return fallback(value)
        return "".join(encoder(value, 0))

    return encode


_PROPERTIES_JSON = compact_json(sort_keys=True)


def event_record(*, tenant_slug: str, transaction_id: str, code: str, timestamp: datetime, properties: dict,
                 received_at: datetime | str) -> dict:
    """One row of the events table as JSON-ready values (what the spool and Firehose carry): timestamps
    as ISO 8601 UTC with microseconds and a Z, properties as compact JSON with sorted keys. ``received_at``
    may come formatted already (``iso_utc``: a batch shares it)."""
    return {
        "transaction_id": transaction_id,
        "tenant_id": tenant_slug,
        "code": code,
        "timestamp": iso_utc(timestamp),
        "properties": _PROPERTIES_JSON(properties),
        "received_at": received_at if isinstance(received_at, str) else iso_utc(received_at),
    }


def properties_json(properties: dict) -> str:
    """The ``properties`` column: the object as compact JSON with sorted keys (what ``event_record`` stores)."""
    return _PROPERTIES_JSON(properties)


def event_line(*, transaction_id: str, tenant_slug: str, code: str, timestamp: str, properties: str,
               received_at: str) -> str:
    """``event_record``'s row as one compact JSON object (no newline), from values already formatted
    (``iso_utc`` timestamps, ``properties_json``): the same text as ``json.dumps(event_record(...),
    separators=(",", ":"), ensure_ascii=False)`` (the spool's lines), without making the dict. Strings
    are escaped by the function that encoder uses; the timestamps, digits and ``-:.TZ``, need none."""
    return (f'{{"transaction_id":{encode_basestring(transaction_id)},"tenant_id":{encode_basestring(tenant_slug)},'
            f'"code":{encode_basestring(code)},"timestamp":"{timestamp}","properties":{encode_basestring(properties)},'
            f'"received_at":"{received_at}"}}')


def iso_utc(value: datetime) -> str:
    """``2026-09-03T10:00:00.000000Z``: the events table's timestamps as JSON carries them."""
    if value.tzinfo is not UTC:  # UTC is what fromisoformat gives for Z and +00:00: nothing to convert
        value = _naive_utc(value)
    return "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ" % (  # noqa: UP031 (twice as fast as isoformat or an f-string)
        value.year, value.month, value.day, value.hour, value.minute, value.second, value.microsecond)


class LocalEventsTable(LocalIcebergTable):
    """The local warehouse's events table (written by the event sink, read by the tests and, next, the sync)."""

    iceberg_schema = EVENTS_ICEBERG_SCHEMA
    partition_spec = EVENTS_PARTITION_SPEC
    arrow_schema = EVENTS_ARROW_SCHEMA
    table_setting = "LAKE_EVENTS_TABLE"
    time_column = "timestamp"

    @classmethod
    def from_settings(cls) -> LocalEventsTable:
        return cls(warehouse=settings.LAKE_WAREHOUSE_DIR, database=settings.LAKE_DATABASE,
                   table=settings.LAKE_EVENTS_TABLE)

    def to_arrow(self, records: Sequence[dict]) -> pa.Table:
        columns = {name: [r.get(name) for r in records] for name in EVENTS_ARROW_SCHEMA.names}
        for name in ("timestamp", "received_at"):
            columns[name] = [_naive_utc(v) for v in columns[name]]
        return pa.table(columns, schema=EVENTS_ARROW_SCHEMA)

    def expire_snapshots(self, *, keep: int) -> int:
        """Forget all but the newest ``keep`` snapshots once there are twice as many; returns how many it forgot.

        Every commit copies the metadata of every snapshot: without this an append costs 0.1 s of CPU at first
        and 0.5 s after 600 commits (one commit per EVENTS_APPEND_SECONDS makes 8,640 a day). Nothing is
        deleted: the table is only appended to, so its newest snapshot lists every data file, which readers
        (and time travel within the newest ``keep``) use."""
        table = self.ensure_table()
        snapshots = sorted(table.metadata.snapshots, key=lambda snapshot: snapshot.timestamp_ms)
        if len(snapshots) <= 2 * keep:
            return 0
        cutoff = snapshots[min(len(snapshots) - keep, EXPIRE_AT_MOST)].timestamp_ms
        expiring = sum(1 for snapshot in snapshots if snapshot.timestamp_ms < cutoff)
        with _lock:
            table.maintenance.expire_snapshots().older_than(datetime.fromtimestamp(cutoff / 1000, UTC)).commit()
        return expiring

    def rows(self) -> list[dict]:
        """Every row of the table (a LakeError when it was never written): for checks and tests."""
        return self.table().scan().to_arrow().to_pylist()
