"""Assertion tests of the CDK app: it synthesizes cleanly, and each stack has what matters.

The app is synthesized once per module (about 10 s); every test reads that one cloud assembly.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
# jsii 1.14x calls Node 20 end-of-life and prints a banner unless this names the major version.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

if shutil.which("node") is None:
    # CI has Node.js and must synthesize; a laptop without it skips these tests and says why.
    if os.environ.get("CI"):
        pytest.fail("the CDK app needs Node.js on PATH (aws-cdk-lib runs on jsii)", pytrace=False)
    pytest.skip("the CDK app needs Node.js on PATH (aws-cdk-lib runs on jsii)", allow_module_level=True)

import aws_cdk as cdk  # noqa: E402
from aws_cdk import aws_lambda as lambda_  # noqa: E402
from aws_cdk.assertions import Annotations, Match, Template  # noqa: E402

from infra import outputs  # noqa: E402
from infra.config import (  # noqa: E402
    EVENTS_COLUMNS,
    ICEBERG_COLUMNS,
    INFRA_DIR,
    TRANSFORM_SOURCE,
    PipelineConfig,
    load_context_files,
)
from infra.stacks import build_app  # noqa: E402
from infra.stacks.api import ACCESS_LOG_FIELDS, access_log_format  # noqa: E402

ACCOUNT = "123456789012"
REGION = "us-east-1"
ENV = cdk.Environment(account=ACCOUNT, region=REGION)
CONFIG = PipelineConfig.from_context(load_context_files())
BUCKET = f"apigw-access-log-to-firehose-{REGION}-{ACCOUNT}"
STREAM = "amazon-apigateway-random-gen"
LOG_GROUP = f"/aws/kinesisfirehose/{STREAM}"
EVENTS_STREAM = "saas-metering-events"
EVENTS_LOG_GROUP = f"/aws/kinesisfirehose/{EVENTS_STREAM}"
CURRENT_PYTHON_RUNTIMES = {"python3.12", "python3.13", "python3.14"}


@dataclass
class Synth:
    app: cdk.App
    stacks: dict[str, cdk.Stack]
    outdir: Path
    transform_source: Path

    def template(self, name: str) -> Template:
        return Template.from_stack(self.stacks[name])

    def template_json(self, name: str) -> dict:
        return json.loads((self.outdir / f"{name}.template.json").read_text())


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Synth:
    transform_source = TRANSFORM_SOURCE
    outdir = tmp_path_factory.mktemp("cdk.out")
    app = cdk.App(context=load_context_files(), outdir=str(outdir))
    stacks = build_app(app, env=ENV, transform_source=transform_source)
    app.synth()
    return Synth(app=app, stacks=stacks, outdir=outdir, transform_source=transform_source)


def resources(template: dict, cfn_type: str) -> dict[str, dict]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == cfn_type}


def only(template: dict, cfn_type: str) -> dict:
    found = resources(template, cfn_type)
    assert len(found) == 1, f"expected one {cfn_type}, found {list(found)}"
    return next(iter(found.values()))


def stack_output_ref(producer: str) -> dict:
    """How a consumer stack refers to a producer's value (weak cross-stack references)."""
    return {"Fn::GetStackOutput": {"StackName": producer, "Region": REGION, "OutputName": Match.any_value()}}


# --- the app as a whole ---------------------------------------------------------------------------------


def test_app_has_the_stacks_in_deployment_order(synth):
    manifest = json.loads((synth.outdir / "manifest.json").read_text())
    stacks = [k for k, v in manifest["artifacts"].items() if v["type"] == "aws:cloudformation:stack"]
    assert sorted(stacks) == sorted(outputs.STACK_NAMES)
    assert list(synth.stacks) == list(outputs.STACK_NAMES)
    for before, after in zip(outputs.STACK_NAMES, outputs.STACK_NAMES[1:], strict=False):
        assert before in manifest["artifacts"][after].get("dependencies", []), f"{after} must depend on {before}"


def test_no_missing_context(synth):
    manifest = json.loads((synth.outdir / "manifest.json").read_text())
    assert not manifest.get("missing"), f"context lookups would be needed: {manifest.get('missing')}"


def test_validation_report_is_empty(synth):
    # aws-cdk-lib validates every template at synth time (the built-in "CloudFormation Validate" plugin, and
    # with @aws-cdk/core:annotationsInValidationReport the construct annotations too) and writes the
    # findings here; a deprecated Lambda runtime, for one, would be listed.
    report = json.loads((synth.outdir / "validation-report.json").read_text())
    findings = [v for r in report["pluginReports"] for v in r.get("violations", [])]
    assert findings == [], json.dumps(findings, indent=2)
    assert not (synth.outdir / "policy-validation-report.json").exists()


@pytest.mark.parametrize("name", outputs.STACK_NAMES)
def test_no_warnings_or_errors(synth, name):
    annotations = Annotations.from_stack(synth.stacks[name])
    assert annotations.find_warning("*", Match.any_value()) == []
    assert annotations.find_error("*", Match.any_value()) == []


def test_no_construct_fails_validation(synth):
    failing = {c.node.path: c.node.validate() for c in synth.app.node.find_all() if c.node.validate()}
    assert failing == {}


def test_the_validation_report_lists_a_deprecated_runtime(tmp_path):
    """The check above has teeth: the seed's python3.9 Lambda shows up in the report it reads."""
    app = cdk.App(context=load_context_files(), outdir=str(tmp_path))
    stack = cdk.Stack(app, "DeprecatedRuntime", env=ENV)
    lambda_.Function(
        stack,
        "Fn",
        runtime=lambda_.Runtime.PYTHON_3_9,
        handler="index.handler",
        code=lambda_.Code.from_inline("def handler(event, context):\n    return None\n"),
    )
    app.synth()
    report = json.loads((tmp_path / "validation-report.json").read_text())
    rules = {v["ruleName"] for r in report["pluginReports"] for v in r.get("violations", [])}
    assert "W2531" in rules  # deprecated Lambda runtime


@pytest.mark.parametrize("name", outputs.STACK_NAMES)
def test_outputs_are_the_documented_ones(synth, name):
    declared = set(synth.template_json(name).get("Outputs", {}))
    # PublishOutput*: outputs CDK adds for the weak cross-stack references (Fn::GetStackOutput).
    documented = {key for key in declared if not key.startswith("PublishOutput")}
    assert documented == set(outputs.STACK_OUTPUTS[name])


def test_the_required_outputs_exist():
    everything = {key for keys in outputs.STACK_OUTPUTS.values() for key in keys}
    required = {
        "UserPoolId", "UserPoolClientId", "RestApiEndpoint", "S3BucketName", "DataFirehoseStreamName",
        "GlueDatabaseName", "GlueTableName", "AthenaWorkGroupName", "AthenaOutputLocation", "Region",
    }
    assert required <= everything


def test_no_lambda_runs_a_deprecated_runtime(synth):
    runtimes = {
        fn["Properties"]["Runtime"]
        for name in outputs.STACK_NAMES
        for fn in resources(synth.template_json(name), "AWS::Lambda::Function").values()
    }
    assert runtimes and runtimes <= CURRENT_PYTHON_RUNTIMES


# --- least privilege ------------------------------------------------------------------------------------


def iam_statements(template: dict) -> list[tuple[str, dict]]:
    found = []
    for logical_id, res in template["Resources"].items():
        documents = []
        if res["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            documents.append(res["Properties"]["PolicyDocument"])
        if res["Type"] == "AWS::IAM::Role":
            documents += [p["PolicyDocument"] for p in res["Properties"].get("Policies", [])]
        for document in documents:
            found += [(logical_id, s) for s in document["Statement"]]
    return found


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def test_no_iam_statement_allows_every_resource_or_action(synth):
    for name in outputs.STACK_NAMES:
        for logical_id, statement in iam_statements(synth.template_json(name)):
            if statement["Effect"] != "Allow":
                continue
            assert "*" not in as_list(statement["Resource"]), f"{name}/{logical_id}: {statement}"
            for action in as_list(statement["Action"]):
                assert action != "*" and not action.endswith(":*"), f"{name}/{logical_id}: {action}"


def test_no_role_uses_a_broad_managed_policy(synth):
    for name in outputs.STACK_NAMES:
        for logical_id, role in resources(synth.template_json(name), "AWS::IAM::Role").items():
            # e.g. AWSLambdaBasicExecutionRole allows logs:* on every log group
            assert not role["Properties"].get("ManagedPolicyArns"), f"{name}/{logical_id}"


def test_lambda_roles_write_only_their_own_log_group(synth):
    for name in (outputs.TRANSFORM_LAMBDA_STACK, outputs.API_STACK):
        template = synth.template_json(name)
        log_groups = resources(template, "AWS::Logs::LogGroup")
        for fn in resources(template, "AWS::Lambda::Function").values():
            log_group_id = fn["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
            assert log_group_id in log_groups
            role_id = fn["Properties"]["Role"]["Fn::GetAtt"][0]
            policies = [
                p for p in resources(template, "AWS::IAM::Policy").values() if {"Ref": role_id} in p["Properties"]["Roles"]
            ]
            statements = [s for p in policies for s in p["Properties"]["PolicyDocument"]["Statement"]]
            assert statements == [
                {
                    "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                    "Effect": "Allow",
                    "Resource": {"Fn::GetAtt": [log_group_id, "Arn"]},
                }
            ]


# --- stack 1: the bucket --------------------------------------------------------------------------------


def test_bucket(synth):
    template = synth.template(outputs.S3_STACK)
    template.has_resource(
        "AWS::S3::Bucket",
        {
            "Properties": Match.object_like(
                {
                    "BucketName": BUCKET,
                    "BucketEncryption": {
                        "ServerSideEncryptionConfiguration": [{"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
                    },
                    "PublicAccessBlockConfiguration": {
                        "BlockPublicAcls": True, "BlockPublicPolicy": True,
                        "IgnorePublicAcls": True, "RestrictPublicBuckets": True,
                    },
                }
            ),
            "DeletionPolicy": "Retain",
        },
    )
    template.has_output("S3BucketName", {"Value": {"Ref": Match.any_value()}})


# --- stack 2: the Glue database and the Iceberg table ---------------------------------------------------


def test_glue_database(synth):
    template = synth.template(outputs.TABLE_STACK)
    template.has_resource_properties(
        "AWS::Glue::Database",
        {"CatalogId": ACCOUNT, "DatabaseInput": Match.object_like({"Name": "restapi_access_log_iceberg_db"})},
    )


def test_iceberg_table_columns_partitioning_and_location(synth):
    table = only(synth.template_json(outputs.TABLE_STACK), "AWS::Glue::Table")
    props = table["Properties"]
    assert props["DatabaseName"] == "restapi_access_log_iceberg_db"
    assert props["Name"] == "restapi_access_log_iceberg"
    iceberg = props["OpenTableFormatInput"]["IcebergInput"]
    assert iceberg["MetadataOperation"] == "CREATE"
    assert iceberg["Version"] == "2"
    table_input = iceberg["IcebergTableInput"]
    columns = [(f["Name"], f["Type"]) for f in table_input["Schema"]["Fields"]]
    assert columns == [
        ("request_id", "string"), ("ip", "string"), ("user", "string"), ("request_time", "timestamp"),
        ("http_method", "string"), ("resource_path", "string"), ("status", "int"), ("protocol", "string"),
        ("response_length", "int"), ("tenant_id", "string"),
    ]
    ids = {f["Name"]: f["Id"] for f in table_input["Schema"]["Fields"]}
    assert table_input["PartitionSpec"]["Fields"] == [
        {"FieldId": 1000, "Name": "request_time_day", "SourceId": ids["request_time"], "Transform": "day"}
    ]
    location = table_input["Location"]["Fn::Join"][1]
    assert location[0] == "s3://"
    assert location[1]["Fn::GetStackOutput"]["StackName"] == outputs.S3_STACK
    assert location[2] == "/restapi_access_log_iceberg_db/restapi_access_log_iceberg"
    assert table["DependsOn"] == ["IcebergDatabase"]


# --- stack 3: the Athena workgroup ----------------------------------------------------------------------


def test_athena_workgroup(synth):
    template = synth.template(outputs.ATHENA_STACK)
    template.has_resource_properties(
        "AWS::Athena::WorkGroup",
        {
            "Name": "saas-metering",
            "State": "ENABLED",
            "WorkGroupConfiguration": Match.object_like(
                {
                    "EnforceWorkGroupConfiguration": True,
                    "ResultConfiguration": Match.object_like(
                        {
                            "OutputLocation": {
                                "Fn::Join": ["", ["s3://", stack_output_ref(outputs.S3_STACK), "/athena-results/"]]
                            }
                        }
                    ),
                }
            ),
        },
    )


# --- stack 4: the transform Lambda ----------------------------------------------------------------------


def test_transform_lambda(synth):
    template = synth.template(outputs.TRANSFORM_LAMBDA_STACK)
    template.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Handler": "transform.handler",
            "Runtime": "python3.13",
            "Environment": {
                "Variables": {
                    "IcebergDatabaseName": "restapi_access_log_iceberg_db",
                    "IcebergTableName": "restapi_access_log_iceberg",
                    "IcebergTableUniqueKeys": "",
                }
            },
        },
    )


def test_transform_lambda_packages_exactly_the_metering_module(synth):
    fn = only(synth.template_json(outputs.TRANSFORM_LAMBDA_STACK), "AWS::Lambda::Function")
    asset_hash = fn["Properties"]["Code"]["S3Key"].removesuffix(".zip")
    asset_dir = synth.outdir / f"asset.{asset_hash}"
    assert sorted(p.name for p in asset_dir.iterdir()) == ["transform.py"]
    assert (asset_dir / "transform.py").read_bytes() == TRANSFORM_SOURCE.read_bytes()


def test_demo_api_lambda_packages_only_its_handler(synth):
    fn = only(synth.template_json(outputs.API_STACK), "AWS::Lambda::Function")
    assert fn["Properties"]["Handler"] == "index.handler"
    asset_dir = synth.outdir / f"asset.{fn['Properties']['Code']['S3Key'].removesuffix('.zip')}"
    assert sorted(p.name for p in asset_dir.iterdir()) == ["index.py"]


# --- stack 5: the Firehose role -------------------------------------------------------------------------


def firehose_role_statements(synth) -> dict[str, dict]:
    policy = only(synth.template_json(outputs.FIREHOSE_ROLE_STACK), "AWS::IAM::Policy")
    return {s["Sid"]: s for s in policy["Properties"]["PolicyDocument"]["Statement"]}


def test_firehose_role_trust(synth):
    synth.template(outputs.FIREHOSE_ROLE_STACK).has_resource_properties(
        "AWS::IAM::Role",
        {
            "AssumeRolePolicyDocument": {
                "Statement": [
                    {
                        "Action": "sts:AssumeRole",
                        "Effect": "Allow",
                        "Principal": {"Service": "firehose.amazonaws.com"},
                        "Condition": {"StringEquals": {"sts:ExternalId": ACCOUNT}},
                    }
                ],
                "Version": "2012-10-17",
            }
        },
    )


def test_firehose_role_log_permission_names_the_streams_log_group(synth):
    statement = firehose_role_statements(synth)["DeliveryErrorLogs"]
    assert statement["Action"] == "logs:PutLogEvents"
    assert statement["Resource"] == f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{LOG_GROUP}:log-stream:*"
    # ... and that is the group the stream logs to, which the stream's stack creates.
    stream_stack = synth.template_json(outputs.FIREHOSE_STACK)
    dest = only(stream_stack, "AWS::KinesisFirehose::DeliveryStream")["Properties"]["IcebergDestinationConfiguration"]
    assert dest["CloudWatchLoggingOptions"]["LogGroupName"] == LOG_GROUP
    assert only(stream_stack, "AWS::Logs::LogGroup")["Properties"]["LogGroupName"] == LOG_GROUP


def test_firehose_role_s3_glue_and_lambda_resources(synth):
    statements = firehose_role_statements(synth)
    bucket_arn = stack_output_ref(outputs.S3_STACK)
    Template.from_json({"Resources": {"P": {"Type": "X", "Properties": statements}}}).has_resource_properties(
        "X",
        {
            "BucketLevel": Match.object_like({"Resource": bucket_arn}),
            "ObjectLevel": Match.object_like({"Resource": {"Fn::Join": ["", [bucket_arn, "/*"]]}}),
            "TransformLambda": Match.object_like(
                {
                    "Action": ["lambda:GetFunctionConfiguration", "lambda:InvokeFunction"],
                    "Resource": stack_output_ref(outputs.TRANSFORM_LAMBDA_STACK),
                }
            ),
        },
    )
    assert set(statements["ObjectLevel"]["Action"]) == {
        "s3:AbortMultipartUpload", "s3:GetObject", "s3:PutObject", "s3:DeleteObject",
    }
    glue = statements["GlueCatalog"]
    assert set(glue["Action"]) == {"glue:GetTable", "glue:GetDatabase", "glue:UpdateTable"}
    assert glue["Resource"] == [
        f"arn:aws:glue:{REGION}:{ACCOUNT}:catalog",
        f"arn:aws:glue:{REGION}:{ACCOUNT}:database/restapi_access_log_iceberg_db",
        f"arn:aws:glue:{REGION}:{ACCOUNT}:table/restapi_access_log_iceberg_db/restapi_access_log_iceberg",
    ]
    assert set(statements) == {"BucketLevel", "ObjectLevel", "GlueCatalog", "TransformLambda", "DeliveryErrorLogs"}


# --- stack 6: Lake Formation ----------------------------------------------------------------------------


def test_lake_formation_grants_the_firehose_role_on_the_table(synth):
    template = synth.template(outputs.LAKE_FORMATION_STACK)
    principal = {"DataLakePrincipalIdentifier": stack_output_ref(outputs.FIREHOSE_ROLE_STACK)}
    template.has_resource_properties(
        "AWS::LakeFormation::PrincipalPermissions",
        {
            "Principal": principal,
            "Permissions": ["SELECT", "INSERT", "DELETE", "DESCRIBE", "ALTER"],
            "PermissionsWithGrantOption": [],
            "Resource": {
                "Table": {
                    "CatalogId": ACCOUNT,
                    "DatabaseName": "restapi_access_log_iceberg_db",
                    "Name": "restapi_access_log_iceberg",
                }
            },
        },
    )
    template.has_resource_properties(
        "AWS::LakeFormation::PrincipalPermissions",
        {
            "Principal": principal,
            "Permissions": ["DESCRIBE"],
            "Resource": {"Database": {"CatalogId": ACCOUNT, "Name": "restapi_access_log_iceberg_db"}},
        },
    )
    # The seed replaced the account's data-lake administrators; this app leaves them alone.
    for name in outputs.STACK_NAMES:
        synth.template(name).resource_count_is("AWS::LakeFormation::DataLakeSettings", 0)


# --- stack 7: the delivery stream -----------------------------------------------------------------------


def test_delivery_stream_into_the_iceberg_table(synth):
    template = synth.template(outputs.FIREHOSE_STACK)
    role_arn = stack_output_ref(outputs.FIREHOSE_ROLE_STACK)
    template.has_resource_properties(
        "AWS::KinesisFirehose::DeliveryStream",
        {
            "DeliveryStreamName": STREAM,
            "DeliveryStreamType": "DirectPut",
            "IcebergDestinationConfiguration": Match.object_like(
                {
                    "CatalogConfiguration": {"CatalogArn": f"arn:aws:glue:{REGION}:{ACCOUNT}:catalog"},
                    "RoleARN": role_arn,
                    "BufferingHints": {"IntervalInSeconds": 60, "SizeInMBs": 128},
                    "DestinationTableConfigurationList": [
                        {
                            "DestinationDatabaseName": "restapi_access_log_iceberg_db",
                            "DestinationTableName": "restapi_access_log_iceberg",
                        }
                    ],
                    # Spelled this way in the CloudFormation schema of IcebergDestinationConfiguration.
                    "s3BackupMode": "FailedDataOnly",
                    "S3Configuration": Match.object_like(
                        {
                            "BucketARN": stack_output_ref(outputs.S3_STACK),
                            "RoleARN": role_arn,
                            "ErrorOutputPrefix": CONFIG.error_output_prefix,
                        }
                    ),
                    "ProcessingConfiguration": {
                        "Enabled": True,
                        "Processors": [
                            {
                                "Type": "Lambda",
                                "Parameters": [
                                    {"ParameterName": "LambdaArn", "ParameterValue": stack_output_ref(outputs.TRANSFORM_LAMBDA_STACK)},
                                    {"ParameterName": "NumberOfRetries", "ParameterValue": "3"},
                                    {"ParameterName": "RoleArn", "ParameterValue": role_arn},
                                    {"ParameterName": "BufferSizeInMBs", "ParameterValue": "3"},
                                    {"ParameterName": "BufferIntervalInSeconds", "ParameterValue": "300"},
                                ],
                            }
                        ],
                    },
                }
            ),
        },
    )
    assert "!{firehose:error-output-type}" in CONFIG.error_output_prefix


# --- stack 8: the API, its user pool and its access log -------------------------------------------------


def api_template(synth) -> dict:
    return synth.template_json(outputs.API_STACK)


def test_prod_stage_logs_to_the_firehose_stream(synth):
    stage = only(api_template(synth), "AWS::ApiGateway::Stage")["Properties"]
    assert stage["StageName"] == "prod"
    assert stage["AccessLogSetting"]["DestinationArn"]["Fn::GetStackOutput"]["StackName"] == outputs.FIREHOSE_STACK
    assert stage["AccessLogSetting"]["Format"] == access_log_format()
    assert len(resources(api_template(synth), "AWS::ApiGateway::Stage")) == 1


SAMPLE_VALUES = {
    "$context.requestId": "309d6b79-965e-da32-dae4-45508201e2bd",
    "$context.identity.sourceIp": "198.51.100.48",
    "$context.authorizer.claims['cognito:username']": "5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a809",
    "$context.requestTimeEpoch": "1793491200823",
    "$context.httpMethod": "GET",
    "$context.resourcePath": "/random/strings",
    "$context.status": "200",
    "$context.protocol": "HTTP/1.1",
    "$context.responseLength": "272",
    "$context.authorizer.claims['custom:tenant_id']": "t-globex",
}


def render(line_format: str, values: dict[str, str]) -> str:
    """What API Gateway would write: each $context variable replaced by its value."""
    pattern = re.compile("|".join(re.escape(v) for v in sorted(values, key=len, reverse=True)))
    return pattern.sub(lambda m: values[m.group(0)], line_format)


def test_access_log_format_is_a_json_line_with_the_table_columns(synth):
    line_format = only(api_template(synth), "AWS::ApiGateway::Stage")["Properties"]["AccessLogSetting"]["Format"]
    assert "\n" not in line_format
    assert '"tenant_id": "$context.authorizer.claims[\'custom:tenant_id\']"' in line_format
    assert {var for _, var, _ in ACCESS_LOG_FIELDS} == set(SAMPLE_VALUES)
    record = json.loads(render(line_format, SAMPLE_VALUES))
    assert list(record) == [name for name, _, _ in ICEBERG_COLUMNS]
    assert record["status"] == 200 and record["request_time"] == 1793491200823 and record["response_length"] == 272
    assert record["tenant_id"] == "t-globex"


def test_access_log_line_passes_the_transform(synth):
    from metering import transform

    assert list(transform.COLUMNS) == [name for name, _, _ in ICEBERG_COLUMNS]
    line = render(access_log_format(), SAMPLE_VALUES)
    ok, row, error = transform.transform_record(line)
    assert ok, error
    assert row["tenant_id"] == "t-globex" and row["status"] == 200
    # API Gateway writes "-" for a missing response length: invalid JSON, failed (kept in the error prefix).
    broken = render(access_log_format(), {**SAMPLE_VALUES, "$context.responseLength": "-"})
    ok, _, error = transform.transform_record(broken)
    assert not ok and "JSON" in error


def test_get_random_strings_requires_the_cognito_authorizer(synth):
    template = api_template(synth)
    authorizers = resources(template, "AWS::ApiGateway::Authorizer")
    assert len(authorizers) == 1
    (authorizer_id, authorizer), = authorizers.items()
    pool_id = next(iter(resources(template, "AWS::Cognito::UserPool")))
    assert authorizer["Properties"]["Type"] == "COGNITO_USER_POOLS"
    assert authorizer["Properties"]["IdentitySource"] == "method.request.header.Authorization"
    assert authorizer["Properties"]["ProviderARNs"] == [{"Fn::GetAtt": [pool_id, "Arn"]}]

    api_resources = resources(template, "AWS::ApiGateway::Resource")
    paths = {}
    for logical_id, res in api_resources.items():
        parent = res["Properties"]["ParentId"]
        prefix = paths.get(parent.get("Ref"), "") if "Ref" in parent else ""
        paths[logical_id] = f"{prefix}/{res['Properties']['PathPart']}"
    strings_id = next(k for k, v in paths.items() if v == "/random/strings")
    methods = resources(template, "AWS::ApiGateway::Method")
    assert len(methods) == 1
    method = next(iter(methods.values()))["Properties"]
    assert method["ResourceId"] == {"Ref": strings_id}
    assert method["HttpMethod"] == "GET"
    assert method["AuthorizationType"] == "COGNITO_USER_POOLS"
    assert method["AuthorizerId"] == {"Ref": authorizer_id}
    assert method["Integration"]["Type"] == "AWS_PROXY"


def test_user_pool_carries_tenant_and_role_attributes(synth):
    template = synth.template(outputs.API_STACK)
    template.has_resource_properties(
        "AWS::Cognito::UserPool",
        {
            "Schema": Match.array_with(
                [
                    Match.object_like({"Name": "tenant_id", "AttributeDataType": "String", "Mutable": True}),
                    Match.object_like({"Name": "role", "AttributeDataType": "String", "Mutable": True}),
                ]
            ),
            "UsernameAttributes": ["email"],
            "AutoVerifiedAttributes": ["email"],
            "AdminCreateUserConfig": {"AllowAdminCreateUserOnly": True},
        },
    )


def test_user_pool_client(synth):
    client = only(api_template(synth), "AWS::Cognito::UserPoolClient")["Properties"]
    assert set(client["ExplicitAuthFlows"]) == {
        "ALLOW_ADMIN_USER_PASSWORD_AUTH", "ALLOW_USER_PASSWORD_AUTH", "ALLOW_USER_SRP_AUTH", "ALLOW_REFRESH_TOKEN_AUTH",
    }
    assert client["GenerateSecret"] is False
    # Users cannot set their own tenant or role; only the portal (admin APIs) can.
    assert not any(attr.startswith("custom:") for attr in client["WriteAttributes"])


def test_api_outputs(synth):
    template = synth.template(outputs.API_STACK)
    template.has_output("Region", {"Value": REGION})
    endpoint = synth.template_json(outputs.API_STACK)["Outputs"]["RestApiEndpoint"]["Value"]["Fn::Join"][1]
    assert endpoint[0] == "https://" and endpoint[2] == f".execute-api.{REGION}."
    assert not isinstance(endpoint[-1], str) or not endpoint[-1].endswith("/")


# --- stack 9: the events table, its Direct PUT stream and the portal's policy ----------------------------


def events_template(synth) -> dict:
    return synth.template_json(outputs.EVENTS_STACK)


def test_events_table_columns_partitioning_and_location(synth):
    table = only(events_template(synth), "AWS::Glue::Table")
    props = table["Properties"]
    assert props["CatalogId"] == ACCOUNT
    assert props["DatabaseName"] == "restapi_access_log_iceberg_db"  # the access-log table's database
    assert props["Name"] == "events"
    iceberg = props["OpenTableFormatInput"]["IcebergInput"]
    assert iceberg["MetadataOperation"] == "CREATE" and iceberg["Version"] == "2"
    table_input = iceberg["IcebergTableInput"]
    columns = [(f["Name"], f["Type"]) for f in table_input["Schema"]["Fields"]]
    assert columns == [
        ("transaction_id", "string"), ("tenant_id", "string"), ("code", "string"), ("timestamp", "timestamp"),
        ("properties", "string"), ("received_at", "timestamp"),
    ]
    assert columns == [(name, kind) for name, kind, _ in EVENTS_COLUMNS]
    ids = {f["Name"]: f["Id"] for f in table_input["Schema"]["Fields"]}
    assert sorted(ids.values()) == [1, 2, 3, 4, 5, 6]
    assert table_input["PartitionSpec"] == {
        "SpecId": 0,
        "Fields": [{"FieldId": 1000, "Name": "timestamp_day", "SourceId": ids["timestamp"], "Transform": "day"}],
    }
    assert table_input["Properties"] == {"write.format.default": "parquet", "write.parquet.compression-codec": "snappy"}
    location = table_input["Location"]["Fn::Join"][1]
    assert location[0] == "s3://"
    assert location[1]["Fn::GetStackOutput"]["StackName"] == outputs.S3_STACK
    assert location[2] == "/restapi_access_log_iceberg_db/events"


def test_events_table_leaves_the_access_log_table_alone(synth):
    # The events table is a table of its own, beside (not inside) the access-log table's location.
    access_log = only(synth.template_json(outputs.TABLE_STACK), "AWS::Glue::Table")["Properties"]
    events = only(events_template(synth), "AWS::Glue::Table")["Properties"]
    assert access_log["Name"] != events["Name"]
    access_location = access_log["OpenTableFormatInput"]["IcebergInput"]["IcebergTableInput"]["Location"]
    events_location = events["OpenTableFormatInput"]["IcebergInput"]["IcebergTableInput"]["Location"]
    assert not events_location["Fn::Join"][1][2].startswith(access_location["Fn::Join"][1][2] + "/")


def test_events_stream_is_direct_put_into_the_events_table(synth):
    template = synth.template(outputs.EVENTS_STACK)
    role_id = next(iter(resources(events_template(synth), "AWS::IAM::Role")))
    role_arn = {"Fn::GetAtt": [role_id, "Arn"]}
    logging = {"Enabled": True, "LogGroupName": EVENTS_LOG_GROUP, "LogStreamName": "DestinationDelivery"}
    template.has_resource_properties(
        "AWS::KinesisFirehose::DeliveryStream",
        {
            "DeliveryStreamName": EVENTS_STREAM,
            "DeliveryStreamType": "DirectPut",
            "IcebergDestinationConfiguration": Match.object_like(
                {
                    "CatalogConfiguration": {"CatalogArn": f"arn:aws:glue:{REGION}:{ACCOUNT}:catalog"},
                    "RoleARN": role_arn,
                    "AppendOnly": True,
                    "BufferingHints": {"IntervalInSeconds": 60, "SizeInMBs": 128},
                    "CloudWatchLoggingOptions": logging,
                    "DestinationTableConfigurationList": [
                        {"DestinationDatabaseName": "restapi_access_log_iceberg_db", "DestinationTableName": "events"}
                    ],
                    "s3BackupMode": "FailedDataOnly",
                    "S3Configuration": Match.object_like(
                        {
                            "BucketARN": stack_output_ref(outputs.S3_STACK),
                            "RoleARN": role_arn,
                            "CloudWatchLoggingOptions": logging,
                            "Prefix": "restapi_access_log_iceberg_db/events",
                            "ErrorOutputPrefix": CONFIG.events_error_output_prefix,
                        }
                    ),
                }
            ),
        },
    )
    stream = only(events_template(synth), "AWS::KinesisFirehose::DeliveryStream")
    destination = stream["Properties"]["IcebergDestinationConfiguration"]
    # The portal sends rows in the table's shape: no transform Lambda, no upsert keys.
    assert "ProcessingConfiguration" not in destination
    assert "UniqueKeys" not in destination["DestinationTableConfigurationList"][0]
    assert CONFIG.events_error_output_prefix.startswith("events-error/")
    assert "!{firehose:error-output-type}" in CONFIG.events_error_output_prefix
    # The log group the stream logs to exists (Firehose does not create it), with the stream's log stream.
    template_json = events_template(synth)
    assert only(template_json, "AWS::Logs::LogGroup")["Properties"]["LogGroupName"] == EVENTS_LOG_GROUP
    assert only(template_json, "AWS::Logs::LogStream")["Properties"]["LogStreamName"] == "DestinationDelivery"


def test_events_stream_is_created_after_what_firehose_checks(synth):
    """Firehose checks at creation that its role can reach the table: the table, the role's policy and the
    Lake Formation grants come first (and the log group, so the first errors are logged)."""
    template = events_template(synth)
    stream = only(template, "AWS::KinesisFirehose::DeliveryStream")
    expected = {
        *resources(template, "AWS::Glue::Table"),
        *resources(template, "AWS::IAM::Policy"),
        *resources(template, "AWS::LakeFormation::PrincipalPermissions"),
        *resources(template, "AWS::Logs::LogGroup"),
    }
    assert expected <= set(stream["DependsOn"])


def events_role_statements(synth) -> dict[str, dict]:
    policy = only(events_template(synth), "AWS::IAM::Policy")
    return {s["Sid"]: s for s in policy["Properties"]["PolicyDocument"]["Statement"]}


def test_events_firehose_role_may_write_the_events_table_only(synth):
    template = events_template(synth)
    (role_id, role), = resources(template, "AWS::IAM::Role").items()
    assert role["Properties"]["AssumeRolePolicyDocument"]["Statement"] == [
        {
            "Action": "sts:AssumeRole",
            "Effect": "Allow",
            "Principal": {"Service": "firehose.amazonaws.com"},
            "Condition": {"StringEquals": {"sts:ExternalId": ACCOUNT}},
        }
    ]
    assert only(template, "AWS::IAM::Policy")["Properties"]["Roles"] == [{"Ref": role_id}]
    statements = events_role_statements(synth)
    assert set(statements) == {"BucketLevel", "ObjectLevel", "GlueCatalog", "DeliveryErrorLogs"}
    bucket_arn = stack_output_ref(outputs.S3_STACK)
    Template.from_json({"Resources": {"P": {"Type": "X", "Properties": statements}}}).has_resource_properties(
        "X",
        {
            "BucketLevel": Match.object_like({"Resource": bucket_arn}),
            "ObjectLevel": Match.object_like(
                {
                    "Resource": Match.array_equals(
                        [
                            {"Fn::Join": ["", [bucket_arn, "/events-error/year=*"]]},
                            {"Fn::Join": ["", [bucket_arn, "/restapi_access_log_iceberg_db/events/*"]]},
                        ]
                    )
                }
            ),
        },
    )
    assert set(statements["ObjectLevel"]["Action"]) == {
        "s3:AbortMultipartUpload", "s3:GetObject", "s3:PutObject", "s3:DeleteObject",
    }
    glue = statements["GlueCatalog"]
    assert set(glue["Action"]) == {"glue:GetTable", "glue:GetDatabase", "glue:UpdateTable"}
    assert glue["Resource"] == [
        f"arn:aws:glue:{REGION}:{ACCOUNT}:catalog",
        f"arn:aws:glue:{REGION}:{ACCOUNT}:database/restapi_access_log_iceberg_db",
        f"arn:aws:glue:{REGION}:{ACCOUNT}:table/restapi_access_log_iceberg_db/events",
    ]
    logs = statements["DeliveryErrorLogs"]
    assert logs["Action"] == "logs:PutLogEvents"
    assert logs["Resource"] == f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{EVENTS_LOG_GROUP}:log-stream:*"


def test_events_firehose_role_has_lake_formation_grants_on_the_events_table(synth):
    template = synth.template(outputs.EVENTS_STACK)
    role_id = next(iter(resources(events_template(synth), "AWS::IAM::Role")))
    principal = {"DataLakePrincipalIdentifier": {"Fn::GetAtt": [role_id, "Arn"]}}
    template.has_resource(
        "AWS::LakeFormation::PrincipalPermissions",
        {
            "Properties": {
                "Principal": principal,
                "Permissions": ["SELECT", "INSERT", "DELETE", "DESCRIBE", "ALTER"],
                "PermissionsWithGrantOption": [],
                "Resource": {
                    "Table": {"CatalogId": ACCOUNT, "DatabaseName": "restapi_access_log_iceberg_db", "Name": "events"}
                },
            },
            "DependsOn": [next(iter(resources(events_template(synth), "AWS::Glue::Table")))],
        },
    )
    template.has_resource_properties(
        "AWS::LakeFormation::PrincipalPermissions",
        {
            "Principal": principal,
            "Permissions": ["DESCRIBE"],
            "Resource": {"Database": {"CatalogId": ACCOUNT, "Name": "restapi_access_log_iceberg_db"}},
        },
    )
    template.resource_count_is("AWS::LakeFormation::PrincipalPermissions", 2)


def test_portal_policy_puts_record_batches_on_the_events_stream_only(synth):
    template = events_template(synth)
    stream_id = next(iter(resources(template, "AWS::KinesisFirehose::DeliveryStream")))
    (policy_id, policy), = resources(template, "AWS::IAM::ManagedPolicy").items()
    assert policy["Properties"]["PolicyDocument"]["Statement"] == [
        {
            "Sid": "PutEvents",
            "Action": "firehose:PutRecordBatch",
            "Effect": "Allow",
            "Resource": {"Fn::GetAtt": [stream_id, "Arn"]},
        }
    ]
    # Attached to nobody here: the portal's identity is not this app's; the operator attaches the output.
    for key in ("Roles", "Users", "Groups"):
        assert key not in policy["Properties"]
    assert template["Outputs"]["EventsPutRecordsPolicyArn"]["Value"] == {"Ref": policy_id}


def test_events_outputs_are_what_the_portal_reads(synth):
    template = synth.template(outputs.EVENTS_STACK)
    template.has_output("EventsTableName", {"Value": "events"})
    template.has_output("EventsFirehoseStreamName", {"Value": EVENTS_STREAM})
    template.has_output("EventsFirehoseLogGroupName", {"Value": EVENTS_LOG_GROUP})
    stream_id = next(iter(resources(events_template(synth), "AWS::KinesisFirehose::DeliveryStream")))
    template.has_output("EventsFirehoseStreamArn", {"Value": {"Fn::GetAtt": [stream_id, "Arn"]}})
    mapped = {item.setting: (item.stack, item.output_key) for item in outputs.PORTAL_SETTINGS}
    assert mapped["LAKE_EVENTS_TABLE"] == (outputs.EVENTS_STACK, "EventsTableName")
    assert mapped["EVENTS_FIREHOSE_STREAM"] == (outputs.EVENTS_STACK, "EventsFirehoseStreamName")
    assert mapped["LAKE_DATABASE"] == (outputs.TABLE_STACK, "GlueDatabaseName")  # the events table's database too


# --- the entry point ------------------------------------------------------------------------------------


def test_cdk_json_runs_app_py():
    cdk_json = json.loads((INFRA_DIR / "cdk.json").read_text())
    assert cdk_json["app"] == "python3 app.py"


def test_app_py_synthesizes_from_the_infra_directory(tmp_path):
    """`cd infra && python app.py` (what cdk.json runs) writes a cloud assembly with every stack."""
    env = {**os.environ, "CDK_OUTDIR": str(tmp_path), "CDK_DEFAULT_ACCOUNT": ACCOUNT, "CDK_DEFAULT_REGION": REGION}
    result = subprocess.run(
        [sys.executable, "app.py"], cwd=INFRA_DIR, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-4000:]
    for name in outputs.STACK_NAMES:
        assert (tmp_path / f"{name}.template.json").exists()
