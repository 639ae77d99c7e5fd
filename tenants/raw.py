"""Raw SQL on a hot path, with the ORM's types: model instances and values from a cursor's rows, converted exactly
as the ORM converts them (the backend's and the field's converters: SQLite's dates, decimals and booleans, JSON).

For the few queries every request of a busy endpoint asks (the usage API: the token's user, the metrics, the
usage): building and compiling a queryset costs 0.3 to 1 ms of CPU each, the query itself a tenth of that.
The SQL is written once per process from the models' metadata (table and column names), so a renamed column
is still followed; what a query returns is checked against the ORM by the tests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import Field, Max, Model, Sum

_AGGREGATES = {"SUM": Sum, "MAX": Max}
# (alias, vendor, field, aggregate) -> ((converter, expression), ...): what the ORM's compiler applies to the column.
_pairs: dict[tuple, tuple] = {}


def current():
    """The default database's connection of this thread (resolved once: the ``connection`` proxy looks it up on
    every attribute)."""
    return connections[DEFAULT_DB_ALIAS]


def cursor():
    """A cursor of the default database (Django's: its errors, its logging of queries, which tests count)."""
    return current().cursor()


def quote(name: str) -> str:
    return current().ops.quote_name(name)


def _converter_pairs(field: Field, aggregate: str | None, connection) -> tuple:
    key = (connection.alias, connection.vendor, field, aggregate)
    found = _pairs.get(key)
    if found is None:
        expression = field.get_col(field.model._meta.db_table)
        if aggregate is not None:
            expression = _AGGREGATES[aggregate](expression)
        found = _pairs[key] = tuple(
            (converter, expression)
            for converter in [*connection.ops.get_db_converters(expression), *expression.get_db_converters(connection)])
    return found


def converter(field: Field, aggregate: str | None = None, connection=None) -> Callable | None:
    """A function that turns the database's value of ``field``'s column, or of its ``aggregate`` ("SUM" or "MAX" of
    the column), into the ORM's value (the converters the ORM applies to the column, or to ``Sum(field)``,
    ``Max(field)``); None when the ORM takes the driver's value as it is (most columns on PostgreSQL)."""
    connection = connection or current()
    pairs = _converter_pairs(field, aggregate, connection)
    if not pairs:
        return None

    def convert(value):
        for function, expression in pairs:
            value = function(value, expression, connection)
        return value

    return convert


def convert(value, field: Field, aggregate: str | None = None, connection=None):
    """One value read by raw SQL as the ORM would give it for ``field`` (or its ``aggregate``)."""
    function = converter(field, aggregate, connection)
    return value if function is None else function(value)


def adapt(value, field: Field, connection=None):
    """A parameter for ``field``'s column as the ORM would send it (SQLite: aware datetimes as naive UTC)."""
    return field.get_db_prep_value(value, connection or current(), prepared=False)


class ModelRows:
    """Instances of ``model`` (every concrete field loaded, as ``Model.objects`` loads them) from raw rows.

    ``columns(alias)`` is the select list to put in the SQL; ``build(row, offset)`` makes the instance from the
    row's values at ``offset`` (several models can share a row: a join)."""

    def __init__(self, model: type[Model]):
        self.model = model
        self.fields: Sequence[Field] = model._meta.concrete_fields
        self.attnames = [f.attname for f in self.fields]
        self._cache: dict[tuple, list] = {}

    def __len__(self) -> int:
        return len(self.fields)

    def columns(self, alias: str) -> str:
        return ", ".join(f"{quote(alias)}.{quote(f.column)}" for f in self.fields)

    def _converters(self, connection) -> list[tuple[int, tuple]]:
        key = (connection.alias, connection.vendor)
        found = self._cache.get(key)
        if found is None:
            found = self._cache[key] = [(i, pairs) for i, field in enumerate(self.fields)
                                        if (pairs := _converter_pairs(field, None, connection))]
        return found

    def build(self, row: Sequence, offset: int = 0, connection=None):
        connection = connection or current()
        return self._build(row, offset, self._converters(connection), connection)

    def _build(self, row: Sequence, offset: int, converters, connection):
        values = list(row[offset:offset + len(self.fields)])
        for i, pairs in converters:
            value = values[i]
            for function, expression in pairs:
                value = function(value, expression, connection)
            values[i] = value
        return self.model.from_db(connection.alias, self.attnames, values)

    def build_all(self, rows: Iterable[Sequence], connection=None) -> list:
        connection = connection or current()
        converters = self._converters(connection)
        return [self._build(row, 0, converters, connection) for row in rows]
