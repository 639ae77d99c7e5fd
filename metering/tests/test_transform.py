"""The access-log transform: the sample log's good and bad lines, and the Firehose handler's contract."""

import base64
import json
from pathlib import Path

import pytest

from metering import transform

# A sample API Gateway access log (46 lines) with the edge cases real logs have.
SAMPLE = Path(__file__).parent / "data" / "apigw_access_log_sample.jsonl"


def sample_lines() -> list[str]:
    return SAMPLE.read_text().splitlines()


def _event(lines):
    return {"records": [
        {"recordId": f"r{i}", "data": base64.b64encode(line.encode()).decode()} for i, line in enumerate(lines)
    ]}


def test_sample_log_good_and_bad_lines():
    results = [transform.transform_record(line) for line in sample_lines()]
    assert len(results) == 46
    ok = [r for r in results if r[0]]
    failed = [i + 1 for i, r in enumerate(results) if not r[0]]
    # 43: the 504 with an unquoted "-"; 44: request_time "yesterday"; 46: not JSON.
    assert failed == [43, 44, 46]
    assert len(ok) == 43
    unauthenticated = results[41][1]
    assert unauthenticated["user"] is None and unauthenticated["tenant_id"] is None
    assert unauthenticated["status"] == 401
    older = results[44][1]
    assert older["tenant_id"] is None and older["user"] == "5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a809"
    assert "not JSON" in results[45][2]
    assert "request_time" in results[43][2]


def test_time_is_converted_in_utc(monkeypatch):
    monkeypatch.setenv("TZ", "America/New_York")
    import time
    time.tzset()
    try:
        ok, row, _ = transform.transform_record(sample_lines()[0])
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    assert ok
    # 1793491200823 ms is 2026-11-01T00:00:00.823Z.
    assert row["request_time"] == "2026-11-01T00:00:00Z"
    assert row["status"] == 200 and isinstance(row["response_length"], int)
    assert list(row) == list(transform.COLUMNS)


GOOD = {"request_id": "a", "ip": "192.0.2.1", "user": "u1", "request_time": 1793491200823, "http_method": "GET",
        "resource_path": "/random/strings", "status": 200, "protocol": "HTTP/1.1", "response_length": 10,
        "tenant_id": "t-acme"}


@pytest.mark.parametrize("change, fragment", [
    ({"request_id": None}, "request_id"),
    ({"ip": 5}, "ip"),
    ({"request_time": "1793491200823"}, "request_time"),
    ({"request_time": 1793491200.5}, "request_time"),
    ({"request_time": True}, "request_time"),
    ({"request_time": 1793491200}, "plausible"),  # seconds, not milliseconds
    ({"status": "OK"}, "status"),
    ({"status": 99}, "status"),
    ({"response_length": "-"}, "response_length"),
    ({"response_length": -1}, "response_length"),
    ({"user": 12}, "user"),
    ({"tenant_id": ["t"]}, "tenant_id"),
])
def test_mistyped_fields_fail(change, fragment):
    ok, row, error = transform.transform_record(json.dumps({**GOOD, **change}))
    assert not ok and row is None and fragment in error


@pytest.mark.parametrize("field", ["request_id", "ip", "request_time", "http_method", "resource_path", "status",
                                   "protocol", "response_length"])
def test_missing_required_field_fails(field):
    doc = dict(GOOD)
    del doc[field]
    ok, _, error = transform.transform_record(json.dumps(doc))
    assert not ok and field in error


def test_status_as_digit_string_is_accepted_and_bytes_input():
    ok, row, _ = transform.transform_record(json.dumps({**GOOD, "status": "429"}).encode())
    assert ok and row["status"] == 429


@pytest.mark.parametrize("raw", ["[1, 2]", "null", "\"text\"", b"\xff\xfe", ""])
def test_non_object_records_fail(raw):
    assert transform.transform_record(raw)[0] is False


def test_handler_answers_every_record_and_fails_them_one_by_one(monkeypatch):
    monkeypatch.setenv("IcebergDatabaseName", "db1")
    monkeypatch.setenv("IcebergTableName", "t1")
    monkeypatch.delenv("IcebergTableUniqueKeys", raising=False)
    lines = sample_lines()
    event = _event(lines)
    event["records"].append({"recordId": "not-b64", "data": "%%%"})
    out = transform.handler(event, None)["records"]
    assert [r["recordId"] for r in out] == [r["recordId"] for r in event["records"]]
    results = [r["result"] for r in out]
    assert results.count("Ok") == 43 and results.count("ProcessingFailed") == 4
    good = out[0]
    assert good["metadata"] == {"otfMetadata": {"destinationDatabaseName": "db1", "destinationTableName": "t1",
                                                "operation": "insert"}}
    payload = json.loads(base64.b64decode(good["data"]))
    assert payload["request_time"] == "2026-11-01T00:00:00Z" and payload["tenant_id"] == "t-globex"
    failed = out[45]
    assert failed["result"] == "ProcessingFailed" and failed["data"] == event["records"][45]["data"]


def test_handler_operation_is_update_with_unique_keys(monkeypatch):
    monkeypatch.setenv("IcebergTableUniqueKeys", "request_id")
    out = transform.handler(_event([json.dumps(GOOD)]))["records"]
    assert out[0]["metadata"]["otfMetadata"]["operation"] == "update"
    assert out[0]["metadata"]["otfMetadata"]["destinationDatabaseName"] == transform.DEFAULT_DATABASE
