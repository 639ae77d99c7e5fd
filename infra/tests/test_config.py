"""The context file and the names derived from it (no synthesis needed)."""

from __future__ import annotations

import copy

import pytest

from infra.config import ConfigError, PipelineConfig, load_context_files


@pytest.fixture
def context() -> dict:
    return copy.deepcopy(load_context_files())


def test_the_shipped_context_file(context):
    config = PipelineConfig.from_context(context)
    assert config.delivery_stream_name == "amazon-apigateway-random-gen"
    assert config.firehose_log_group_name == "/aws/kinesisfirehose/amazon-apigateway-random-gen"
    assert config.database_name == "restapi_access_log_iceberg_db"
    assert config.table_name == "restapi_access_log_iceberg"
    assert config.unique_keys == ()
    assert config.bucket_name("eu-west-1", "111122223333") == "apigw-access-log-to-firehose-eu-west-1-111122223333"
    assert config.table_location("b") == "s3://b/restapi_access_log_iceberg_db/restapi_access_log_iceberg"
    assert config.athena_output_location("b") == "s3://b/athena-results/"
    assert config.athena_workgroup_name == "saas-metering"
    assert config.cognito_self_sign_up is False


def test_feature_flags_come_from_cdk_json(context):
    # The same flags for `cdk synth` and for the tests.
    assert context["@aws-cdk/core:validateAgainstDefaultRules"] is True
    assert context["@aws-cdk/core:defaultCrossStackReferences"] == "weak"


def test_a_stream_name_with_the_prefix_is_not_prefixed_twice(context):
    context["data_firehose_configuration"]["stream_name"] = "amazon-apigateway-random-gen"
    assert PipelineConfig.from_context(context).delivery_stream_name == "amazon-apigateway-random-gen"


def test_bucket_name_placeholders(context):
    context["data_firehose_configuration"]["s3_bucket"] = "my-logs-{account_id}-{region}"
    assert PipelineConfig.from_context(context).bucket_name("us-east-1", "1") == "my-logs-1-us-east-1"


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("destination_iceberg_table_configuration", "table_name"), "Bad-Name", "lowercase"),
        (("destination_iceberg_table_configuration", "unique_keys"), ["request_id", "nope"], "nope"),
        (("buffering_hints", "size_in_mbs"), 500, "size_in_mbs"),
        (("transform_records_with_aws_lambda", "buffer_size"), 0, "buffer_size"),
        (("error_output_prefix",), "error/!{timestamp:yyyy}/", "error-output-type"),
        (("stream_name",), "spaces are not allowed", "stream name"),
    ],
)
def test_unusable_values_are_refused(context, path, value, message):
    target = context["data_firehose_configuration"]
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(ConfigError, match=message):
        PipelineConfig.from_context(context)


def test_a_missing_key_is_named(context):
    del context["data_firehose_configuration"]["output_prefix"]
    with pytest.raises(ConfigError, match="data_firehose_configuration.output_prefix"):
        PipelineConfig.from_context(context)
    with pytest.raises(ConfigError, match="context.data_firehose_configuration"):
        PipelineConfig.from_context({})


def test_the_shipped_events_configuration(context):
    config = PipelineConfig.from_context(context)
    assert config.events_table_name == "events"
    assert config.events_stream_name == "saas-metering-events"
    assert config.events_log_group_name == "/aws/kinesisfirehose/saas-metering-events"
    assert config.events_table_prefix == "restapi_access_log_iceberg_db/events"
    assert config.events_table_location("b") == "s3://b/restapi_access_log_iceberg_db/events"
    assert (config.events_buffering_interval_seconds, config.events_buffering_size_mbs) == (60, 128)
    assert config.events_error_prefix_static == "events-error/year="


def test_events_configuration_is_optional(context):
    """Without the key (an environment override written before issue 15, say) the defaults apply."""
    shipped = PipelineConfig.from_context(context)
    del context["events_configuration"]
    config = PipelineConfig.from_context(context)
    for name in ("events_table_name", "events_stream_name", "events_table_prefix", "events_error_output_prefix",
                 "events_buffering_interval_seconds", "events_buffering_size_mbs"):
        assert getattr(config, name) == getattr(shipped, name), name


def test_events_table_name_decides_its_location(context):
    context["events_configuration"] = {"table_name": "usage_events"}
    config = PipelineConfig.from_context(context)
    assert config.events_table_name == "usage_events"
    assert config.events_table_prefix == "restapi_access_log_iceberg_db/usage_events"


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("table_name", "Events", "lowercase"),
        ("table_name", "restapi_access_log_iceberg", "differ from the access-log table"),
        ("stream_name", "no spaces", "stream name"),
        ("stream_name", "amazon-apigateway-random-gen", "differ from the access-log stream"),
        ("buffering_hints", {"interval_in_seconds": 901}, "interval_in_seconds"),
        ("buffering_hints", {"size_in_mbs": 0}, "size_in_mbs"),
        ("output_prefix", "restapi_access_log_iceberg_db/restapi_access_log_iceberg/events", "overlaps"),
        ("output_prefix", "restapi_access_log_iceberg_db", "overlaps"),
        ("error_output_prefix", "events-error/!{timestamp:yyyy}/", "error-output-type"),
        ("error_output_prefix", "!{firehose:error-output-type}/", "folder of its own"),
        ("error_output_prefix", "restapi_access_log_iceberg_db/events/errors/", "folder of its own"),
    ],
)
def test_unusable_events_values_are_refused(context, key, value, message):
    context["events_configuration"][key] = value
    with pytest.raises(ConfigError, match=message):
        PipelineConfig.from_context(context)


def test_events_configuration_must_be_an_object(context):
    context["events_configuration"] = "events"
    with pytest.raises(ConfigError, match="events_configuration must be an object"):
        PipelineConfig.from_context(context)
