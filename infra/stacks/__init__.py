"""The pipeline's stacks and `build_app`, which adds them to an App in deployment order."""

from __future__ import annotations

from pathlib import Path

import aws_cdk as cdk

from infra import outputs
from infra.config import TRANSFORM_SOURCE, PipelineConfig
from infra.stacks.api import RandomGenApiStack
from infra.stacks.athena import AthenaWorkGroupStack
from infra.stacks.catalog import IcebergTableStack
from infra.stacks.events import EventsToIcebergStack
from infra.stacks.firehose import FirehoseToIcebergStack
from infra.stacks.firehose_role import FirehoseRoleStack
from infra.stacks.lake_formation import DataLakePermissionsStack
from infra.stacks.storage import S3BucketStack
from infra.stacks.transform_lambda import FirehoseDataProcLambdaStack

# Stack-level tags (with @aws-cdk/core:explicitStackTags, Tags.of(stack) would not tag the stack).
STACK_TAGS = {"project": "saas-metering-portal"}
CONTEXT_KEYS = ("data_firehose_configuration", "athena_configuration", "cognito_configuration", "events_configuration")


def config_from_app(app: cdk.App) -> PipelineConfig:
    return PipelineConfig.from_context({key: app.node.try_get_context(key) for key in CONTEXT_KEYS})


def build_app(
    app: cdk.App,
    *,
    env: cdk.Environment | None = None,
    config: PipelineConfig | None = None,
    transform_source: Path = TRANSFORM_SOURCE,
) -> dict[str, cdk.Stack]:
    """Add the nine stacks to `app`, each depending on the one before; return them by stack name.

    `config` defaults to the app's context; `transform_source` is the module the transform Lambda packages.
    """
    config = config or config_from_app(app)
    common = {"env": env, "config": config, "tags": STACK_TAGS}

    s3_stack = S3BucketStack(app, outputs.S3_STACK, **common)
    bucket = s3_stack.bucket
    table_stack = IcebergTableStack(app, outputs.TABLE_STACK, bucket=bucket, **common)
    athena_stack = AthenaWorkGroupStack(app, outputs.ATHENA_STACK, bucket=bucket, **common)
    lambda_stack = FirehoseDataProcLambdaStack(
        app, outputs.TRANSFORM_LAMBDA_STACK, transform_source=transform_source, **common
    )
    transform_fn = lambda_stack.data_proc_lambda_fn
    role_stack = FirehoseRoleStack(
        app, outputs.FIREHOSE_ROLE_STACK, transform_function=transform_fn, bucket=bucket, **common
    )
    lf_stack = DataLakePermissionsStack(
        app, outputs.LAKE_FORMATION_STACK, firehose_role=role_stack.firehose_role, **common
    )
    firehose_stack = FirehoseToIcebergStack(
        app,
        outputs.FIREHOSE_STACK,
        transform_function=transform_fn,
        bucket=bucket,
        firehose_role=role_stack.firehose_role,
        **common,
    )
    api_stack = RandomGenApiStack(
        app, outputs.API_STACK, delivery_stream=firehose_stack.delivery_stream, **common
    )

    # The events pipeline (issue 15) comes last: it needs only the bucket and the database, and appending it
    # leaves the eight access-log stacks as they were.
    events_stack = EventsToIcebergStack(app, outputs.EVENTS_STACK, bucket=bucket, **common)

    ordered = [
        s3_stack, table_stack, athena_stack, lambda_stack, role_stack, lf_stack, firehose_stack, api_stack,
        events_stack,
    ]
    # A chain, as in the seed: `cdk deploy --all` deploys them one after another in this order, and any
    # single stack can be deployed once those before it exist.
    for before, after in zip(ordered, ordered[1:], strict=False):
        after.add_stack_dependency(before)
    return {stack.stack_name: stack for stack in ordered}
