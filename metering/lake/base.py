"""The lake interface: where the access-log and events tables live and how usage queries run against them.

Two backends implement it, chosen by ``settings.LAKE_BACKEND``: ``local`` (pyiceberg SQL catalog +
files under var/, queried by DuckDB) and ``athena`` (Glue catalog + S3, queried by Athena).

A metric counts the access-log table or, when it names an event code, the events table: the readers
below split the metrics they are given by table, ask each table its part, and answer as one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import pyarrow as pa

from metering.lake import queries
from portal.kernel import ApplicationError


class LakeError(ApplicationError):
    """A lake read that failed or could not be made (the caller may retry: nothing was written).

    Also a lake that is not there: a missing warehouse, catalog or table is an error, never an empty
    answer, so that no reader mistakes an unmounted volume or a wrong setting for a quiet month.
    The message is kept to one line (file paths and driver messages can span several), since it is
    what the command prints and the run records.
    """

    status_code = 503  # the REST API's answer: the lake did not answer, not a bad request

    def __init__(self, message: str, extra: dict | None = None):
        super().__init__(one_line(message), extra)


def one_line(text, limit: int = 1000) -> str:
    """``text`` on one line (whitespace runs collapsed), at most ``limit`` characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[:limit - 1] + "…"


class LakeTimeout(LakeError):
    """A lake query that did not finish within the configured time."""


# Usernames inlined in a query to attribute rows without tenant_id (about 50 bytes each); beyond this
# many, a query first asks which of them appear without tenant_id in its window (Athena takes query
# texts up to 256 kB).
INLINE_USERS = 2000


# The Arrow type of usage values in the lake's answers: the usage tables' numeric(30, 6), with room for sums.
USAGE_VALUE = pa.decimal128(38, 6)


@dataclass(frozen=True, slots=True)
class WholePeriodRow:
    """One row of the whole-period query: the tenant's slug, the part's unit ('hour', 'day', 'month', or
    'window' for a whole window), the bucket's start (UTC, aware; None for a whole window) and one
    figure per metric, in the metrics' order."""

    tenant_id: str
    unit: str
    bucket: datetime | None
    values: tuple[Decimal | None, ...]


@dataclass(frozen=True, slots=True)
class HourlyRow:
    """One group of the hourly query: ``tenant_id`` (None when the log had none), ``user`` (only when
    tenant_id is None), the hour (UTC, aware) and one aggregate per metric, in the metrics' order."""

    tenant_id: str | None
    user: str | None
    hour: datetime
    values: tuple[Decimal | None, ...]


class Lake(ABC):
    """The access-log and events tables and the usage queries over them."""

    dialect: str = ""

    @abstractmethod
    def execute(self, query, *, events: bool = False) -> list[tuple]:
        """Run one sqlglot query (rendered in this backend's dialect) and return its rows; ``events``: the
        query reads the events table (events_ref) rather than the access-log table."""

    def query_arrow(self, query, *, events: bool = False):
        """``execute`` as an Arrow table of the query's columns (backends override it to skip Python rows)."""
        rows = self.execute(query, events=True) if events else self.execute(query)
        names = query.named_selects
        return pa.table({name: [row[i] for row in rows] for i, name in enumerate(names)}) if rows else \
            pa.table({name: pa.array([], pa.null()) for name in names})

    def _hourly_parts(self, metrics: Sequence, *, start: datetime, end: datetime,
                      user_tenants: Mapping[str, str] | None) -> list[tuple[list[int], object, bool]]:
        """(the metrics' positions, the query of their hourly figures, whether it reads the events table)."""
        specs = [queries.MetricQuery.of(m) for m in metrics]
        log = [i for i, s in enumerate(specs) if not s.event]
        posted = [i for i, s in enumerate(specs) if s.event and s.aggregation != "latest"]
        latest = [i for i, s in enumerate(specs) if s.event and s.aggregation == "latest"]
        parts = []
        if log:
            parts.append((log, queries.hourly_usage_query(
                [specs[i] for i in log], start=start, end=end, **self.table_ref(),
                user_tenants=self.inline_users(user_tenants, start=start, end=end)), False))
        if posted:
            parts.append((posted, queries.hourly_usage_query([specs[i] for i in posted], start=start, end=end,
                                                             **self.events_ref()), True))
        if latest:
            parts.append((latest, queries.latest_query([specs[i] for i in latest], start=start, end=end,
                                                       **self.events_ref()), True))
        return parts

    def hourly_usage_table(self, *, metrics: Sequence, start: datetime, end: datetime,
                           user_tenants: Mapping[str, str] | None = None):
        """The metrics per tenant and hour over [start, end) as an Arrow table (``tenant_id, user, hour,
        m0, m1...``, the values as decimal(38, 6)), the form the sync post-processes in bulk; duplicates of
        a request_id (of an event) counted once; with ``user_tenants`` (username -> tenant slug) access-log
        rows without tenant_id are attributed in the lake. Metrics of the two tables come in separate rows
        (a row's other metrics are NULL)."""
        names = [f"m{i}" for i in range(len(metrics))]
        tables = []
        for positions, query, events in self._hourly_parts(metrics, start=start, end=end, user_tenants=user_tenants):
            part = self.query_arrow(query, events=events)
            columns = {"tenant_id": part.column("tenant_id").cast(pa.string()),
                       "user": part.column("user").cast(pa.string()),
                       "hour": part.column("hour").cast(pa.timestamp("us"))}
            for name in names:
                columns[name] = pa.nulls(part.num_rows, USAGE_VALUE)
            for local, position in enumerate(positions):
                columns[names[position]] = part.column(f"m{local}").cast(USAGE_VALUE)
            tables.append(pa.table(columns))
        if not tables:
            return pa.table({"tenant_id": pa.array([], pa.string()), "user": pa.array([], pa.string()),
                             "hour": pa.array([], pa.timestamp("us")),
                             **{name: pa.array([], USAGE_VALUE) for name in names}})
        return pa.concat_tables(tables)

    def hourly_usage(self, *, metrics: Sequence, start: datetime, end: datetime,
                     user_tenants: Mapping[str, str] | None = None) -> list[HourlyRow]:
        """:meth:`hourly_usage_table` as Python rows."""
        if not metrics:
            return []
        table = self.hourly_usage_table(metrics=metrics, start=start, end=end, user_tenants=user_tenants)
        return [HourlyRow(tenant_id=row["tenant_id"], user=row["user"], hour=_aware(row["hour"]),
                          values=tuple(_dec(row[f"m{i}"]) for i in range(len(metrics))))
                for row in table.to_pylist()]

    def period_usage(self, *, metrics: Sequence, start: datetime, end: datetime, tenant_id: str,
                     usernames: Iterable[str] = ()) -> dict[str, Decimal]:
        """The metrics over the whole of [start, end) for one tenant (by tenant_id, or by user where
        the log has no tenant_id): {metric code: raw aggregate}, 0 where nothing matched."""
        if not metrics:
            return {}
        specs = [queries.MetricQuery.of(m) for m in metrics]
        if any(spec.event for spec in specs):
            raise queries.QueryError("period_usage reads the access-log table; events metrics are read by hour")
        query = queries.period_usage_query(specs, start=start, end=end, tenant_id=tenant_id, usernames=usernames,
                                           **self.table_ref())
        rows = self.execute(query)
        values = rows[0] if rows else (None,) * len(specs)
        return {spec.code: _dec(value) or Decimal(0) for spec, value in zip(specs, values, strict=True)}

    def exists(self) -> bool:
        """Whether the access-log table is there (checked without creating or changing anything)."""
        try:
            self.check_table()
        except LakeError:
            return False
        return True

    @abstractmethod
    def check_table(self) -> None:
        """Raise LakeError, saying what is missing, unless the table exists; create nothing."""

    def whole_period(self, *, metrics: Sequence, parts: Sequence[tuple[str | None, datetime, datetime]],
                     user_tenants: Mapping[str, str] | None = None,
                     tenants: Iterable[str] | None = None) -> list[WholePeriodRow]:
        """Figures of max and unique_count metrics per tenant over whole buckets or windows, each over
        all of its rows (queries.whole_period_query): the exact figure of a day, a month or a billing
        period, which the hours' figures cannot give."""
        if not metrics:
            return []
        low, high = min(p[1] for p in parts), max(p[2] for p in parts)
        specs = [queries.MetricQuery.of(m) for m in metrics]
        merged: dict[tuple, list] = {}
        for events in (False, True):
            positions = [i for i, spec in enumerate(specs) if bool(spec.event) == events]
            if not positions:
                continue
            chosen = [specs[i] for i in positions]
            if events:
                query = queries.whole_period_query(chosen, parts=parts, **self.events_ref(), tenants=tenants)
            else:
                query = queries.whole_period_query(chosen, parts=parts, **self.table_ref(), tenants=tenants,
                                                   user_tenants=self.inline_users(user_tenants, start=low, end=high))
            for row in (self.execute(query, events=True) if events else self.execute(query)):
                values = merged.setdefault((row[0], row[1], row[2]), [None] * len(specs))
                for position, value in zip(positions, row[3:], strict=True):
                    values[position] = _dec(value)
        return [WholePeriodRow(tenant_id=key[0], unit=key[1], bucket=None if key[2] is None else _aware(key[2]),
                               values=tuple(values)) for key, values in merged.items()]

    def inline_users(self, user_tenants: Mapping[str, str] | None, *, start: datetime,
                     end: datetime) -> dict[str, str]:
        """The part of ``user_tenants`` a query over [start, end) inlines: all of it, or beyond
        INLINE_USERS usernames only those the window's rows without tenant_id name (one cheap query)."""
        if not user_tenants:
            return {}
        if len(user_tenants) <= INLINE_USERS:
            return dict(user_tenants)
        named = self.execute(queries.legacy_users_query(start=start, end=end, **self.table_ref()))
        return {row[0]: user_tenants[row[0]] for row in named if row[0] in user_tenants}

    def count_requests(self, *, start: datetime, end: datetime, distinct: bool = True) -> int:
        query = queries.count_query(start=start, end=end, distinct=distinct, **self.table_ref())
        return int(self.execute(query)[0][0])

    @abstractmethod
    def table_ref(self) -> dict:
        """``{"table": ..., "database": ...}`` as the queries name the access-log table."""

    @abstractmethod
    def events_ref(self) -> dict:
        """``{"table": ..., "database": ...}`` as the queries name the events table (queries.events_relation)."""

    def append(self, records: Sequence[dict]) -> int:
        """Append transformed records (transform.transform_record's output); local lake only."""
        raise NotImplementedError(f"{type(self).__name__} is written by Firehose, not by the portal")


def _dec(value) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, Decimal):
        return value
    if isinstance(value, float):
        return Decimal(repr(value))
    return Decimal(value)


def _aware(value) -> datetime:
    from datetime import UTC

    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
