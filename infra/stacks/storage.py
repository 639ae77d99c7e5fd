"""Stack 1: the S3 bucket behind the Iceberg table, Firehose's failed-record backup and Athena results."""

from __future__ import annotations

from aws_cdk import CfnOutput, Duration, RemovalPolicy, Stack
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.config import PipelineConfig


class S3BucketStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, config: PipelineConfig, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.bucket = s3.Bucket(
            self,
            "s3bucket",
            bucket_name=config.bucket_name(self.region, self.account),
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            # The access-log records are the evidence behind invoices: a `cdk destroy` leaves the bucket.
            # (The seed destroyed it, which fails anyway once the bucket holds objects.)
            removal_policy=RemovalPolicy.RETAIN,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-athena-results",
                    prefix=config.athena_output_prefix,
                    expiration=Duration.days(config.athena_results_expiration_days),
                ),
                s3.LifecycleRule(id="abort-incomplete-uploads", abort_incomplete_multipart_upload_after=Duration.days(7)),
            ],
        )
        CfnOutput(self, "S3BucketName", value=self.bucket.bucket_name)
