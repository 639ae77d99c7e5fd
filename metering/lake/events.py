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
from datetime import datetime

import pyarrow as pa
from django.conf import settings
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.transforms import DayTransform
from pyiceberg.types import NestedField, StringType, TimestampType

from metering.lake.local import LocalIcebergTable, _naive_utc

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


def event_record(*, tenant_slug: str, transaction_id: str, code: str, timestamp: datetime, properties: dict,
                 received_at: datetime) -> dict:
    """One row of the events table as JSON-ready values (what the spool and Firehose carry): timestamps
    as ISO 8601 UTC with microseconds and a Z, properties as compact JSON with sorted keys."""
    return {
        "transaction_id": transaction_id,
        "tenant_id": tenant_slug,
        "code": code,
        "timestamp": _iso(timestamp),
        "properties": json.dumps(properties, separators=(",", ":"), sort_keys=True),
        "received_at": _iso(received_at),
    }


def _iso(value: datetime) -> str:
    return _naive_utc(value).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


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

    def rows(self) -> list[dict]:
        """Every row of the table (a LakeError when it was never written): for checks and tests."""
        return self.table().scan().to_arrow().to_pylist()
