"""Stack 5: the role Firehose assumes, with each statement narrowed to the resources it touches."""

from __future__ import annotations

from aws_cdk import ArnFormat, CfnOutput, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.config import PipelineConfig


class FirehoseRoleStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: PipelineConfig,
        transform_function: lambda_.IFunction,
        bucket: s3.IBucket,
        **kwargs,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)

        self.firehose_role = iam.Role(
            self,
            "KinesisFirehoseServiceRole",
            # Only Firehose acting for this account may assume it (the confused-deputy guard AWS documents).
            assumed_by=iam.ServicePrincipal(
                "firehose.amazonaws.com", conditions={"StringEquals": {"sts:ExternalId": self.account}}
            ),
            description=f"Firehose stream {config.delivery_stream_name} writing to the Iceberg table",
        )
        glue_resources = [
            self.format_arn(service="glue", resource="catalog"),
            self.format_arn(service="glue", resource="database", resource_name=config.database_name),
            self.format_arn(
                service="glue", resource="table", resource_name=f"{config.database_name}/{config.table_name}"
            ),
        ]
        # The seed named /aws/kinesisfirehose/{stream_name} here while the stream logs to
        # /aws/kinesisfirehose/amazon-apigateway-{stream_name}: both now come from the same config property.
        log_group_arn = self.format_arn(
            service="logs",
            resource="log-group",
            resource_name=config.firehose_log_group_name,
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        statements = [
            iam.PolicyStatement(
                sid="BucketLevel",
                actions=["s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"],
                resources=[bucket.bucket_arn],
            ),
            iam.PolicyStatement(
                # Iceberg rewrites and deletes its own data and metadata files.
                sid="ObjectLevel",
                actions=["s3:AbortMultipartUpload", "s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                resources=[bucket.arn_for_objects("*")],
            ),
            iam.PolicyStatement(
                sid="GlueCatalog",
                actions=["glue:GetTable", "glue:GetDatabase", "glue:UpdateTable"],
                resources=glue_resources,
            ),
            iam.PolicyStatement(
                sid="TransformLambda",
                actions=["lambda:InvokeFunction", "lambda:GetFunctionConfiguration"],
                resources=[transform_function.function_arn],
            ),
            iam.PolicyStatement(
                sid="DeliveryErrorLogs",
                actions=["logs:PutLogEvents"],
                resources=[f"{log_group_arn}:log-stream:*"],
            ),
        ]
        # The seed also allowed the EC2 network-interface actions (Resource "*"), which Firehose needs only
        # for a VPC destination; this stream has none, so they are left out.
        self.policy = iam.Policy(self, "FirehoseRolePolicy", statements=statements)
        self.policy.attach_to_role(self.firehose_role)

        CfnOutput(self, "FirehoseRole", value=self.firehose_role.role_name)
        CfnOutput(self, "FirehoseRoleArn", value=self.firehose_role.role_arn)
