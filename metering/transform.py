"""The access-log transform: the Firehose data-transformation Lambda handler and the local sink's function.

Standard library only: infra/ packages exactly this file as the Lambda (handler ``transform.handler``),
configured by the environment variables of the AWS sample (``IcebergDatabaseName``,
``IcebergTableName``, ``IcebergTableUniqueKeys``).

Unlike the sample, every record is validated against the access-log schema. A record that is not
JSON, lacks a field, has a field of the wrong type or a timestamp that is not epoch milliseconds is
answered ``ProcessingFailed`` on its own (Firehose then writes it to the error prefix); the rest of
the batch goes through. Time is converted in UTC explicitly, never in the Lambda's local zone.
"""

from __future__ import annotations

import base64
import json
import os
from datetime import UTC, datetime

DEFAULT_DATABASE = "restapi_access_log_iceberg_db"
DEFAULT_TABLE = "restapi_access_log_iceberg"

# The table's columns, in order (the seed's, plus tenant_id).
COLUMNS = (
    "request_id", "ip", "user", "request_time", "http_method", "resource_path", "status", "protocol",
    "response_length", "tenant_id",
)
_REQUIRED_STRINGS = ("request_id", "ip", "http_method", "resource_path", "protocol")
# API Gateway writes "-" for a context variable it has no value for.
_ABSENT = "-"
# request_time bounds: 2000-01-01 .. 2100-01-01 in epoch ms; outside them it is not epoch ms.
_MIN_MS = 946_684_800_000
_MAX_MS = 4_102_444_800_000
# The timestamp form the sample's Firehose-to-Iceberg path is known to accept.
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


class RecordError(ValueError):
    """A record that does not match the access-log schema."""


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _optional_string(doc: dict, key: str) -> str | None:
    value = doc.get(key)
    if value is None or value == _ABSENT or value == "":
        return None
    if not isinstance(value, str):
        raise RecordError(f"{key}: expected a string, got {type(value).__name__}")
    return value


def parse_record(doc) -> dict:
    """Validate one decoded access-log document and return the table row (request_time a UTC datetime)."""
    if not isinstance(doc, dict):
        raise RecordError(f"expected a JSON object, got {type(doc).__name__}")
    row: dict = {}
    for key in _REQUIRED_STRINGS:
        value = doc.get(key)
        if key not in doc:
            raise RecordError(f"{key}: missing")
        if not isinstance(value, str) or not value or value == _ABSENT:
            raise RecordError(f"{key}: expected a non-empty string, got {value!r}")
        row[key] = value
    row["user"] = _optional_string(doc, "user")
    row["tenant_id"] = _optional_string(doc, "tenant_id")

    if "request_time" not in doc:
        raise RecordError("request_time: missing")
    ms = doc["request_time"]
    if not _is_int(ms):
        raise RecordError(f"request_time: expected epoch milliseconds (an integer), got {ms!r}")
    if not _MIN_MS <= ms < _MAX_MS:
        raise RecordError(f"request_time: {ms} is not a plausible epoch-milliseconds timestamp")
    row["request_time"] = datetime.fromtimestamp(ms / 1000, tz=UTC)

    if "status" not in doc:
        raise RecordError("status: missing")
    status = doc["status"]
    # The log writes a number; a digit string (the seed table's column type) is accepted too.
    if isinstance(status, str) and status.isdigit():
        status = int(status)
    if not _is_int(status) or not 100 <= status <= 599:
        raise RecordError(f"status: expected an HTTP status code, got {doc['status']!r}")
    row["status"] = status

    if "response_length" not in doc:
        raise RecordError("response_length: missing")
    length = doc["response_length"]
    if not _is_int(length) or length < 0:
        raise RecordError(f"response_length: expected a non-negative integer, got {length!r}")
    row["response_length"] = length
    return {key: row[key] for key in COLUMNS}


def transform_record(raw: bytes | str) -> tuple[bool, dict | None, str | None]:
    """Transform one raw access-log line: ``(True, record, None)`` or ``(False, None, reason)``.

    The record is what Firehose delivers to the Iceberg table: the table's columns with
    ``request_time`` as a UTC ISO string (``2026-11-01T00:00:00Z``), ``status`` and
    ``response_length`` as ints, and ``user``/``tenant_id`` None when the log has ``-``.
    """
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes | bytearray) else raw
        doc = json.loads(text)
    except (UnicodeDecodeError, ValueError) as exc:
        return False, None, f"not JSON: {exc}"
    try:
        row = parse_record(doc)
    except RecordError as exc:
        return False, None, str(exc)
    row["request_time"] = row["request_time"].strftime(TIME_FORMAT)
    return True, row, None


def _otf_metadata() -> dict:
    unique_keys = [k.strip() for k in os.environ.get("IcebergTableUniqueKeys", "").split(",") if k.strip()]
    return {
        "destinationDatabaseName": os.environ.get("IcebergDatabaseName", DEFAULT_DATABASE),
        "destinationTableName": os.environ.get("IcebergTableName", DEFAULT_TABLE),
        # With unique keys, Firehose upserts on them (the sample's behaviour), else it appends.
        "operation": "update" if unique_keys else "insert",
    }


def handler(event, context=None):
    """The Firehose data-transformation Lambda: one output per input record, failures per record."""
    metadata = {"otfMetadata": _otf_metadata()}
    output = []
    failed = 0
    for record in event.get("records", []):
        record_id = record.get("recordId")
        try:
            raw = base64.b64decode(record.get("data", ""), validate=True)
        except (ValueError, TypeError):
            ok, row, error = False, None, "data is not base64"
        else:
            ok, row, error = transform_record(raw)
        if ok:
            payload = json.dumps(row, separators=(",", ":")).encode("utf-8")
            output.append({
                "recordId": record_id,
                "result": "Ok",
                "data": base64.b64encode(payload).decode("ascii"),
                "metadata": metadata,
            })
        else:
            failed += 1
            print(json.dumps({"recordId": record_id, "error": error}))
            # Firehose keeps the original data of a failed record for its error output.
            output.append({"recordId": record_id, "result": "ProcessingFailed", "data": record.get("data", "")})
    print(json.dumps({"records": len(output), "failed": failed}))
    return {"records": output}
