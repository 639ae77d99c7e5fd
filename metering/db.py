"""Database expressions shared by the usage sync and the dashboards' reads."""

from __future__ import annotations

from django.db.models import DateField, Func


class UTCDay(Func):
    """The UTC calendar day of a datetime column, as a date.

    PostgreSQL truncates natively. On SQLite Django's TruncDay calls a Python function per row;
    datetimes are stored there as UTC text ('YYYY-MM-DD HH:MM:SS'), so the first ten characters are
    the day, which SQLite computes natively (about ten times faster over a month of hourly rows)."""

    output_field = DateField()

    def as_sql(self, compiler, connection, **extra):
        return self.as_sql_template(compiler, connection, "((%(expressions)s) AT TIME ZONE 'UTC')::date")

    def as_sqlite(self, compiler, connection, **extra):
        return self.as_sql_template(compiler, connection, "substr(%(expressions)s, 1, 10)")

    def as_sql_template(self, compiler, connection, template):
        return super().as_sql(compiler, connection, template=template)
