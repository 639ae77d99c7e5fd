"""The local lake and the usage queries: the Iceberg table, DuckDB over the planned files, and query safety."""

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest
import sqlglot
from sqlglot import exp

from metering.lake import get_lake, queries
from metering.lake.local import LocalLake
from metering.transform import transform_record

SAMPLE = Path(__file__).parent / "data" / "apigw_access_log_sample.jsonl"
DAY = (datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 2, tzinfo=UTC))


def sample_records():
    return [row for ok, row, _ in (transform_record(line) for line in SAMPLE.read_text().splitlines()) if ok]


@pytest.fixture
def lake(tmp_path):
    return LocalLake(warehouse=tmp_path / "lake", database="restapi_access_log_iceberg_db",
                     table="restapi_access_log_iceberg")


def metric(code, aggregation, field=None, **filters):
    return queries.MetricQuery.of(type("M", (), {"code": code, "aggregation": aggregation, "field": field,
                                                 "filters": filters})())


def test_get_lake_is_chosen_by_setting(settings, tmp_path):
    settings.LAKE_BACKEND = "local"
    settings.LAKE_WAREHOUSE_DIR = str(tmp_path)
    assert isinstance(get_lake(), LocalLake)
    settings.LAKE_BACKEND = "nope"
    from django.core.exceptions import ImproperlyConfigured
    with pytest.raises(ImproperlyConfigured):
        get_lake()


def test_table_is_partitioned_by_day_and_has_the_columns(lake):
    table = lake.ensure_table()  # as a writer (the sink) creates it
    assert [f.name for f in table.schema().fields] == list(queries.COLUMNS)
    assert str(table.spec().fields[0].transform) == "day"
    lake.append(sample_records())
    # A second append in another day lands in another partition folder.
    late = dict(sample_records()[0], request_id="late-1", request_time="2026-11-02T10:00:00Z")
    lake.append([late])
    files = lake.data_files()
    assert len(files) == 2 and any("request_time_day=2026-11-02" in f for f in files)
    # Partition pruning: the first day's window plans only the first day's file.
    assert len(lake.data_files(start=DAY[0], end=DAY[1])) == 1


def test_queries_match_a_direct_duckdb_count_of_the_same_files(lake):
    lake.append(sample_records())
    ms = [metric("calls", "count", status=["2xx"]), metric("out", "sum", "response_length"),
          metric("ips", "unique_count", "ip"), metric("biggest", "max", "response_length")]
    rows = lake.hourly_usage(metrics=ms, start=DAY[0], end=DAY[1])
    files = lake.data_files(start=DAY[0], end=DAY[1])
    direct = duckdb.sql(
        "SELECT count(*), sum(response_length), max(response_length) FROM "
        "(SELECT DISTINCT * FROM read_parquet($files))", params={"files": files}).fetchall()[0]
    direct_ok = duckdb.sql(
        "SELECT count(DISTINCT request_id) FROM read_parquet($files) WHERE status BETWEEN 200 AND 299",
        params={"files": files}).fetchall()[0][0]
    assert sum(r.values[0] for r in rows) == direct_ok
    assert sum(r.values[1] for r in rows) == direct[1]
    assert max(r.values[3] for r in rows) == direct[2]
    # 43 good lines, one of them a duplicate of line 6: 42 requests.
    assert lake.count_requests(start=DAY[0], end=DAY[1]) == 42
    assert lake.count_requests(start=DAY[0], end=DAY[1], distinct=False) == 43
    by_key = {(r.tenant_id, r.user): r for r in rows}
    assert (None, "5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a809") in by_key  # no tenant_id: kept with its user
    assert (None, None) in by_key  # the 401 with neither


def test_duplicates_count_once_for_every_aggregation(lake):
    records = sample_records()
    lake.append(records)
    lake.append(records[:5])  # Firehose redelivered a batch
    usage = lake.period_usage(metrics=[metric("calls", "count"), metric("out", "sum", "response_length")],
                              start=DAY[0], end=DAY[1], tenant_id="t-acme")
    acme = {r["request_id"]: r for r in records if r["tenant_id"] == "t-acme"}
    assert usage == {"calls": Decimal(len(acme)), "out": Decimal(sum(r["response_length"] for r in acme.values()))}


def test_period_usage_includes_records_attributed_by_user(lake):
    lake.append(sample_records())
    ms = [metric("calls", "count")]
    without = lake.period_usage(metrics=ms, start=DAY[0], end=DAY[1], tenant_id="t-globex")
    with_user = lake.period_usage(metrics=ms, start=DAY[0], end=DAY[1], tenant_id="t-globex",
                                  usernames=["5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a809"])
    assert with_user["calls"] == without["calls"] + 1


def test_empty_lake_answers_zero(lake):
    lake.ensure_table()  # a lake that exists, with no record yet
    assert lake.hourly_usage(metrics=[metric("calls", "count")], start=DAY[0], end=DAY[1]) == []
    assert lake.period_usage(metrics=[metric("calls", "count")], start=DAY[0], end=DAY[1],
                             tenant_id="x") == {"calls": Decimal(0)}


def test_filters_render_in_both_dialects():
    m = metric("calls", "count", status=["2xx", "429"], http_method=["get", "POST"], resource_path_prefix=["/random"])
    q = queries.hourly_usage_query([m], start=DAY[0], end=DAY[1], table="t", database="db")
    athena = queries.render(q, "athena")
    assert '"db"."t"' in athena and "BETWEEN 200 AND 299" in athena and "'GET', 'POST'" in athena
    assert "SUBSTR(" in athena
    assert "SUBSTRING(" in queries.render(q, "duckdb")
    # Both render to SQL that parses back in their dialect.
    for dialect in ("athena", "duckdb"):
        sqlglot.parse_one(queries.render(q, dialect), read=dialect)


def _shape(tree):
    """The query's tree with every literal blanked: what a filter value must not be able to change."""
    shape = []
    for node in tree.walk():
        shape.append(type(node).__name__ if not isinstance(node, exp.Literal) else "Literal")
    return shape


HOSTILE = ["/x' OR '1'='1", "/a'; DROP TABLE t; --", "/%", "/_", "/\\'", '/"); SELECT 1; --', "/é\u0000"]


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_filter_values_cannot_change_the_query_shape(lake, value):
    lake.append(sample_records())
    benign = metric("calls", "count", resource_path_prefix=["/random"], http_method=["GET"])
    hostile = metric("calls", "count", resource_path_prefix=[value], http_method=[value])
    q1 = queries.hourly_usage_query([benign], start=DAY[0], end=DAY[1], table="t")
    q2 = queries.hourly_usage_query([hostile], start=DAY[0], end=DAY[1], table="t")
    assert _shape(q1) == _shape(q2)
    for dialect in ("athena", "duckdb"):
        rendered = queries.render(q2, dialect)
        assert _shape(sqlglot.parse_one(rendered, read=dialect)) == _shape(sqlglot.parse_one(
            queries.render(q1, dialect), read=dialect))
    # And it runs, matching nothing.
    rows = lake.hourly_usage(metrics=[hostile], start=DAY[0], end=DAY[1])
    assert sum(r.values[0] for r in rows) == 0


@pytest.mark.parametrize("bad", [
    {"aggregation": "sum", "field": "ip"},  # not numeric
    {"aggregation": "unique_count", "field": "ip; DROP TABLE t"},
    {"aggregation": "max", "field": "password"},
    {"aggregation": "median", "field": "status"},
    {"aggregation": "count", "filters": {"status": ["2xx OR 1=1"]}},
    {"aggregation": "count", "filters": {"tenant_id": ["x"]}},
])
def test_bad_metric_definitions_are_refused(bad):
    m = type("M", (), {"code": "m", "field": None, "filters": {}, **bad})()
    with pytest.raises(queries.QueryError):
        queries.hourly_usage_query([m], start=DAY[0], end=DAY[1], table="t")


def test_naive_bounds_are_refused():
    with pytest.raises(queries.QueryError):
        queries.count_query(start=datetime(2026, 11, 1), end=datetime(2026, 11, 2), table="t")


def test_records_round_trip_through_the_table(lake):
    records = sample_records()
    lake.append(records)
    arrow = lake.table().scan().to_arrow()
    assert arrow.num_rows == len(records)
    first = sorted(arrow.to_pylist(), key=lambda r: r["request_time"])[0]
    assert first["request_time"] == datetime(2026, 11, 1, 0, 0, 0)
    assert json.dumps(first, default=str)


def test_hourly_duplicates_count_once_and_keep_max_and_distinct(lake):
    records = sample_records()
    lake.append(records)
    once = lake.hourly_usage(metrics=[metric("calls", "count", status=["2xx"]), metric("out", "sum", "response_length"),
                                      metric("ips", "unique_count", "ip"), metric("top", "max", "response_length")],
                             start=DAY[0], end=DAY[1])
    lake.append(records[:10])
    lake.append(records[:3])  # some requests now have three copies
    again = lake.hourly_usage(metrics=[metric("calls", "count", status=["2xx"]), metric("out", "sum", "response_length"),
                                       metric("ips", "unique_count", "ip"), metric("top", "max", "response_length")],
                              start=DAY[0], end=DAY[1])
    key = lambda rows: sorted((r.tenant_id or "", r.user or "", r.hour, r.values) for r in rows)  # noqa: E731
    assert key(again) == key(once)
