"""Stack 4: the Firehose transform Lambda, packaging metering/transform.py alone (not a copy kept here)."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

from aws_cdk import CfnOutput, Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.config import TRANSFORM_HANDLER, PipelineConfig

LAMBDA_RUNTIME = lambda_.Runtime.PYTHON_3_13


def python_function(
    scope: Construct, construct_id: str, *, role_description: str, prefix: str | None = None, **function_props
) -> lambda_.Function:
    """A Python Lambda on the current runtime with a log group and an execution role of its own.

    A role of our own instead of AWSLambdaBasicExecutionRole: that managed policy allows writing to any
    log group (Resource "*"); this one may write only to the function's own group. Construct ids are
    `<prefix>LogGroup`, `<prefix>Role` (prefix defaults to the function's id) and the function's id.
    """
    prefix = prefix or construct_id
    log_group = logs.LogGroup(
        scope,
        f"{prefix}LogGroup",
        retention=logs.RetentionDays.TWO_WEEKS,
        removal_policy=RemovalPolicy.DESTROY,
    )
    role = iam.Role(
        scope,
        f"{prefix}Role",
        assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
        description=role_description,
    )
    log_group.grant_write(role)
    return lambda_.Function(
        scope,
        construct_id,
        runtime=LAMBDA_RUNTIME,
        architecture=lambda_.Architecture.ARM_64,
        role=role,
        log_group=log_group,
        **function_props,
    )


def stage_single_module(source: Path) -> Path:
    """Copy one module into a fresh directory and return the directory, for `Code.from_asset`.

    The transform imports only the standard library, so the module alone is the whole deployment package.
    Copying at synth time keeps one source of truth (metering/transform.py) and keeps the rest of the
    metering app (Django models, secrets in settings) out of the Lambda. The asset hash is the content's,
    so the temporary path does not cause redeploys. The directory is removed when the process exits,
    after synthesis has copied it into the cloud assembly.
    """
    if not source.is_file():
        raise FileNotFoundError(f"the Firehose transform module is missing: {source}")
    staging = Path(tempfile.mkdtemp(prefix="metering-transform-asset-"))
    atexit.register(shutil.rmtree, staging, True)
    shutil.copyfile(source, staging / source.name)
    return staging


class FirehoseDataProcLambdaStack(Stack):
    def __init__(
        self, scope: Construct, construct_id: str, *, config: PipelineConfig, transform_source: Path, **kwargs
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)

        self.data_proc_lambda_fn = python_function(
            self,
            "FirehoseToIcebergTransformer",
            role_description="Execution role of the Firehose-to-Iceberg transform Lambda",
            handler=TRANSFORM_HANDLER,
            code=lambda_.Code.from_asset(str(stage_single_module(transform_source))),
            description="Validates API Gateway access-log records and routes them to the Iceberg table",
            environment={
                "IcebergDatabaseName": config.database_name,
                "IcebergTableName": config.table_name,
                "IcebergTableUniqueKeys": ",".join(config.unique_keys),
            },
            timeout=Duration.minutes(1),
            memory_size=256,
        )

        CfnOutput(self, "FirehoseDataProcFuncName", value=self.data_proc_lambda_fn.function_name)
        CfnOutput(self, "FirehoseDataProcFuncArn", value=self.data_proc_lambda_fn.function_arn)
