"""The usage queries, built once as sqlglot expression trees and rendered for Athena or DuckDB.

Nothing here formats SQL from strings: a metric's field is checked against the table's columns and
its filter values become literals in the tree, so no metric definition (and no tenant or admin
input) can change a query's shape. Every query first keeps one row per ``request_id``: Firehose
delivers at least once, and a request counts once whatever the aggregation (docs/plans.md).

Metrics over posted events read the ``events`` table through ``events_relation``: the same columns the
access-log queries use (``request_id`` is the event's tenant and transaction id, ``request_time`` its
timestamp), plus ``code`` and ``properties``, so every query above serves both tables. A metric's event
code is one more condition of its filter; ``properties.<name>`` fields and filters read the property's
JSON value (numbers, or strings holding one, for sum, max and latest; a value that is not a number, or is
negative, is not counted). ``latest`` (the last value in a bucket) has its own query, ``latest_query``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlglot import exp

# The access-log table (the columns docs/plans.md lists for metrics), with status as int.
COLUMNS: dict[str, str] = {
    "request_id": "string",
    "ip": "string",
    "user": "string",
    "request_time": "timestamp",
    "http_method": "string",
    "resource_path": "string",
    "status": "int",
    "protocol": "string",
    "response_length": "int",
    "tenant_id": "string",
}
NUMERIC_COLUMNS = frozenset(name for name, kind in COLUMNS.items() if kind == "int")
AGGREGATIONS = ("count", "sum", "max", "unique_count", "latest")
PROPERTIES_PREFIX = "properties."
_PROPERTY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
# Property values are read as DECIMAL(38, 6): the usage tables' numeric(30, 6), with room for sums.
EVENT_NUMBER = "decimal(38, 6)"
DIALECTS = ("athena", "duckdb")

_STATUS_RE = re.compile(r"([1-5])(xx|[0-9]{2})")
_DEDUPED = "deduped"
_ATTRIBUTED = "attributed"
# Aggregations whose figure over a bucket is not the sum of the figures of its hours; a query of their
# figures over whole days, months or periods asks the lake (the sync's rollups, period quantities).
WHOLE_PERIOD = ("max", "unique_count")
# Units the figures of whole buckets are grouped by.
BUCKETS = ("hour", "day", "month")


class QueryError(ValueError):
    """A metric that cannot be turned into a query (unknown field, aggregation or filter)."""


@dataclass(frozen=True)
class MetricQuery:
    """What a query needs of a metric: its code, aggregation, field and filters (docs/plans.md)."""

    code: str
    aggregation: str
    field: str | None = None
    filters: tuple[tuple[str, tuple[str, ...]], ...] = ()
    event: str = ""  # the posted events' code; empty for the access-log table

    @classmethod
    def of(cls, metric) -> MetricQuery:
        """From a Metric model, a pricing MetricSpec or anything with those attributes."""
        if isinstance(metric, MetricQuery):
            return metric
        filters = tuple(sorted((key, tuple(values)) for key, values in (metric.filters or {}).items()))
        return cls(code=metric.code, aggregation=metric.aggregation, field=metric.field or None, filters=filters,
                   event=getattr(metric, "event", "") or "")


def _ts(value: datetime) -> exp.Expression:
    """A timestamp literal in UTC (the table's request_time is UTC without a zone)."""
    if value.tzinfo is None:
        raise QueryError("query bounds must be timezone-aware datetimes")
    text = value.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
    return exp.cast(exp.Literal.string(text), exp.DataType.build("timestamp"))


def _col(name: str) -> exp.Column:
    if name not in COLUMNS:
        raise QueryError(f"{name!r} is not a column of the access-log table")
    return exp.column(name)


def _property(fieldname: str, metric: MetricQuery) -> exp.Expression:
    """The text of an event's property (``properties.<name>``), NULL where the event has none."""
    name = fieldname[len(PROPERTIES_PREFIX):] if fieldname.startswith(PROPERTIES_PREFIX) else ""
    if not _PROPERTY_RE.fullmatch(name):
        raise QueryError(f"metric {metric.code}: {fieldname!r} is not 'properties.<name>'")
    return exp.JSONExtractScalar(this=exp.column("properties"), expression=exp.Literal.string(f"$.{name}"))


def _property_number(fieldname: str, metric: MetricQuery) -> exp.Expression:
    """An event's property as a number, NULL where it is missing, not a number or negative."""
    number = exp.TryCast(this=_property(fieldname, metric), to=exp.DataType.build(EVENT_NUMBER))
    return exp.Case(ifs=[exp.If(this=exp.GTE(this=number, expression=exp.Literal.number(0)), true=number.copy())])


def _filter_condition(metric: MetricQuery) -> exp.Expression | None:
    """The metric's filters as one condition: filters ANDed, the values of one filter ORed (and for an
    events metric, its event code first)."""
    parts: list[exp.Expression] = []
    if metric.event:
        parts.append(exp.column("code").eq(exp.Literal.string(metric.event)))
    for key, values in metric.filters:
        if not values:
            continue
        if metric.event:
            parts.append(_property(key, metric).isin(*[exp.Literal.string(str(v)) for v in values]))
        elif key == "status":
            alternatives = []
            for value in values:
                match = _STATUS_RE.fullmatch(str(value))
                if not match:
                    raise QueryError(f"metric {metric.code}: status filter {value!r} is not a class or code")
                if match.group(2) == "xx":
                    low = int(match.group(1)) * 100
                    alternatives.append(exp.Between(this=_col("status"), low=exp.Literal.number(low),
                                                    high=exp.Literal.number(low + 99)))
                else:
                    alternatives.append(_col("status").eq(exp.Literal.number(int(value))))
            parts.append(exp.or_(*alternatives) if len(alternatives) > 1 else alternatives[0])
        elif key == "http_method":
            parts.append(_col("http_method").isin(*[exp.Literal.string(str(v).upper()) for v in values]))
        elif key == "resource_path_prefix":
            # substr(...) = literal: a prefix is compared as text, so no LIKE wildcard in it matters.
            alternatives = [
                exp.Substring(this=_col("resource_path"), start=exp.Literal.number(1),
                              length=exp.Literal.number(len(str(v)))).eq(exp.Literal.string(str(v)))
                for v in values
            ]
            parts.append(exp.or_(*alternatives) if len(alternatives) > 1 else alternatives[0])
        else:
            raise QueryError(f"metric {metric.code}: unknown filter {key!r}")
    if not parts:
        return None
    return exp.and_(*[exp.paren(p) for p in parts]) if len(parts) > 1 else parts[0]


def _metric_parts(metric: MetricQuery) -> tuple[exp.Expression, str]:
    """The metric's per-request value (its filters applied with CASE WHEN) and the outer aggregate."""
    metric = MetricQuery.of(metric)
    if metric.aggregation not in AGGREGATIONS:
        raise QueryError(f"metric {metric.code}: unknown aggregation {metric.aggregation!r}")
    condition = _filter_condition(metric)
    if metric.aggregation == "count":
        one = exp.Literal.number(1)
        value: exp.Expression = exp.Case(ifs=[exp.If(this=condition, true=one)], default=exp.Literal.number(0)) \
            if condition is not None else one
        return value, "sum"
    if not metric.field:
        raise QueryError(f"metric {metric.code}: aggregation {metric.aggregation} needs a field")
    if metric.event:
        value = (_property(metric.field, metric) if metric.aggregation == "unique_count"
                 else _property_number(metric.field, metric))
        if condition is not None:
            value = exp.Case(ifs=[exp.If(this=condition, true=value)])
        kind = {"sum": "sum", "max": "max", "unique_count": "count_distinct", "latest": "latest"}[metric.aggregation]
        return value, kind
    if metric.aggregation == "latest":
        raise QueryError(f"metric {metric.code}: latest is for metrics over posted events")
    value = _col(metric.field)
    if metric.aggregation in ("sum", "max") and metric.field not in NUMERIC_COLUMNS:
        raise QueryError(f"metric {metric.code}: {metric.aggregation} needs a numeric column, not {metric.field}")
    if metric.aggregation == "sum":
        # bigint: a month of response lengths overflows int.
        value = exp.cast(value, exp.DataType.build("bigint"))
    if condition is not None:
        value = exp.Case(ifs=[exp.If(this=condition, true=value)])
    return value, {"sum": "sum", "max": "max", "unique_count": "count_distinct"}[metric.aggregation]


def _outer(kind: str, column: exp.Expression) -> exp.Expression:
    if kind == "sum":
        return exp.Sum(this=column)
    if kind == "max":
        return exp.Max(this=column)
    return exp.Count(this=exp.Distinct(expressions=[column]))


def _per_request(metrics: Sequence[MetricQuery], source: exp.Expression, where: exp.Expression,
                 keys: Sequence[tuple[str, exp.Expression]]) -> tuple[exp.Subquery, list[str]]:
    """One row per request_id (Firehose delivers at least once; a redelivery is the same record):
    its keys and each metric's per-request value. GROUP BY request_id with MAX/ARBITRARY is cheaper
    than a ROW_NUMBER() window over the whole window (2x in DuckDB here) and runs the same on Athena."""
    inner = exp.select(exp.column("request_id"))
    for name, expression in keys:
        inner = inner.select(exp.alias_(exp.AnyValue(this=expression), name))
    kinds = []
    for i, metric in enumerate(metrics):
        value, kind = _metric_parts(metric)
        # Every copy of a request has the same value, so MAX picks it (and ignores the NULLs of CASE).
        inner = inner.select(exp.alias_(exp.Max(this=value), f"v{i}"))
        kinds.append(kind)
    inner = inner.from_(source.copy()).where(where).group_by(exp.column("request_id"))
    return inner.subquery(_DEDUPED), kinds


def _window(start: datetime, end: datetime, column: exp.Column | None = None) -> exp.Expression:
    """``request_time`` (or ``column``) in [start, end): a range on the tables' partition source column.

    Both tables are partitioned by day of that column (Iceberg's hidden partitioning), so Athena reads
    only the day partitions the range touches, and within them only the files whose column statistics
    overlap it; the local lake prunes its Parquet files the same way (LocalLake._connect_for). The column
    stays bare (no function of it), so the engines can turn the range into a partition filter."""
    if end <= start:
        raise QueryError("the query's end must be after its start")
    column = column.copy() if column is not None else exp.column("request_time")
    return exp.and_(column >= _ts(start), column < _ts(end))


def _source(table: str | exp.Expression, database: str | None, start: datetime | None = None,
            end: datetime | None = None) -> exp.Expression:
    """The relation rows are read from: a table (of ``database``), or a relation such as
    ``events_relation``'s, as given. A relation gets the window [start, end) on its own partition
    column (the events' ``timestamp``) inside it, so that the scan of the table is filtered by the
    partition column itself, not only through the alias the outer query filters on."""
    if isinstance(table, exp.Expression):
        relation = table.copy()
        inner = relation.this if isinstance(relation, exp.Subquery) else None
        if start is not None and end is not None and isinstance(inner, exp.Select):
            time_source = next((projection.this for projection in inner.expressions
                                if projection.alias_or_name == "request_time"), None)
            if isinstance(time_source, exp.Column):
                inner.where(_window(start, end, time_source), copy=False)
        return relation
    return exp.table_(table, db=database) if database else exp.table_(table)


EVENTS_ROWS = "events_rows"


def events_relation(table: str, database: str | None = None) -> exp.Subquery:
    """The events table as the usage queries read a table: ``request_id`` (tenant and transaction id,
    what makes an event one: the lake may hold a redelivered copy), ``request_time`` (its timestamp),
    ``tenant_id``, ``user`` (always NULL: events name their tenant), ``code`` and ``properties``."""
    select = exp.select(
        exp.alias_(exp.Concat(expressions=[exp.column("tenant_id"), exp.Literal.string("/"),
                                           exp.column("transaction_id")]), "request_id"),
        exp.alias_(exp.column("timestamp"), "request_time"),
        exp.column("tenant_id"),
        exp.alias_(exp.cast(exp.null(), exp.DataType.build("varchar")), "user"),
        exp.column("code"),
        exp.column("properties"),
    ).from_(exp.table_(table, db=database) if database else exp.table_(table))
    return select.subquery(EVENTS_ROWS)


def latest_query(metrics: Sequence, *, start: datetime, end: datetime, table: str | exp.Expression,
                 database: str | None = None, unit: str = "hour") -> exp.Select:
    """The last value of each ``latest`` metric per tenant and ``unit`` bucket ('hour', 'day', 'month'):
    ``tenant_id, user (NULL), hour, m0, m1...`` (``hour`` being the bucket's start).

    The last value is that of the bucket's latest event (by timestamp) among those that match the metric
    and carry a number; events at that same instant: the largest of their values. A redelivered copy
    has the same timestamp and value, so it changes nothing."""
    specs = [MetricQuery.of(m) for m in metrics]
    if unit not in BUCKETS:
        raise QueryError(f"unknown bucket unit {unit!r}")
    source = _source(table, database, start, end)
    bucket = exp.TimestampTrunc(this=exp.column("request_time"), unit=exp.var(unit.upper()))
    selects = []
    for i, spec in enumerate(specs):
        value, kind = _metric_parts(spec)
        if kind != "latest":
            raise QueryError(f"metric {spec.code}: {spec.aggregation} is not a latest metric")
        valued = (exp.select(exp.column("tenant_id"), exp.column("request_time"), exp.alias_(value, "v"))
                  .from_(source.copy()).where(exp.and_(_window(start, end),
                                                       exp.column("tenant_id").is_(exp.not_(exp.null())),
                                                       exp.column("code").eq(exp.Literal.string(spec.event)))))
        last = exp.Window(this=exp.Max(this=exp.column("request_time")),
                          partition_by=[exp.column("tenant_id"), bucket.copy()])
        ranked = (exp.select(exp.column("tenant_id"), exp.alias_(bucket.copy(), "hour"), exp.column("request_time"),
                             exp.column("v"), exp.alias_(last, "last_time"))
                  .from_(valued.subquery("valued")).where(exp.column("v").is_(exp.not_(exp.null()))))
        selects.append(
            exp.select(exp.column("tenant_id"), exp.column("hour"),
                       *[exp.alias_(exp.Max(this=exp.column("v")) if j == i
                                    else exp.cast(exp.null(), exp.DataType.build(EVENT_NUMBER)), f"m{j}")
                         for j in range(len(specs))])
            .from_(ranked.subquery("ranked"))
            .where(exp.column("request_time").eq(exp.column("last_time")))
            .group_by(*_pos(1, 2)))
    union = selects[0]
    for select in selects[1:]:
        union = exp.union(union, select, distinct=False)
    return (exp.select(exp.column("tenant_id"), exp.alias_(exp.cast(exp.null(), exp.DataType.build("varchar")), "user"),
                       exp.column("hour"), *[exp.alias_(exp.Max(this=exp.column(f"m{j}")), f"m{j}")
                                             for j in range(len(specs))])
            .from_(union.subquery("latest")).group_by(*_pos(1, 3)))


def _raw_aggregate(kind: str, value: exp.Expression) -> exp.Expression:
    if kind == "sum":
        return exp.Sum(this=value)
    if kind == "max":
        return exp.Max(this=value)
    return exp.Count(this=exp.Distinct(expressions=[value]))


def _pos(*numbers: int) -> list[exp.Expression]:
    return [exp.Literal.number(n) for n in numbers]


def attributed_log(*, start: datetime, end: datetime, table: str, database: str | None = None,
                   user_tenants: Mapping[str, str]) -> exp.Select:
    """The access-log rows of [start, end) whose ``tenant_id`` is the tenant they belong to: their own
    ``tenant_id``, or for a row without one (older logs) the slug of the tenant whose user it names
    (``user_tenants``: username -> tenant slug), else NULL; every other column as in the table.

    Attribution happens in the lake so that a tenant is one group per bucket: the distinct values of
    a tenant's hour (or day, or month) are then counted over all its rows at once, where counting
    them per (tenant_id, user) group and adding the groups up would count a value seen in two groups
    twice. Rows with a tenant_id pass straight through; only the rows without one meet the (small)
    list of usernames, so the common case costs no join.
    """
    source = _source(table, database, start, end)
    others = [name for name in COLUMNS if name != "tenant_id"]
    own = (exp.select(*[exp.column(name) for name in COLUMNS]).from_(source.copy())
           .where(exp.and_(_window(start, end), exp.column("tenant_id").is_(exp.not_(exp.null())))))
    # Built node by node (exp.values() parses each value: a second for a few thousand usernames).
    users = exp.Values(
        expressions=[exp.Tuple(expressions=[exp.Literal.string(name), exp.Literal.string(user_tenants[name])])
                     for name in sorted(user_tenants)],
        alias=exp.TableAlias(this=exp.to_identifier("u"),
                             columns=[exp.to_identifier("username"), exp.to_identifier("slug")]))
    by_user = (exp.select(*[exp.column(name, table="l") for name in others],
                          exp.alias_(exp.column("slug", table="u"), "tenant_id"))
               .from_(exp.alias_(source.copy(), "l", table=True))
               .join(users, join_type="left", on=exp.column("user", table="l").eq(exp.column("username", table="u")),
                     copy=False)
               .where(exp.and_(_window(start, end), exp.column("tenant_id", table="l").is_(exp.null()))))
    return exp.Union(this=own, expression=by_user, distinct=False)


def _with_attribution(*, start: datetime, end: datetime, table: str, database: str | None,
                      user_tenants: Mapping[str, str] | None) -> tuple[exp.Expression, Callable]:
    """The relation a query reads rows from (the table, or the attributed rows when ``user_tenants``
    names any user) and a function that gives the finished query the CTE it needs."""
    if not user_tenants:
        return _source(table, database, start, end), lambda finished: finished
    cte = attributed_log(start=start, end=end, table=table, database=database, user_tenants=user_tenants)

    def finish(query: exp.Select) -> exp.Select:
        query = query.with_(_ATTRIBUTED, as_=cte, copy=False)
        with_ = query.args["with_"]
        # First: the other CTEs read it, and a CTE may only name the ones before it.
        with_.set("expressions", [with_.expressions[-1], *with_.expressions[:-1]])
        return query

    return exp.table_(_ATTRIBUTED), finish


def hourly_usage_query(metrics: Sequence, *, start: datetime, end: datetime, table: str,
                       database: str | None = None, user_tenants: Mapping[str, str] | None = None) -> exp.Select:
    """Per hour and tenant, one column per metric: ``tenant_id, user, hour, m0, m1...``.

    ``user`` is only kept where ``tenant_id`` is missing (older logs): those rows are attributed to
    a tenant through the tenant user that owns them. Grouping every row by user too would multiply
    the groups by the users per tenant for nothing. With ``user_tenants`` (username -> tenant slug)
    that attribution happens in the lake (``attributed_log``): the rows of a known user get its
    tenant's slug as ``tenant_id``, so each tenant is one group per hour and its max and distinct
    count are those of all its rows (the groups of the tenant_id and of each user, added up after
    the query, would count a value seen in two of them twice and add maxima up).

    Duplicates of a request_id count once. Redeliveries are copies of the same record, so they
    change no max and no distinct count; for count and sum metrics the query aggregates every row,
    then subtracts each duplicated request's value times its extra copies (computed on the few
    duplicated requests only). That is 2x cheaper than first grouping ten million rows by
    request_id with every metric's state, and it is plain SQL for Athena as for DuckDB.
    """
    queries = [MetricQuery.of(m) for m in metrics]
    parts = [_metric_parts(q) for q in queries]
    source, finish = _with_attribution(start=start, end=end, table=table, database=database,
                                       user_tenants=user_tenants)
    window = _window(start, end)
    user_if_no_tenant = exp.Case(ifs=[exp.If(this=exp.column("tenant_id").is_(exp.null()),
                                             true=exp.column("user"))])
    hour = exp.TimestampTrunc(this=exp.column("request_time"), unit=exp.var("HOUR"))

    raw = exp.select(
        exp.column("tenant_id"), exp.alias_(user_if_no_tenant.copy(), "user"), exp.alias_(hour.copy(), "hour"),
        *[exp.alias_(_raw_aggregate(kind, value), f"m{i}") for i, (value, kind) in enumerate(parts)],
    ).from_(source.copy()).where(window.copy()).group_by(*_pos(1, 2, 3))

    additive = [i for i, (_, kind) in enumerate(parts) if kind == "sum"]
    if not additive:
        return finish(raw)

    count_star = exp.Count(this=exp.Star())
    dups = (exp.select(exp.column("request_id"), exp.alias_(exp.Sub(this=count_star.copy(), expression=exp.Literal.number(1)),
                                                          "extra"))
            # The table itself: which requests are duplicated does not depend on their attribution.
            .from_(_source(table, database, start, end)).where(window.copy()).group_by(exp.column("request_id"))
            .having(exp.GT(this=count_star.copy(), expression=exp.Literal.number(1))))
    per_dup = (exp.select(
        exp.alias_(exp.AnyValue(this=exp.column("tenant_id", table="w")), "tenant_id"),
        exp.alias_(exp.AnyValue(this=user_if_no_tenant.copy()), "user"),
        exp.alias_(exp.AnyValue(this=hour.copy()), "hour"),
        exp.alias_(exp.Max(this=exp.column("extra", table="d")), "extra"),
        *[exp.alias_(exp.Max(this=parts[i][0].copy()), f"v{i}") for i in additive],
    ).from_(exp.alias_(source.copy(), "w", table=True))
        .join(exp.table_("dups", alias="d"), on=exp.column("request_id", table="w").eq(exp.column("request_id", table="d")))
        .where(window.copy()).group_by(exp.column("request_id", table="w")))
    corrections = exp.select(
        exp.column("tenant_id"), exp.column("user"), exp.column("hour"),
        *[exp.alias_(exp.Sum(this=exp.Mul(this=exp.column(f"v{i}"), expression=exp.column("extra"))), f"c{i}")
          for i in additive],
    ).from_(per_dup.subquery("per_dup")).group_by(*_pos(1, 2, 3))

    def same(name: str) -> exp.Expression:
        return exp.NullSafeEQ(this=exp.column(name, table="r"), expression=exp.column(name, table="c"))

    columns = []
    for i in range(len(parts)):
        value = exp.column(f"m{i}", table="r")
        if i in additive:
            value = exp.Sub(this=value, expression=exp.func("COALESCE", exp.column(f"c{i}", table="c"),
                                                            exp.Literal.number(0)))
        columns.append(exp.alias_(value, f"m{i}"))
    return finish(exp.select(exp.column("tenant_id", table="r"), exp.column("user", table="r"),
                             exp.column("hour", table="r"), *columns)
                  .from_(exp.table_("raw", alias="r"))
                  .join(exp.table_("corrections", alias="c"), join_type="left",
                        on=exp.and_(same("tenant_id"), same("user"),
                                    exp.column("hour", table="r").eq(exp.column("hour", table="c"))))
                  .with_("dups", as_=dups).with_("raw", as_=raw).with_("corrections", as_=corrections))


def period_usage_query(metrics: Sequence, *, start: datetime, end: datetime, tenant_id: str,
                       usernames: Iterable[str] = (), table: str, database: str | None = None) -> exp.Select:
    """The metrics over a whole period for one tenant: its rows by tenant_id, plus the rows without a
    tenant_id whose user is one of ``usernames``. One row, one column per metric (``m0``, ``m1``...)."""
    queries = [MetricQuery.of(m) for m in metrics]
    owned = exp.column("tenant_id").eq(exp.Literal.string(tenant_id))
    names = sorted(set(usernames))
    if names:
        by_user = exp.and_(exp.column("tenant_id").is_(exp.null()),
                           exp.column("user").isin(*[exp.Literal.string(n) for n in names]))
        owned = exp.or_(owned, by_user)
    where = exp.and_(_window(start, end), exp.paren(owned))
    deduped, kinds = _per_request(queries, _source(table, database, start, end), where, [])
    return exp.select(
        *[exp.alias_(_outer(kind, exp.column(f"v{i}")), f"m{i}") for i, kind in enumerate(kinds)]
    ).from_(deduped)


def whole_period_query(metrics: Sequence, *, parts: Sequence[tuple[str | None, datetime, datetime]], table: str,
                       database: str | None = None, user_tenants: Mapping[str, str] | None = None,
                       tenants: Iterable[str] | None = None) -> exp.Query:
    """Figures of max and unique_count metrics per tenant, each computed over all the rows of its
    bucket: ``tenant_id, unit, bucket, m0, m1...``.

    Each part ``(unit, start, end)`` groups the rows of [start, end) by tenant and by ``unit``
    ('hour', 'day' or 'month', ``bucket`` being its start), or with ``unit`` None by tenant only
    (the whole window; ``bucket`` NULL); the parts are answered together (UNION ALL). Rows are
    attributed as ``attributed_log`` does with ``user_tenants``; rows of no known tenant are left
    out, and ``tenants`` (slugs) keeps only those tenants. No request_id dedupe is needed: a
    redelivery is a copy of the same record, so it changes no maximum and no distinct count.
    """
    specs = [MetricQuery.of(m) for m in metrics]
    if not specs or not parts:
        raise QueryError("a whole-period query needs metrics and at least one window")
    for spec in specs:
        if spec.aggregation not in WHOLE_PERIOD:
            raise QueryError(f"metric {spec.code}: {spec.aggregation} figures add up hour by hour; "
                             "whole-period queries are for max and unique_count")
    values = [_metric_parts(spec) for spec in specs]
    source, finish = _with_attribution(start=min(p[1] for p in parts), end=max(p[2] for p in parts), table=table,
                                       database=database, user_tenants=user_tenants)
    slugs = sorted(set(tenants)) if tenants is not None else None
    selects = []
    for unit, start, end in parts:
        if unit is not None and unit not in BUCKETS:
            raise QueryError(f"unknown bucket unit {unit!r}")
        conditions = [_window(start, end), exp.column("tenant_id").is_(exp.not_(exp.null()))]
        if slugs is not None:
            conditions.append(exp.column("tenant_id").isin(*[exp.Literal.string(slug) for slug in slugs])
                              if slugs else exp.false())
        bucket = (exp.TimestampTrunc(this=exp.column("request_time"), unit=exp.var(unit.upper())) if unit
                  else exp.cast(exp.null(), exp.DataType.build("timestamp")))
        select = (exp.select(exp.column("tenant_id"), exp.alias_(exp.Literal.string(unit or "window"), "unit"),
                             exp.alias_(bucket, "bucket"),
                             *[exp.alias_(_outer(kind, value), f"m{i}") for i, (value, kind) in enumerate(values)])
                  .from_(source.copy()).where(exp.and_(*conditions)))
        selects.append(select.group_by(*_pos(1, 3)) if unit else select.group_by(*_pos(1)))
    query = selects[0]
    for select in selects[1:]:
        query = exp.union(query, select, distinct=False)
    return finish(query)


def legacy_users_query(*, start: datetime, end: datetime, table: str, database: str | None = None) -> exp.Select:
    """The users named by the rows of [start, end) that have no tenant_id (older logs)."""
    return (exp.select(exp.column("user")).distinct().from_(_source(table, database, start, end))
            .where(exp.and_(_window(start, end), exp.column("tenant_id").is_(exp.null()),
                            exp.column("user").is_(exp.not_(exp.null())))))


def count_query(*, start: datetime, end: datetime, table: str, database: str | None = None,
                distinct: bool = True) -> exp.Select:
    """Requests in the window (distinct request ids, or raw rows): for checks and tests."""
    value = exp.Count(this=exp.Distinct(expressions=[exp.column("request_id")])) if distinct else exp.Count(
        this=exp.Star())
    return exp.select(value).from_(_source(table, database, start, end)).where(_window(start, end))


def render(query: exp.Expression, dialect: str) -> str:
    """The query's SQL in ``athena`` or ``duckdb``, every identifier quoted (``user`` is a keyword)."""
    if dialect not in DIALECTS:
        raise QueryError(f"unknown dialect {dialect!r}")
    attributed = [cte for cte in query.find_all(exp.CTE) if cte.alias == _ATTRIBUTED] if dialect == "duckdb" else []
    # DuckDB materializes a CTE read more than once: here every column of the window's rows, which past
    # its memory limit spills to disk (30% slower over 10M rows). Athena inlines CTEs. Set for this
    # rendering only (a copy of the tree would cost more than the rendering).
    for cte in attributed:
        cte.set("materialized", False)
    try:
        return query.sql(dialect=dialect, identify=True)
    finally:
        for cte in attributed:
            cte.set("materialized", None)
