"""Stack 7: the Firehose delivery stream from API Gateway access logs into the Iceberg table."""

from __future__ import annotations

from aws_cdk import CfnOutput, CfnTag, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kinesisfirehose as firehose
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.config import PipelineConfig

Cfn = firehose.CfnDeliveryStream


class FirehoseToIcebergStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: PipelineConfig,
        transform_function: lambda_.IFunction,
        bucket: s3.IBucket,
        firehose_role: iam.IRole,
        **kwargs,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)

        # Firehose does not create its log group when configured through CloudFormation: without these two
        # resources its delivery errors were never logged anywhere.
        log_group = logs.LogGroup(
            self,
            "DeliveryLogGroup",
            log_group_name=config.firehose_log_group_name,
            retention=logs.RetentionDays.ONE_MONTH,
            removal_policy=RemovalPolicy.DESTROY,
        )
        logs.LogStream(
            self,
            "DeliveryLogStream",
            log_group=log_group,
            log_stream_name=config.firehose_log_stream_name,
            removal_policy=RemovalPolicy.DESTROY,
        )
        logging = Cfn.CloudWatchLoggingOptionsProperty(
            enabled=True,
            log_group_name=config.firehose_log_group_name,
            log_stream_name=config.firehose_log_stream_name,
        )
        buffering = Cfn.BufferingHintsProperty(
            interval_in_seconds=config.buffering_interval_seconds, size_in_m_bs=config.buffering_size_mbs
        )

        def parameter(name: str, value: str | int) -> Cfn.ProcessorParameterProperty:
            return Cfn.ProcessorParameterProperty(parameter_name=name, parameter_value=str(value))

        processing = Cfn.ProcessingConfigurationProperty(
            enabled=True,
            processors=[
                Cfn.ProcessorProperty(
                    type="Lambda",
                    parameters=[
                        # The unqualified ARN: the role's lambda:InvokeFunction names exactly this.
                        parameter("LambdaArn", transform_function.function_arn),
                        parameter("NumberOfRetries", config.lambda_number_of_retries),
                        parameter("RoleArn", firehose_role.role_arn),
                        parameter("BufferSizeInMBs", config.lambda_buffer_size_mbs),
                        parameter("BufferIntervalInSeconds", config.lambda_buffer_interval_seconds),
                    ],
                )
            ],
        )

        self.delivery_stream = Cfn(
            self,
            "FirehoseToIceberg",
            delivery_stream_name=config.delivery_stream_name,
            delivery_stream_type="DirectPut",
            iceberg_destination_configuration=Cfn.IcebergDestinationConfigurationProperty(
                catalog_configuration=Cfn.CatalogConfigurationProperty(
                    catalog_arn=self.format_arn(service="glue", resource="catalog")
                ),
                role_arn=firehose_role.role_arn,
                buffering_hints=buffering,
                cloud_watch_logging_options=logging,
                destination_table_configuration_list=[
                    Cfn.DestinationTableConfigurationProperty(
                        destination_database_name=config.database_name,
                        destination_table_name=config.table_name,
                        unique_keys=list(config.unique_keys) or None,
                    )
                ],
                processing_configuration=processing,
                # Records the transform marks ProcessingFailed (invalid JSON, bad fields) and records
                # Iceberg refuses land in the bucket under the error prefix, for inspection and replay.
                s3_backup_mode="FailedDataOnly",
                s3_configuration=Cfn.S3DestinationConfigurationProperty(
                    bucket_arn=bucket.bucket_arn,
                    role_arn=firehose_role.role_arn,
                    buffering_hints=buffering,
                    cloud_watch_logging_options=logging,
                    compression_format="UNCOMPRESSED",
                    prefix=config.output_prefix,
                    error_output_prefix=config.error_output_prefix,
                ),
            ),
            tags=[CfnTag(key="Name", value=config.delivery_stream_name)],
        )
        self.delivery_stream.node.add_dependency(log_group)

        CfnOutput(self, "S3DestBucket", value=bucket.bucket_name)
        CfnOutput(self, "DataFirehoseStreamName", value=config.delivery_stream_name)
        CfnOutput(self, "DataFirehoseStreamArn", value=self.delivery_stream.attr_arn)
        CfnOutput(self, "DataFirehoseLogGroupName", value=config.firehose_log_group_name)
