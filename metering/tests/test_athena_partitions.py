"""A sync through Athena scans only the day partitions of its window: every read of the lake's tables in
the SQL it sends filters on the tables' partition source column (day(request_time) for the access log,
day(timestamp) for posted events) with a range inside the window's days, the column left bare so
that Athena turns the range into partition and file pruning."""

from datetime import UTC, datetime, timedelta

import boto3
import sqlglot
from sqlglot import exp

from metering.lake import queries
from metering.services.sync import usage_sync
from metering.tests.test_athena import REGION, START, athena, fast_lake  # noqa: F401 (fixture)
from tenants.models import Metric, TenantUser
from tenants.tests.factories import TenantFactory, import_sample_plans

LOG_TABLE, EVENTS_TABLE = "restapi_access_log_iceberg", "events"
PARTITION_COLUMN = {LOG_TABLE: "request_time", EVENTS_TABLE: "timestamp"}


def _literal_time(node: exp.Expression) -> datetime | None:
    if isinstance(node, exp.Cast) and isinstance(node.this, exp.Literal):
        return datetime.fromisoformat(node.this.this).replace(tzinfo=UTC)
    return None


def scans(sql: str) -> list[tuple[str, datetime | None, datetime | None]]:
    """Each read of a lake table in ``sql`` (Athena's dialect): (table, lowest and highest bound on its
    partition column among the AND-ed conditions of the SELECT that reads it; None where there is none)."""
    found = []
    for table in sqlglot.parse_one(sql, read="athena").find_all(exp.Table):
        if table.name not in PARTITION_COLUMN:
            continue  # a CTE's name, or the VALUES of the users
        select = table.find_ancestor(exp.Select)
        where = select.args.get("where")
        conditions = list(where.this.flatten()) if where and isinstance(where.this, exp.And) else (
            [where.this] if where else [])
        conditions = [c.unnest() for c in conditions]
        flat = []
        for condition in conditions:  # (a AND b) AND c: parentheses of the window's own AND
            flat.extend(c.unnest() for c in (condition.flatten() if isinstance(condition, exp.And) else [condition]))
        low = high = None
        for condition in flat:
            column = condition.this
            if not (isinstance(column, exp.Column) and column.name == PARTITION_COLUMN[table.name]):
                continue
            bound = _literal_time(condition.expression)
            if isinstance(condition, exp.GTE) and bound:
                low = bound
            elif isinstance(condition, exp.LT) and bound:
                high = bound
        found.append((table.name, low, high))
    return found


def _midnight(value: datetime) -> datetime:
    return value.replace(hour=0, minute=0, second=0, microsecond=0)


def test_every_query_of_a_sync_reads_only_the_days_of_its_window(athena, db, settings):  # noqa: F811
    settings.LAKE_EVENTS_TABLE = EVENTS_TABLE
    boto3.client("glue", region_name=REGION).create_table(DatabaseName="restapi_access_log_iceberg_db", TableInput={
        "Name": EVENTS_TABLE, "TableType": "EXTERNAL_TABLE", "Parameters": {"table_type": "ICEBERG"},
        "StorageDescriptor": {"Columns": [{"Name": "transaction_id", "Type": "string"}],
                              "Location": "s3://lake-bucket/events/"}})
    import_sample_plans()
    tenant = TenantFactory(slug="acme")
    TenantUser.objects.create(tenant=tenant, username="old-format-user", email="ops@acme.example")  # a known user: the access-log queries attribute rows without tenant_id
    Metric.objects.create(code="active_ips", name="Active IPs", aggregation="unique_count", field="ip")
    Metric.objects.create(code="tokens", name="Tokens", event="llm.completion", aggregation="sum",
                          field="properties.tokens")
    Metric.objects.create(code="seats", name="Seats", event="seats.changed", aggregation="latest",
                          field="properties.seats")
    start, end = START + timedelta(hours=22), START + timedelta(hours=25)  # 3 hours over midnight: 2 days

    usage_sync(start=start, end=end, lake=fast_lake())

    sent = [execution.query for execution in athena.executions.values()]
    assert len(sent) >= 4  # access-log hours, events sums, events latest, the days' distinct counts, ...
    read = [scan for sql in sent for scan in scans(sql)]
    assert {table for table, _, _ in read} == {LOG_TABLE, EVENTS_TABLE}
    days = (_midnight(start), _midnight(end) + timedelta(days=1))
    month = (START.replace(day=1), datetime(2026, 12, 1, tzinfo=UTC))
    for table, low, high in read:
        assert low is not None and high is not None, f"a read of {table} without a range on its partition column"
        # The window's hours, its whole days (their distinct counts), or the month of a day that gained a value.
        assert (low, high) in {(start, end), days, month} or days[0] <= low < high <= days[1], (table, low, high)
    assert sum(1 for _, low, high in read if (low, high) == month) <= 1 * len({t for t, _, _ in read})
    # The hourly queries read the window's hours only: 2 day partitions of the 30 in the month.
    hourly = [scan for scan in scans(sent[0])]
    assert hourly and all((low, high) == (start, end) for _, low, high in hourly)


def test_the_events_table_is_filtered_by_its_own_partition_column():
    """The events relation renames timestamp to request_time for the shared queries; the range is also put
    on timestamp itself inside it, so the scan is pruned without relying on the engine to see through the
    rename."""
    metric = queries.MetricQuery(code="tokens", aggregation="sum", field="properties.tokens", event="llm.completion")
    end = START + timedelta(hours=3)
    relation = queries.events_relation(EVENTS_TABLE, "restapi_access_log_iceberg_db")
    for query in (queries.hourly_usage_query([metric], start=START, end=end, table=relation),
                  queries.count_query(start=START, end=end, table=relation)):
        sql = queries.render(query, "athena")
        assert "\"timestamp\" >= CAST('2026-11-01 00:00:00.000000' AS TIMESTAMP)" in sql
        assert all((low, high) == (START, end) for _, low, high in scans(sql)) and scans(sql)
    # The relation as given (without a window) is unchanged: it is shared by every query of a lake.
    assert "WHERE" not in queries.render(relation, "athena")
