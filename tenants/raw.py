"""Raw SQL on a hot path, with the ORM's types: model instances and values from a cursor's rows, converted exactly
as the ORM converts them (the backend's and the field's converters: SQLite's dates, decimals and booleans, JSON).

For the few queries every request of a busy endpoint asks (the usage API: the token's user, the metrics, the
usage): building and compiling a queryset costs 0.3 to 1 ms of CPU each, the query itself a tenth of that.
The SQL is written once per process from the models' metadata (table and column names), so a renamed column
is still followed; what a query returns is checked against the ORM by the tests.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Sequence

from django.db import connection as default_connection
from django.db.models import Field, Max, Model, Sum

_AGGREGATES = {"SUM": Sum, "MAX": Max}
_converters: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # a connection's ops -> {field: converters}


def quote(name: str, connection=None) -> str:
    return (connection or default_connection).ops.quote_name(name)


def field_converters(field: Field, connection=None, aggregate: str | None = None) -> tuple:
    """(converter, expression) pairs that turn the database's value of ``field``'s column, or of its ``aggregate``
    ("SUM" or "MAX" of the column), into the ORM's value: the converters the ORM's compiler applies to the column
    (or to ``Sum(field)``, ``Max(field)``)."""
    connection = connection or default_connection
    known = _converters.setdefault(connection.ops, {})
    found = known.get((field, aggregate))
    if found is None:
        expression = field.get_col(field.model._meta.db_table)
        if aggregate is not None:
            expression = _AGGREGATES[aggregate](expression)
        found = known[(field, aggregate)] = tuple(
            (converter, expression)
            for converter in [*connection.ops.get_db_converters(expression), *expression.get_db_converters(connection)])
    return found


def convert(value, field: Field, connection=None, aggregate: str | None = None):
    """A value read by raw SQL as the ORM would give it for ``field`` (or its ``aggregate``)."""
    connection = connection or default_connection
    for converter, expression in field_converters(field, connection, aggregate):
        value = converter(value, expression, connection)
    return value


def adapt(value, field: Field, connection=None):
    """A parameter for ``field``'s column as the ORM would send it (SQLite: aware datetimes as naive UTC)."""
    connection = connection or default_connection
    return field.get_db_prep_value(value, connection, prepared=False)


class ModelRows:
    """Instances of ``model`` (every concrete field loaded, as ``Model.objects`` loads them) from raw rows.

    ``columns(alias)`` is the select list to put in the SQL; ``build(row, offset)`` makes the instance from the
    row's values at ``offset`` (several models can share a row: a join)."""

    def __init__(self, model: type[Model]):
        self.model = model
        self.fields: Sequence[Field] = model._meta.concrete_fields
        self.attnames = [f.attname for f in self.fields]

    def __len__(self) -> int:
        return len(self.fields)

    def columns(self, alias: str, connection=None) -> str:
        return ", ".join(f"{quote(alias, connection)}.{quote(f.column, connection)}" for f in self.fields)

    def build(self, row: Sequence, offset: int = 0, connection=None):
        connection = connection or default_connection
        values = []
        for i, field in enumerate(self.fields):
            value = row[offset + i]
            for converter, col in field_converters(field, connection):
                value = converter(value, col, connection)
            values.append(value)
        return self.model.from_db(connection.alias, self.attnames, values)

    def build_all(self, rows: Iterable[Sequence], connection=None) -> list:
        return [self.build(row, 0, connection) for row in rows]
