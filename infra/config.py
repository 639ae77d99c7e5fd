"""The pipeline's configuration: CDK context read once, validated, and every derived name in one place.

Stacks never read context themselves: they get a `PipelineConfig`, so a name that two stacks must agree on
(the delivery stream and its log group, the table and its S3 location) is computed once, here.
This module does not import aws_cdk, so the portal and the tests can use it without Node.js.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

INFRA_DIR = Path(__file__).resolve().parent
REPO_ROOT = INFRA_DIR.parent
CDK_JSON = INFRA_DIR / "cdk.json"
CONTEXT_FILE = INFRA_DIR / "cdk.context.json"

# The transform Lambda packages this one module from the metering app (standard library only).
TRANSFORM_SOURCE = REPO_ROOT / "metering" / "transform.py"
TRANSFORM_HANDLER = "transform.handler"
RANDOM_STRINGS_SOURCE_DIR = INFRA_DIR / "lambdas" / "random_strings"

# API Gateway only delivers access logs to a Firehose stream whose name starts with this.
APIGW_STREAM_PREFIX = "amazon-apigateway-"

# The Iceberg table, in the seed's column order plus tenant_id. `status` is an int because the access log
# writes `$context.status` unquoted (a number); the seed's hand-made table declared it a string.
# (name, Iceberg type, field id). Field ids are fixed: they are the table's identity in Iceberg metadata.
ICEBERG_COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("request_id", "string", 1),
    ("ip", "string", 2),
    ("user", "string", 3),
    ("request_time", "timestamp", 4),
    ("http_method", "string", 5),
    ("resource_path", "string", 6),
    ("status", "int", 7),
    ("protocol", "string", 8),
    ("response_length", "int", 9),
    ("tenant_id", "string", 10),
)
PARTITION_SOURCE_COLUMN = "request_time"
PARTITION_TRANSFORM = "day"

# The events table (issue 15), in the same database: the rows the portal sends to the events stream as
# JSON (timestamps in UTC; `properties` the event's properties as compact JSON, keys sorted). Field ids are
# fixed as above. Partitioned by day(timestamp), the event's own time, as the access log by request_time.
EVENTS_COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("transaction_id", "string", 1),
    ("tenant_id", "string", 2),
    ("code", "string", 3),
    ("timestamp", "timestamp", 4),
    ("properties", "string", 5),
    ("received_at", "timestamp", 6),
)
EVENTS_PARTITION_SOURCE_COLUMN = "timestamp"

_NAME_RE = re.compile(r"^[a-z0-9_]{1,255}$")
_STREAM_RE = re.compile(r"^[a-zA-Z0-9_.-]{1,64}$")
_WORKGROUP_RE = re.compile(r"^[a-zA-Z0-9._-]{1,128}$")


class ConfigError(ValueError):
    """The CDK context is missing a key or holds a value the pipeline cannot use."""


def load_context_files(cdk_json: Path = CDK_JSON, context_file: Path = CONTEXT_FILE) -> dict[str, Any]:
    """The context that `cdk synth` would pass: cdk.json's "context" overlaid with cdk.context.json.

    `python app.py` and the tests use this as the App's default context; when the CDK CLI runs the app it
    passes the same files (plus any `-c key=value`) and those win.
    """
    context: dict[str, Any] = {}
    if cdk_json.exists():
        context.update(json.loads(cdk_json.read_text()).get("context", {}))
    if context_file.exists():
        context.update(json.loads(context_file.read_text()))
    return context


def _require(mapping: Mapping[str, Any], key: str, where: str) -> Any:
    if not isinstance(mapping, Mapping) or key not in mapping:
        raise ConfigError(f"missing context key {where}.{key} (see infra/README.md, 'Context')")
    return mapping[key]


def _int_in(value: Any, low: int, high: int, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{where} must be an integer in {low}..{high}, got {value!r}")
    return value


@dataclass(frozen=True)
class PipelineConfig:
    stream_name: str
    buffering_interval_seconds: int
    buffering_size_mbs: int
    lambda_buffer_size_mbs: int
    lambda_buffer_interval_seconds: int
    lambda_number_of_retries: int
    database_name: str
    table_name: str
    unique_keys: tuple[str, ...]
    output_prefix: str
    error_output_prefix: str
    # None: the default name, apigw-access-log-to-firehose-{region}-{account_id}.
    s3_bucket: str | None = None
    athena_workgroup_name: str = "saas-metering"
    athena_output_prefix: str = "athena-results/"
    athena_results_expiration_days: int = 30
    cognito_self_sign_up: bool = False
    # The events pipeline (events_configuration; every key optional). The table's location defaults to
    # {database_name}/{events_table_name} in the bucket, beside the access-log table.
    events_table_name: str = "events"
    events_stream_name: str = "saas-metering-events"
    events_buffering_interval_seconds: int = 60
    events_buffering_size_mbs: int = 128
    events_output_prefix: str = ""
    events_error_output_prefix: str = (
        "events-error/year=!{timestamp:yyyy}/month=!{timestamp:MM}/day=!{timestamp:dd}/hour=!{timestamp:HH}"
        "/!{firehose:error-output-type}"
    )

    # --- derived names -------------------------------------------------------------------------------
    @property
    def delivery_stream_name(self) -> str:
        return f"{APIGW_STREAM_PREFIX}{self.stream_name}"

    @property
    def firehose_log_group_name(self) -> str:
        """The log group the stream writes to; the Firehose role's logs:PutLogEvents names exactly this."""
        return f"/aws/kinesisfirehose/{self.delivery_stream_name}"

    firehose_log_stream_name = "DestinationDelivery"

    def bucket_name(self, region: str, account: str) -> str:
        template = self.s3_bucket or "apigw-access-log-to-firehose-{region}-{account_id}"
        return template.format(region=region, account_id=account)

    def table_location(self, bucket_name: str) -> str:
        return f"s3://{bucket_name}/{self.output_prefix.strip('/')}"

    def athena_output_location(self, bucket_name: str) -> str:
        return f"s3://{bucket_name}/{self.athena_output_prefix}"

    @property
    def events_log_group_name(self) -> str:
        """The events stream's log group; its role's logs:PutLogEvents names exactly this."""
        return f"/aws/kinesisfirehose/{self.events_stream_name}"

    @property
    def events_table_prefix(self) -> str:
        """The events table's folder in the bucket: events_output_prefix, or {database}/{events table}."""
        return self.events_output_prefix or f"{self.database_name}/{self.events_table_name}"

    def events_table_location(self, bucket_name: str) -> str:
        return f"s3://{bucket_name}/{self.events_table_prefix}"

    @property
    def events_error_prefix_static(self) -> str:
        """The error prefix up to its first `!{...}` expression: the events role may write objects under it."""
        return self.events_error_output_prefix.split("!{", 1)[0]

    # --- construction ------------------------------------------------------------------------------------
    @classmethod
    def from_context(cls, context: Mapping[str, Any]) -> PipelineConfig:
        """Build from the context dict (or anything with the same shape); raise ConfigError when unusable."""
        dfc = _require(context, "data_firehose_configuration", "context")
        where = "data_firehose_configuration"
        hints = _require(dfc, "buffering_hints", where)
        proc = _require(dfc, "transform_records_with_aws_lambda", where)
        table = _require(dfc, "destination_iceberg_table_configuration", where)
        athena = context.get("athena_configuration") or {}
        cognito = context.get("cognito_configuration") or {}
        events = context.get("events_configuration") or {}

        stream_name = str(_require(dfc, "stream_name", where))
        if stream_name.startswith(APIGW_STREAM_PREFIX):
            # The prefix is added here; a configured name that already has it would get it twice.
            stream_name = stream_name[len(APIGW_STREAM_PREFIX):]
        if not _STREAM_RE.match(APIGW_STREAM_PREFIX + stream_name):
            raise ConfigError(f"{where}.stream_name gives an invalid Firehose stream name: {stream_name!r}")

        database_name = str(_require(table, "database_name", f"{where}.destination_iceberg_table_configuration"))
        table_name = str(_require(table, "table_name", f"{where}.destination_iceberg_table_configuration"))
        for label, name in (("database_name", database_name), ("table_name", table_name)):
            if not _NAME_RE.match(name):
                raise ConfigError(f"{label} must be lowercase letters, digits and _ (Glue/Athena): {name!r}")
        columns = {name for name, _, _ in ICEBERG_COLUMNS}
        unique_keys = tuple(table.get("unique_keys") or ())
        unknown = [key for key in unique_keys if key not in columns]
        if unknown:
            raise ConfigError(f"unique_keys names columns the table does not have: {unknown}")

        error_output_prefix = str(_require(dfc, "error_output_prefix", where))
        if "!{" in error_output_prefix and "!{firehose:error-output-type}" not in error_output_prefix:
            raise ConfigError("error_output_prefix with expressions must contain !{firehose:error-output-type}")
        output_prefix = str(_require(dfc, "output_prefix", where)).strip("/")

        workgroup = str(athena.get("workgroup_name", cls.athena_workgroup_name))
        if not _WORKGROUP_RE.match(workgroup):
            raise ConfigError(f"athena_configuration.workgroup_name is not a valid workgroup name: {workgroup!r}")
        athena_prefix = str(athena.get("output_prefix", cls.athena_output_prefix)).strip("/") + "/"

        return cls(
            stream_name=stream_name,
            buffering_interval_seconds=_int_in(hints.get("interval_in_seconds"), 0, 900, f"{where}.buffering_hints.interval_in_seconds"),
            buffering_size_mbs=_int_in(hints.get("size_in_mbs"), 1, 128, f"{where}.buffering_hints.size_in_mbs"),
            lambda_buffer_size_mbs=_int_in(proc.get("buffer_size"), 1, 3, f"{where}.transform_records_with_aws_lambda.buffer_size"),
            lambda_buffer_interval_seconds=_int_in(proc.get("buffer_interval"), 60, 900, f"{where}.transform_records_with_aws_lambda.buffer_interval"),
            lambda_number_of_retries=_int_in(proc.get("number_of_retries"), 0, 300, f"{where}.transform_records_with_aws_lambda.number_of_retries"),
            database_name=database_name,
            table_name=table_name,
            unique_keys=unique_keys,
            output_prefix=output_prefix,
            error_output_prefix=error_output_prefix,
            s3_bucket=dfc.get("s3_bucket") or None,
            athena_workgroup_name=workgroup,
            athena_output_prefix=athena_prefix,
            athena_results_expiration_days=_int_in(
                athena.get("results_expiration_days", cls.athena_results_expiration_days), 1, 3650,
                "athena_configuration.results_expiration_days"),
            cognito_self_sign_up=bool(cognito.get("self_sign_up_enabled", cls.cognito_self_sign_up)),
            **_events_fields(events, database_name=database_name, table_name=table_name,
                             stream_name=APIGW_STREAM_PREFIX + stream_name, output_prefix=output_prefix,
                             error_output_prefix=error_output_prefix),
        )


def _overlaps(a: str, b: str) -> bool:
    """Whether two S3 prefixes (no slashes at the ends) are the same or one holds the other."""
    return a == b or a.startswith(b + "/") or b.startswith(a + "/")


def _events_fields(
    events: Mapping[str, Any], *, database_name: str, table_name: str, stream_name: str, output_prefix: str,
    error_output_prefix: str,
) -> dict[str, Any]:
    """PipelineConfig's events_* fields from the optional `events_configuration` context key."""
    where = "events_configuration"
    if not isinstance(events, Mapping):
        raise ConfigError(f"{where} must be an object, got {events!r}")
    defaults = PipelineConfig.__dataclass_fields__
    events_table = str(events.get("table_name", defaults["events_table_name"].default))
    if not _NAME_RE.match(events_table):
        raise ConfigError(f"{where}.table_name must be lowercase letters, digits and _ (Glue/Athena): {events_table!r}")
    if events_table == table_name:
        raise ConfigError(f"{where}.table_name must differ from the access-log table {table_name!r}")
    events_stream = str(events.get("stream_name", defaults["events_stream_name"].default))
    if not _STREAM_RE.match(events_stream):
        raise ConfigError(f"{where}.stream_name is an invalid Firehose stream name: {events_stream!r}")
    if events_stream == stream_name:
        raise ConfigError(f"{where}.stream_name must differ from the access-log stream {stream_name!r}")
    hints = events.get("buffering_hints") or {}
    if not isinstance(hints, Mapping):
        raise ConfigError(f"{where}.buffering_hints must be an object, got {hints!r}")
    events_prefix = str(events.get("output_prefix") or f"{database_name}/{events_table}").strip("/")
    if _overlaps(events_prefix, output_prefix):
        raise ConfigError(f"{where}.output_prefix {events_prefix!r} overlaps the access-log table's {output_prefix!r}")
    events_error = str(events.get("error_output_prefix", defaults["events_error_output_prefix"].default))
    if "!{" in events_error and "!{firehose:error-output-type}" not in events_error:
        raise ConfigError(f"{where}.error_output_prefix with expressions must contain !{{firehose:error-output-type}}")
    static_error = events_error.split("!{", 1)[0].strip("/")
    if not static_error or _overlaps(static_error, events_prefix):
        raise ConfigError(f"{where}.error_output_prefix must start with a folder of its own outside the table: {events_error!r}")
    if events_error == error_output_prefix:
        raise ConfigError(f"{where}.error_output_prefix must differ from the access-log stream's")
    return {
        "events_table_name": events_table,
        "events_stream_name": events_stream,
        "events_buffering_interval_seconds": _int_in(
            hints.get("interval_in_seconds", defaults["events_buffering_interval_seconds"].default), 0, 900,
            f"{where}.buffering_hints.interval_in_seconds"),
        "events_buffering_size_mbs": _int_in(
            hints.get("size_in_mbs", defaults["events_buffering_size_mbs"].default), 1, 128,
            f"{where}.buffering_hints.size_in_mbs"),
        "events_output_prefix": events_prefix,
        "events_error_output_prefix": events_error,
    }
