"""Stack 3: the Athena workgroup the portal's usage queries run in, with its result location enforced."""

from __future__ import annotations

from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_athena as athena
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.config import PipelineConfig


class AthenaWorkGroupStack(Stack):
    def __init__(
        self, scope: Construct, construct_id: str, *, config: PipelineConfig, bucket: s3.IBucket, **kwargs
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.output_location = config.athena_output_location(bucket.bucket_name)
        self.workgroup = athena.CfnWorkGroup(
            self,
            "WorkGroup",
            name=config.athena_workgroup_name,
            description="Usage queries of the metering portal over the access-log Iceberg table",
            state="ENABLED",
            # Let `cdk destroy` remove the workgroup even when it holds saved queries.
            recursive_delete_option=True,
            work_group_configuration=athena.CfnWorkGroup.WorkGroupConfigurationProperty(
                enforce_work_group_configuration=True,
                publish_cloud_watch_metrics_enabled=True,
                engine_version=athena.CfnWorkGroup.EngineVersionProperty(
                    selected_engine_version="Athena engine version 3"
                ),
                result_configuration=athena.CfnWorkGroup.ResultConfigurationProperty(
                    output_location=self.output_location,
                    encryption_configuration=athena.CfnWorkGroup.EncryptionConfigurationProperty(
                        encryption_option="SSE_S3"
                    ),
                ),
            ),
        )
        CfnOutput(self, "AthenaWorkGroupName", value=self.workgroup.ref)
        CfnOutput(self, "AthenaOutputLocation", value=self.output_location)
