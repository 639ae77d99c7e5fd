"""The local lake: an Iceberg table in a pyiceberg SQL catalog under var/, queried by DuckDB.

The Iceberg scan plans which Parquet files hold the window (partition pruning by day); DuckDB then
reads those files directly, so no row passes through Python on the way to the aggregates.

Reads open the catalog read-only and never create anything: a missing warehouse, catalog or table
is a LakeError (an unmounted volume or a wrong LAKE_WAREHOUSE_DIR must not read as "no usage"), and
so is any file the table's metadata lists that cannot be read. Only writers (``append``, through
``ensure_table``) create the table.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import duckdb
import pyarrow as pa
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.exceptions import (
    CommitFailedException,
    NamespaceAlreadyExistsError,
    NoSuchNamespaceError,
    NoSuchTableError,
    TableAlreadyExistsError,
)
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

EVENTS_VIEW = "events"
_EMPTY_EVENTS_DUCKDB = ("SELECT CAST(NULL AS VARCHAR) AS transaction_id, CAST(NULL AS VARCHAR) AS tenant_id, "
                        "CAST(NULL AS VARCHAR) AS code, CAST(NULL AS TIMESTAMP) AS \"timestamp\", "
                        "CAST(NULL AS VARCHAR) AS properties, CAST(NULL AS TIMESTAMP) AS received_at WHERE false")

_lock = threading.Lock()
CATALOG_FILE = "catalog.sqlite3"


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


class LocalIcebergTable:
    """One Iceberg table of the local warehouse: read-only loading for readers, creation by writers.

    The access-log lake (``LocalLake``) and the events table (``metering.lake.events``) are both
    this class with their own schema, partitioning and the setting that names them."""

    iceberg_schema = ICEBERG_SCHEMA
    partition_spec = PARTITION_SPEC
    arrow_schema = ARROW_SCHEMA
    table_setting = "LAKE_TABLE"
    time_column = "request_time"  # the partition source, by which a scan prunes files

    def __init__(self, *, warehouse: str | Path, database: str, table: str):
        self.warehouse = Path(warehouse)
        self.database = database
        self.table_name = table
        self._catalog = None
        self._reader = None

    def to_arrow(self, records: Sequence[dict]) -> pa.Table:
        return records_to_arrow(records)

    # --- the Iceberg table ---------------------------------------------------------------------------

    @property
    def catalog_path(self) -> Path:
        return self.warehouse / CATALOG_FILE

    @property
    def catalog(self) -> SqlCatalog:
        """The catalog for writing: created (with the warehouse folder) when absent."""
        if self._catalog is None:
            self.warehouse.mkdir(parents=True, exist_ok=True)
            self._catalog = SqlCatalog(
                "portal", uri=f"sqlite:///{self.catalog_path}", warehouse=self.warehouse.resolve().as_uri(),
            )
        return self._catalog

    def _reading_catalog(self) -> SqlCatalog:
        """The catalog opened read-only: SQLite refuses any write, and nothing is created."""
        if self._reader is None:
            where = f"{self.warehouse} (LAKE_WAREHOUSE_DIR)"
            if not self.warehouse.is_dir():
                raise LakeError(f"the local lake is missing: no warehouse folder at {where}; is the volume "
                                f"mounted? (a new lake is created by its first write)")
            if not self.catalog_path.is_file():
                raise LakeError(f"the local lake is missing: no Iceberg catalog {CATALOG_FILE} in {where} "
                                f"(a new lake is created by its first write)")
            self._reader = SqlCatalog(
                "portal", uri=f"sqlite:///file:{quote(str(self.catalog_path.resolve()))}?mode=ro&uri=true",
                warehouse=self.warehouse.resolve().as_uri(), init_catalog_tables="false",
            )
        return self._reader

    @property
    def identifier(self) -> tuple[str, str]:
        return (self.database, self.table_name)

    def table(self):
        """The Iceberg table, loaded for reading; LakeError when the lake or the table is missing."""
        with _read_errors():
            catalog = self._reading_catalog()
            try:
                return catalog.load_table(self.identifier)
            except (NoSuchTableError, NoSuchNamespaceError):
                raise LakeError(
                    f"the local lake has no table {self.database}.{self.table_name} in {self.warehouse} "
                    f"(LAKE_WAREHOUSE_DIR, LAKE_DATABASE, {self.table_setting}): nothing was ever written there, or "
                    f"the settings name another lake"
                ) from None

    def check_table(self) -> None:
        self.table()

    def ensure_table(self):
        """The Iceberg table for writing, created on first use (its schema, partitioned by day).

        Loaded first: trying create_table on an existing table would leave an orphan metadata file
        behind every time."""
        catalog = self.catalog
        try:
            return catalog.load_table(self.identifier)
        except (NoSuchTableError, NoSuchNamespaceError):
            pass
        try:
            catalog.create_namespace(self.database)
        except NamespaceAlreadyExistsError:
            pass
        try:
            return catalog.create_table(self.identifier, schema=self.iceberg_schema,
                                        partition_spec=self.partition_spec)
        except TableAlreadyExistsError:  # created meanwhile by another writer
            return catalog.load_table(self.identifier)

    def data_files(self, *, start: datetime | None = None, end: datetime | None = None) -> list[str]:
        """The Parquet files the Iceberg scan plans for [start, end) (all of them without bounds)."""
        row_filter = None
        if start is not None and end is not None:
            row_filter = And(GreaterThanOrEqual(self.time_column, _naive_utc(start).isoformat()),
                             LessThan(self.time_column, _naive_utc(end).isoformat()))
        table = self.table()
        with _read_errors():
            scan = table.scan(row_filter=row_filter) if row_filter is not None else table.scan()
            files = []
            for task in scan.plan_files():
                if task.delete_files:
                    # The portal only appends; a table with deletes would need the Arrow scan instead.
                    raise LakeError("the local lake has delete files, which the DuckDB path does not apply")
                path = task.file.file_path
                files.append(path[len("file://"):] if path.startswith("file://") else path)
        for path in files:
            # DuckDB would say "no files found"; this says which file of the table is gone.
            if not os.path.isfile(path):
                raise LakeError(f"the local lake is damaged: data file {path} (listed by the table's Iceberg "
                                f"metadata) is missing")
        return files

    def append(self, records: Sequence[dict]) -> int:
        if not records:
            return 0
        return self.append_arrow(self.to_arrow(records))

    def append_arrow(self, data: pa.Table) -> int:
        """Append an Arrow table of the table's schema; a concurrent commit is retried on a fresh table."""
        data = data.cast(self.arrow_schema) if data.schema != self.arrow_schema else data
        for attempt in range(10):
            try:
                with _lock:
                    self.ensure_table().append(data)
                return data.num_rows
            except CommitFailedException:
                if attempt == 9:
                    raise
                time.sleep(0.05 * (attempt + 1))
        return 0  # pragma: no cover


class LocalLake(LocalIcebergTable, Lake):
    dialect = "duckdb"

    def __init__(self, *, warehouse: str | Path, database: str, table: str, duckdb_threads: int | None = None,
                 duckdb_memory_limit: str | None = None, events_table: str = "events"):
        from metering.lake.events import LocalEventsTable

        super().__init__(warehouse=warehouse, database=database, table=table)
        self.duckdb_threads = duckdb_threads
        self.duckdb_memory_limit = duckdb_memory_limit
        self.events = LocalEventsTable(warehouse=warehouse, database=database, table=events_table)

    def events_files(self, *, start: datetime | None = None, end: datetime | None = None) -> list[str]:
        """The events table's Parquet files for [start, end).

        The events table is created by the first accepted event; a lake whose catalog is there (so the
        volume is mounted and written) but has no events table yet has simply received no event: it is
        created empty here, so that an events metric defined before any event reads 0, not an error."""
        try:
            return self.events.data_files(start=start, end=end)
        except LakeError:
            if not self.catalog_path.is_file():
                raise
        self.events.ensure_table()
        return self.events.data_files(start=start, end=end)

    # --- queries -------------------------------------------------------------------------------------

    def table_ref(self) -> dict:
        return {"table": VIEW, "database": None}

    def events_ref(self) -> dict:
        return {"table": queries.events_relation(EVENTS_VIEW), "database": None}

    def connect(self, files: Sequence[str], *, events: bool = False) -> duckdb.DuckDBPyConnection:
        """A DuckDB connection where ``access_log`` (or with ``events`` the ``events`` view) is a view over ``files``."""
        con = duckdb.connect()
        if self.duckdb_threads:
            con.execute(f"SET threads = {int(self.duckdb_threads)}")
        if self.duckdb_memory_limit:
            con.execute(f"SET memory_limit = '{_memory_limit(self.duckdb_memory_limit)}'")
        view, empty = (EVENTS_VIEW, _EMPTY_EVENTS_DUCKDB) if events else (VIEW, _EMPTY_DUCKDB)
        if files:
            con.read_parquet(list(files)).create_view(view)
        else:
            con.execute(f'CREATE VIEW "{view}" AS {empty}')
        return con

    def _connect_for(self, query, events: bool) -> duckdb.DuckDBPyConnection:
        start, end = _bounds(query)
        files = self.events_files(start=start, end=end) if events else self.data_files(start=start, end=end)
        return self.connect(files, events=events)

    def query_arrow(self, query, *, events: bool = False) -> pa.Table:
        with _read_errors("local lake query failed"):
            con = self._connect_for(query, events)
            try:
                return con.sql(queries.render(query, self.dialect)).to_arrow_table()
            finally:
                con.close()

    def execute(self, query, *, events: bool = False) -> list[tuple]:
        with _read_errors("local lake query failed"):
            con = self._connect_for(query, events)
            try:
                return con.execute(queries.render(query, self.dialect)).fetchall()
            finally:
                con.close()


@contextmanager
def _read_errors(what: str = "the local lake could not be read") -> Iterator[None]:
    """Any failure of a read (a catalog SQLite cannot open, metadata or manifests missing or corrupt,
    a Parquet file DuckDB cannot read) becomes one LakeError naming it: the sync then fails its run
    and retries, where a raw exception would be a traceback and an unknown state."""
    try:
        yield
    except (LakeError, queries.QueryError):
        raise  # already a LakeError, or a metric that cannot be queried (the caller's mistake)
    except Exception as exc:
        raise LakeError(f"{what}: {type(exc).__name__}: {exc}") from exc


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
