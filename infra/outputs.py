"""Stack names, their CloudFormation outputs, and how the portal maps them to its settings.

This is the stable interface between `cdk deploy` and the portal: stack names and output keys listed here
do not change without a note in infra/README.md. The portal reads the JSON that
`cdk deploy --all --outputs-file outputs.json` writes ({stack name: {output key: value}}) with
`settings_from_outputs()`. Standard library only: importing it needs neither aws_cdk nor Node.js.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

# Stack names, in deployment order (each depends on the one before).
S3_STACK = "SaaSMeteringDemoDataFirehoseToIcebergS3Path"
TABLE_STACK = "SaaSMeteringDemoIcebergTable"
ATHENA_STACK = "SaaSMeteringDemoAthenaWorkGroup"
TRANSFORM_LAMBDA_STACK = "SaaSMeteringDemoFirehoseDataTransformLambdaStack"
FIREHOSE_ROLE_STACK = "SaaSMeteringDemoFirehoseToIcebergRoleStack"
LAKE_FORMATION_STACK = "SaaSMeteringDemoGrantLFPermissionsOnFirehoseRole"
FIREHOSE_STACK = "SaaSMeteringDemoRandomGenApiLogToFirehose"
API_STACK = "SaaSMeteringDemoRandomGenApiGw"
EVENTS_STACK = "SaaSMeteringDemoEventsFirehoseToIceberg"

STACK_NAMES: tuple[str, ...] = (
    S3_STACK,
    TABLE_STACK,
    ATHENA_STACK,
    TRANSFORM_LAMBDA_STACK,
    FIREHOSE_ROLE_STACK,
    LAKE_FORMATION_STACK,
    FIREHOSE_STACK,
    API_STACK,
    EVENTS_STACK,
)

# Every output of every stack: {stack: {output key: description}}. The tests assert that each stack's
# template has exactly these outputs.
STACK_OUTPUTS: dict[str, dict[str, str]] = {
    S3_STACK: {
        "S3BucketName": "bucket holding the Iceberg table, Firehose's failed records and Athena results",
    },
    TABLE_STACK: {
        "GlueDatabaseName": "Glue database of the access-log table",
        "GlueTableName": "the Iceberg table of access-log records",
        "GlueTableLocation": "S3 location of the Iceberg table",
    },
    ATHENA_STACK: {
        "AthenaWorkGroupName": "Athena workgroup for usage queries (enforces its result location)",
        "AthenaOutputLocation": "S3 location of the workgroup's query results",
    },
    TRANSFORM_LAMBDA_STACK: {
        "FirehoseDataProcFuncName": "name of the Firehose transform Lambda (metering/transform.py)",
        "FirehoseDataProcFuncArn": "ARN of the Firehose transform Lambda",
    },
    FIREHOSE_ROLE_STACK: {
        "FirehoseRole": "name of the role Firehose assumes",
        "FirehoseRoleArn": "ARN of the role Firehose assumes",
    },
    LAKE_FORMATION_STACK: {
        "Principal": "the principal granted Lake Formation permissions on the table",
    },
    FIREHOSE_STACK: {
        "S3DestBucket": "bucket the stream writes to",
        "DataFirehoseStreamName": "name of the delivery stream (amazon-apigateway-...)",
        "DataFirehoseStreamArn": "ARN of the delivery stream",
        "DataFirehoseLogGroupName": "CloudWatch log group of the stream's delivery errors",
    },
    API_STACK: {
        "UserPoolId": "Cognito user pool of tenant users (custom:tenant_id, custom:role)",
        "UserPoolClientId": "app client for USER_PASSWORD, ADMIN_USER_PASSWORD and USER_SRP sign-in",
        "RestApiId": "id of the metered REST API",
        "RestApiEndpoint": "base URL of the metered API's prod stage, no trailing slash",
        "RestApiAccessLogToFirehoseARN": "Firehose stream receiving the prod stage's access logs",
        "Region": "region everything is deployed in",
    },
    EVENTS_STACK: {
        "EventsTableName": "the Iceberg table of events (same Glue database as the access-log table)",
        "EventsTableLocation": "S3 location of the events table",
        "EventsFirehoseStreamName": "name of the Direct PUT stream the portal sends events to",
        "EventsFirehoseStreamArn": "ARN of the events stream",
        "EventsFirehoseRoleArn": "ARN of the role the events stream assumes",
        "EventsFirehoseLogGroupName": "CloudWatch log group of the events stream's delivery errors",
        "EventsPutRecordsPolicyArn": "managed policy to attach to the portal's identity: PutRecordBatch on the events stream",
    },
}


@dataclass(frozen=True)
class PortalSetting:
    """One portal setting (an environment variable of portal/settings.py) and the output it comes from."""

    setting: str
    stack: str
    output_key: str


# What the portal reads back after a deploy. Setting names are portal/settings.py's environment variables;
# LAKE_S3_BUCKET and DATA_FIREHOSE_STREAM_NAME have no setting yet and are listed so that a portal page can
# show them (METERED_API_URL is the portal's METERED_API_BASE_URL).
PORTAL_SETTINGS: tuple[PortalSetting, ...] = (
    PortalSetting("AWS_REGION", API_STACK, "Region"),
    PortalSetting("COGNITO_REGION", API_STACK, "Region"),
    PortalSetting("COGNITO_USER_POOL_ID", API_STACK, "UserPoolId"),
    PortalSetting("COGNITO_CLIENT_ID", API_STACK, "UserPoolClientId"),
    PortalSetting("LAKE_DATABASE", TABLE_STACK, "GlueDatabaseName"),
    PortalSetting("LAKE_TABLE", TABLE_STACK, "GlueTableName"),
    PortalSetting("ATHENA_WORKGROUP", ATHENA_STACK, "AthenaWorkGroupName"),
    PortalSetting("ATHENA_OUTPUT_LOCATION", ATHENA_STACK, "AthenaOutputLocation"),
    PortalSetting("METERED_API_URL", API_STACK, "RestApiEndpoint"),
    PortalSetting("LAKE_S3_BUCKET", S3_STACK, "S3BucketName"),
    PortalSetting("DATA_FIREHOSE_STREAM_NAME", FIREHOSE_STACK, "DataFirehoseStreamName"),
    PortalSetting("LAKE_EVENTS_TABLE", EVENTS_STACK, "EventsTableName"),
    PortalSetting("EVENTS_FIREHOSE_STREAM", EVENTS_STACK, "EventsFirehoseStreamName"),
)


class MissingOutputError(KeyError):
    """The outputs JSON lacks a stack or an output the portal needs (a stack not deployed yet?)."""


def settings_from_outputs(outputs: Mapping[str, Mapping[str, str]], *, strict: bool = True) -> dict[str, str]:
    """Map `cdk deploy --outputs-file` JSON to {setting: value}.

    With strict=True (the default) a missing stack or output raises MissingOutputError naming all of them;
    with strict=False the missing settings are left out.
    """
    settings: dict[str, str] = {}
    missing: list[str] = []
    for item in PORTAL_SETTINGS:
        value = (outputs.get(item.stack) or {}).get(item.output_key)
        if value is None:
            missing.append(f"{item.stack}.{item.output_key}")
        else:
            settings[item.setting] = value
    if missing and strict:
        raise MissingOutputError(f"outputs missing (deploy these stacks first): {', '.join(missing)}")
    return settings


def settings_from_outputs_file(path: str | Path, *, strict: bool = True) -> dict[str, str]:
    """`settings_from_outputs` over the file that `cdk deploy --outputs-file PATH` wrote."""
    return settings_from_outputs(json.loads(Path(path).read_text()), strict=strict)
