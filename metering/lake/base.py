"""The lake interface: where the access-log table lives and how usage queries run against it.

Two backends implement it, chosen by ``settings.LAKE_BACKEND``: ``local`` (pyiceberg SQL catalog +
files under var/, queried by DuckDB) and ``athena`` (Glue catalog + S3, queried by Athena).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

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
    """The access-log table and the usage queries over it."""

    dialect: str = ""

    @abstractmethod
    def execute(self, query) -> list[tuple]:
        """Run one sqlglot query (rendered in this backend's dialect) and return its rows."""

    def hourly_usage(self, *, metrics: Sequence, start: datetime, end: datetime,
                     user_tenants: Mapping[str, str] | None = None) -> list[HourlyRow]:
        """The metrics per tenant and hour over [start, end), duplicates of a request_id counted once;
        with ``user_tenants`` (username -> tenant slug) rows without tenant_id are attributed in the lake."""
        if not metrics:
            return []
        query = queries.hourly_usage_query(metrics, start=start, end=end, **self.table_ref(),
                                           user_tenants=self.inline_users(user_tenants, start=start, end=end))
        return [HourlyRow(tenant_id=row[0], user=row[1], hour=_aware(row[2]), values=tuple(_dec(v) for v in row[3:]))
                for row in self.execute(query)]

    def hourly_usage_table(self, *, metrics: Sequence, start: datetime, end: datetime,
                           user_tenants: Mapping[str, str] | None = None):
        """The same as :meth:`hourly_usage`, as an Arrow table (``tenant_id, user, hour, m0, m1...``),
        the form the sync post-processes in bulk. Backends override it to skip Python rows."""
        import pyarrow as pa

        rows = self.hourly_usage(metrics=metrics, start=start, end=end, user_tenants=user_tenants)
        columns = {
            "tenant_id": pa.array([r.tenant_id for r in rows], pa.string()),
            "user": pa.array([r.user for r in rows], pa.string()),
            "hour": pa.array([r.hour.replace(tzinfo=None) for r in rows], pa.timestamp("us")),
        }
        for i in range(len(metrics)):
            columns[f"m{i}"] = pa.array([None if r.values[i] is None else int(r.values[i]) for r in rows], pa.int64())
        return pa.table(columns)

    def period_usage(self, *, metrics: Sequence, start: datetime, end: datetime, tenant_id: str,
                     usernames: Iterable[str] = ()) -> dict[str, Decimal]:
        """The metrics over the whole of [start, end) for one tenant (by tenant_id, or by user where
        the log has no tenant_id): {metric code: raw aggregate}, 0 where nothing matched."""
        if not metrics:
            return {}
        specs = [queries.MetricQuery.of(m) for m in metrics]
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
        query = queries.whole_period_query(metrics, parts=parts, **self.table_ref(), tenants=tenants,
                                           user_tenants=self.inline_users(user_tenants, start=low, end=high))
        return [WholePeriodRow(tenant_id=row[0], unit=row[1], bucket=None if row[2] is None else _aware(row[2]),
                               values=tuple(_dec(v) for v in row[3:]))
                for row in self.execute(query)]

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
        """``{"table": ..., "database": ...}`` as the queries name the table."""

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
