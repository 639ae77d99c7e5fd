"""The Athena lake under moto: the SQL it sends, canned results through the sync, a FAILED query, a timeout."""

from datetime import UTC, datetime
from decimal import Decimal

import boto3
import pytest
import sqlglot
from moto import mock_aws
from moto.athena import models as athena_models
from moto.athena.models import QueryResults
from moto.core import DEFAULT_ACCOUNT_ID

from metering.lake import LakeError, LakeTimeout, get_lake, queries
from metering.lake.athena import AthenaLake
from metering.models import HourlyUsage, SyncOutcome, SyncRun, UnattributedUsage
from metering.services.sync import usage_sync
from tenants.models import Metric
from tenants.tests.factories import TenantFactory, import_sample_plans

REGION = "us-east-1"
START, END = datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 1, 3, tzinfo=UTC)


@pytest.fixture
def athena(settings, monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    settings.LAKE_BACKEND = "athena"
    settings.AWS_REGION = REGION
    settings.ATHENA_WORKGROUP = "metering"
    settings.ATHENA_OUTPUT_LOCATION = "s3://athena-results-bucket/portal/"
    settings.USAGE_SYNC_RETRY_DELAY = 0
    with mock_aws():
        boto3.client("s3", region_name=REGION).create_bucket(Bucket="athena-results-bucket")
        boto3.client("athena", region_name=REGION).create_work_group(
            Name="metering", Configuration={"ResultConfiguration": {"OutputLocation": "s3://athena-results-bucket/wg/"}})
        create_glue_table()
        yield athena_models.athena_backends[DEFAULT_ACCOUNT_ID][REGION]


def create_glue_table(database="restapi_access_log_iceberg_db", table="restapi_access_log_iceberg"):
    """The Iceberg table as the CDK app's catalog stack registers it in Glue."""
    glue = boto3.client("glue", region_name=REGION)
    glue.create_database(DatabaseInput={"Name": database})
    glue.create_table(DatabaseName=database, TableInput={
        "Name": table, "TableType": "EXTERNAL_TABLE", "Parameters": {"table_type": "ICEBERG"},
        "StorageDescriptor": {"Columns": [{"Name": "request_id", "Type": "string"},
                                          {"Name": "request_time", "Type": "timestamp"}],
                              "Location": "s3://lake-bucket/restapi_access_log_iceberg/"},
    })


def fast_lake(**overrides):
    lake = AthenaLake.from_settings()
    lake.poll_interval = 0.01
    for key, value in overrides.items():
        setattr(lake, key, value)
    return lake


def queue_rows(backend, rows, columns):
    backend.query_results_queue.append(QueryResults(
        rows=[{"Data": [{"VarCharValue": name} for name, _ in columns]}]
        + [{"Data": [{"VarCharValue": None if v is None else str(v)} if v is not None else {} for v in row]}
           for row in rows],
        column_info=[{"Name": name, "Type": kind, "Label": name, "Nullable": "UNKNOWN", "CatalogName": "hive",
                      "SchemaName": "", "TableName": "", "Precision": 19, "Scale": 0, "CaseSensitive": False}
                     for name, kind in columns],
    ))


HOURLY_COLUMNS = [("tenant_id", "varchar"), ("user", "varchar"), ("hour", "timestamp"), ("m0", "bigint"),
                  ("m1", "bigint")]


def test_get_lake_builds_athena_from_settings(athena):
    lake = get_lake()
    assert isinstance(lake, AthenaLake)
    assert (lake.workgroup, lake.output_location, lake.database, lake.table_name) == (
        "metering", "s3://athena-results-bucket/portal/", "restapi_access_log_iceberg_db", "restapi_access_log_iceberg")


def test_sends_the_rendered_query_to_the_workgroup(athena):
    queue_rows(athena, [("t-acme", None, "2026-11-01 00:00:00.000", 5, 1234)], HOURLY_COLUMNS)
    metric = queries.MetricQuery(code="api_calls", aggregation="count", filters=(("status", ("2xx",)),))
    out = queries.MetricQuery(code="out", aggregation="sum", field="response_length")
    rows = fast_lake().hourly_usage(metrics=[metric, out], start=START, end=END)
    assert rows[0].tenant_id == "t-acme" and rows[0].values == (Decimal(5), Decimal(1234))
    assert rows[0].hour == START
    (execution,) = athena.executions.values()
    expected = queries.render(queries.hourly_usage_query(
        [metric, out], start=START, end=END, table="restapi_access_log_iceberg",
        database="restapi_access_log_iceberg_db"), "athena")
    assert execution.query == expected
    assert execution.workgroup.name == "metering"
    assert execution.config["OutputLocation"].startswith("s3://athena-results-bucket/portal/")
    assert execution.context["Database"] == "restapi_access_log_iceberg_db"
    # What Athena (Trino) gets: quoted identifiers, a qualified table, timestamp literals, one row per request_id.
    assert '"restapi_access_log_iceberg_db"."restapi_access_log_iceberg"' in expected
    assert "CAST('2026-11-01 00:00:00.000000' AS TIMESTAMP)" in expected
    assert "GROUP BY \"request_id\"" in expected and "ARBITRARY(" in expected
    sqlglot.parse_one(expected, read="athena")


def test_sync_through_athena(athena, db):
    import_sample_plans()
    acme = TenantFactory(slug="t-acme")
    metrics = list(Metric.objects.order_by("pk"))
    assert [m.code for m in metrics] == ["api_calls", "data_out_mb"]
    queue_rows(athena, [
        ("t-acme", None, "2026-11-01 00:00:00.000", 7, 7000),
        ("t-acme", None, "2026-11-01 01:00:00.000", 3, 300),
        ("t-gone", None, "2026-11-01 01:00:00.000", 2, 20),
        (None, "nobody", "2026-11-01 02:00:00.000", 1, 10),
    ], HOURLY_COLUMNS)
    run = usage_sync(start=START, end=END, lake=fast_lake())
    assert run.outcome == SyncOutcome.SUCCEEDED and run.rows_read == 4
    assert sum(r.value for r in HourlyUsage.objects.filter(tenant=acme, metric__code="api_calls")) == 10
    assert set(UnattributedUsage.objects.values_list("tenant_key", "user_key").distinct()) == {
        ("t-gone", ""), ("", "nobody")}


def test_a_failed_query_raises_and_the_sync_keeps_previous_rows(athena, db, monkeypatch):
    import_sample_plans()
    TenantFactory(slug="t-acme")
    queue_rows(athena, [("t-acme", None, "2026-11-01 00:00:00.000", 7, 7000)], HOURLY_COLUMNS)
    usage_sync(start=START, end=END, lake=fast_lake())
    before = list(HourlyUsage.objects.values_list("tenant_id", "metric_id", "hour", "value").order_by("pk"))

    monkeypatch.setattr(athena_models.Execution, "status", property(lambda self: "FAILED", lambda self, v: None))
    with pytest.raises(LakeError) as failure:
        fast_lake().count_requests(start=START, end=END)
    assert not isinstance(failure.value, LakeTimeout)
    with pytest.raises(LakeError):
        usage_sync(start=START, end=END, lake=fast_lake(), attempts=2, retry_delay=0)
    run = SyncRun.objects.order_by("-pk").first()
    assert run.outcome == SyncOutcome.FAILED and run.attempts == 2 and "Athena query failed" in run.error
    assert list(HourlyUsage.objects.values_list("tenant_id", "metric_id", "hour", "value").order_by("pk")) == before


def test_a_query_that_runs_too_long_is_cancelled(athena, db, monkeypatch):
    stopped = []
    monkeypatch.setattr(athena_models.Execution, "status",
                        property(lambda self: "RUNNING", lambda self, value: stopped.append(value)))
    lake = fast_lake(timeout=0.2)
    began = datetime.now()
    with pytest.raises(LakeTimeout) as timeout:
        lake.count_requests(start=START, end=END)
    assert (datetime.now() - began).total_seconds() < 5
    assert "still RUNNING" in str(timeout.value)
    assert stopped == ["CANCELLED"]  # StopQueryExecution was sent


def test_events_metrics_query_the_events_table_and_sync(athena, db, settings):
    """Events metrics read the deployed events table (LAKE_EVENTS_TABLE) in Athena's dialect: the sum and
    count in one query, the latest gauge in another; both answers reach the hourly rows."""
    settings.LAKE_EVENTS_TABLE = "events"
    create_glue_table(database="restapi_access_log_iceberg_db_events", table="unused")  # another database: ignored
    glue = boto3.client("glue", region_name=REGION)
    glue.create_table(DatabaseName="restapi_access_log_iceberg_db", TableInput={
        "Name": "events", "TableType": "EXTERNAL_TABLE", "Parameters": {"table_type": "ICEBERG"},
        "StorageDescriptor": {"Columns": [{"Name": "transaction_id", "Type": "string"}],
                              "Location": "s3://lake-bucket/events/"}})
    tenant = TenantFactory(slug="acme")
    tokens = Metric.objects.create(code="tokens", name="Tokens", event="llm.completion", aggregation="sum",
                                   field="properties.tokens")
    seats = Metric.objects.create(code="seats", name="Seats", event="seats.changed", aggregation="latest",
                                  field="properties.seats")
    queue_rows(athena, [("acme", None, "2026-11-01 01:00:00.000", "4200.5")],
               [("tenant_id", "varchar"), ("user", "varchar"), ("hour", "timestamp"), ("m0", "decimal")])
    queue_rows(athena, [("acme", None, "2026-11-01 02:00:00.000", "0")],
               [("tenant_id", "varchar"), ("user", "varchar"), ("hour", "timestamp"), ("m0", "decimal")])
    run = usage_sync(start=START, end=END, lake=fast_lake())
    assert run.outcome == SyncOutcome.SUCCEEDED
    sums, latest = [e.query for e in athena.executions.values()]
    assert 'FROM "restapi_access_log_iceberg_db"."events"' in sums and "JSON_EXTRACT_SCALAR" in sums
    assert "\"code\" = 'llm.completion'" in sums and "TRY_CAST" in sums
    assert "MAX(\"request_time\") OVER (PARTITION BY" in latest and "'seats.changed'" in latest
    for sql in (sums, latest):
        sqlglot.parse_one(sql, read="athena")  # well-formed for Athena's dialect
    rows = {(r.metric.code, r.hour.hour): r.value for r in HourlyUsage.objects.filter(tenant=tenant)}
    assert rows == {("tokens", 1): Decimal("4200.5"), ("seats", 2): Decimal(0)}  # a gauge at 0 is kept
    assert tokens.pk and seats.pk


def test_a_missing_events_table_is_an_error_naming_its_setting(athena, db, settings):
    settings.LAKE_EVENTS_TABLE = "events"
    metric = queries.MetricQuery(code="tokens", aggregation="sum", field="properties.tokens", event="llm.completion")
    with pytest.raises(LakeError, match="restapi_access_log_iceberg_db.events does not exist .*LAKE_EVENTS_TABLE"):
        fast_lake().hourly_usage(metrics=[metric], start=START, end=END)
