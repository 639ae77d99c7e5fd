"""The local lake: an Iceberg table in a pyiceberg SQL catalog under var/, queried by DuckDB.

The Iceberg scan plans which Parquet files hold the window (partition pruning by day); DuckDB then
reads those files directly, so no row passes through Python on the way to the aggregates.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.exceptions import CommitFailedException, NamespaceAlreadyExistsError, TableAlreadyExistsError
from pyiceberg.expressions import And, GreaterThanOrEqual, LessThan
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.transforms import DayTransform
from pyiceberg.types import IntegerType, NestedField, StringType, TimestampType

from metering.lake import queries
from metering.lake.base import Lake, LakeError

VIEW = "access_log"

ICEBERG_SCHEMA = Schema(
    NestedField(1, "request_id", StringType(), required=False),
    NestedField(2, "ip", StringType(), required=False),
    NestedField(3, "user", StringType(), required=False),
    NestedField(4, "request_time", TimestampType(), required=False),
    NestedField(5, "http_method", StringType(), required=False),
    NestedField(6, "resource_path", StringType(), required=False),
    NestedField(7, "status", IntegerType(), required=False),
    NestedField(8, "protocol", StringType(), required=False),
    NestedField(9, "response_length", IntegerType(), required=False),
    NestedField(10, "tenant_id", StringType(), required=False),
)
PARTITION_SPEC = PartitionSpec(PartitionField(source_id=4, field_id=1000, transform=DayTransform(),
                                              name="request_time_day"))
ARROW_SCHEMA = pa.schema([
    ("request_id", pa.string()), ("ip", pa.string()), ("user", pa.string()), ("request_time", pa.timestamp("us")),
    ("http_method", pa.string()), ("resource_path", pa.string()), ("status", pa.int32()),
    ("protocol", pa.string()), ("response_length", pa.int32()), ("tenant_id", pa.string()),
])
_EMPTY_DUCKDB = "SELECT " + ", ".join(
    f'CAST(NULL AS {"TIMESTAMP" if t == "timestamp" else "INTEGER" if t == "int" else "VARCHAR"}) AS "{c}"'
    for c, t in queries.COLUMNS.items()
) + " WHERE false"

_lock = threading.Lock()


def _naive_utc(value) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


def records_to_arrow(records: Sequence[dict]) -> pa.Table:
    """Transformed records (request_time an ISO string or datetime) as an Arrow table of the schema."""
    columns = {name: [r.get(name) for r in records] for name in ARROW_SCHEMA.names}
    columns["request_time"] = [_naive_utc(v) for v in columns["request_time"]]
    return pa.table(columns, schema=ARROW_SCHEMA)


class LocalLake(Lake):
    dialect = "duckdb"

    def __init__(self, *, warehouse: str | Path, database: str, table: str, duckdb_threads: int | None = None,
                 duckdb_memory_limit: str | None = None):
        self.warehouse = Path(warehouse)
        self.database = database
        self.table_name = table
        self.duckdb_threads = duckdb_threads
        self.duckdb_memory_limit = duckdb_memory_limit
        self._catalog = None

    # --- the Iceberg table ---------------------------------------------------------------------------

    @property
    def catalog(self) -> SqlCatalog:
        if self._catalog is None:
            self.warehouse.mkdir(parents=True, exist_ok=True)
            self._catalog = SqlCatalog(
                "portal", uri=f"sqlite:///{self.warehouse / 'catalog.sqlite3'}",
                warehouse=self.warehouse.resolve().as_uri(),
            )
        return self._catalog

    @property
    def identifier(self) -> tuple[str, str]:
        return (self.database, self.table_name)

    def table(self):
        """The Iceberg table, created on first use (the seed's columns plus tenant_id, by day)."""
        catalog = self.catalog
        try:
            catalog.create_namespace(self.database)
        except NamespaceAlreadyExistsError:
            pass
        try:
            return catalog.create_table(self.identifier, schema=ICEBERG_SCHEMA, partition_spec=PARTITION_SPEC)
        except TableAlreadyExistsError:
            return catalog.load_table(self.identifier)

    def append(self, records: Sequence[dict]) -> int:
        if not records:
            return 0
        return self.append_arrow(records_to_arrow(records))

    def append_arrow(self, data: pa.Table) -> int:
        """Append an Arrow table of ARROW_SCHEMA; a concurrent commit is retried on a fresh table."""
        data = data.cast(ARROW_SCHEMA) if data.schema != ARROW_SCHEMA else data
        for attempt in range(10):
            try:
                with _lock:
                    self.table().append(data)
                return data.num_rows
            except CommitFailedException:
                if attempt == 9:
                    raise
                time.sleep(0.05 * (attempt + 1))
        return 0  # pragma: no cover

    def data_files(self, *, start: datetime | None = None, end: datetime | None = None) -> list[str]:
        """The Parquet files the Iceberg scan plans for [start, end) (all of them without bounds)."""
        row_filter = None
        if start is not None and end is not None:
            row_filter = And(GreaterThanOrEqual("request_time", _naive_utc(start).isoformat()),
                             LessThan("request_time", _naive_utc(end).isoformat()))
        table = self.table()
        scan = table.scan(row_filter=row_filter) if row_filter is not None else table.scan()
        files = []
        for task in scan.plan_files():
            if task.delete_files:
                # The portal only appends; a table with deletes would need the Arrow scan instead.
                raise LakeError("the local lake has delete files, which the DuckDB path does not apply")
            path = task.file.file_path
            files.append(path[len("file://"):] if path.startswith("file://") else path)
        return files

    # --- queries -------------------------------------------------------------------------------------

    def table_ref(self) -> dict:
        return {"table": VIEW, "database": None}

    def connect(self, files: Sequence[str]) -> duckdb.DuckDBPyConnection:
        """A DuckDB connection where ``access_log`` is a view over ``files``."""
        con = duckdb.connect()
        if self.duckdb_threads:
            con.execute(f"SET threads = {int(self.duckdb_threads)}")
        if self.duckdb_memory_limit:
            con.execute(f"SET memory_limit = '{_memory_limit(self.duckdb_memory_limit)}'")
        if files:
            con.read_parquet(list(files)).create_view(VIEW)
        else:
            con.execute(f'CREATE VIEW "{VIEW}" AS {_EMPTY_DUCKDB}')
        return con

    def hourly_usage_table(self, *, metrics: Sequence, start: datetime, end: datetime,
                           user_tenants: Mapping[str, str] | None = None) -> pa.Table:
        if not metrics:
            return super().hourly_usage_table(metrics=metrics, start=start, end=end)
        query = queries.hourly_usage_query(metrics, start=start, end=end, **self.table_ref(),
                                           user_tenants=self.inline_users(user_tenants, start=start, end=end))
        con = self.connect(self.data_files(start=start, end=end))
        try:
            return con.sql(queries.render(query, self.dialect)).to_arrow_table()
        except duckdb.Error as exc:
            raise LakeError(f"local lake query failed: {exc}") from exc
        finally:
            con.close()

    def execute(self, query) -> list[tuple]:
        start, end = _bounds(query)
        files = self.data_files(start=start, end=end)
        con = self.connect(files)
        try:
            return con.execute(queries.render(query, self.dialect)).fetchall()
        except duckdb.Error as exc:
            raise LakeError(f"local lake query failed: {exc}") from exc
        finally:
            con.close()


def _memory_limit(value: str) -> str:
    import re

    if not re.fullmatch(r"[0-9]+(\.[0-9]+)?\s*[KMGT]i?B", value.strip(), re.IGNORECASE):
        raise ValueError(f"not a DuckDB memory limit: {value!r}")
    return value.strip()


def _bounds(query) -> tuple[datetime | None, datetime | None]:
    """The window's bounds as written in the query (request_time >= X AND request_time < Y), for pruning."""
    from sqlglot import exp

    low = high = None
    for node in query.find_all(exp.GTE, exp.LT):
        if isinstance(node.this, exp.Column) and node.this.name == "request_time" and isinstance(node.expression, exp.Cast):
            value = datetime.fromisoformat(node.expression.this.this).replace(tzinfo=UTC)
            if isinstance(node, exp.GTE):
                low = value if low is None else min(low, value)
            else:
                high = value if high is None else max(high, value)
    if low is None or high is None:
        return None, None
    return low, high
