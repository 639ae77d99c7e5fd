"""Stack 9: the events pipeline (issue 15): the Iceberg `events` table, the Direct PUT stream into it, its
role and Lake Formation grants, and the managed policy that lets the portal put records on the stream.

The portal validates and deduplicates each event and sends the table's rows as JSON with
`firehose:PutRecordBatch`, so the stream has no transform Lambda: records go straight into the table, and
Firehose keeps a record the table refuses under the error prefix. Everything the stream needs is in this
one stack, created before the stream (Firehose checks at creation that its role can read the table).
"""

from __future__ import annotations

from aws_cdk import ArnFormat, CfnOutput, CfnTag, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kinesisfirehose as firehose
from aws_cdk import aws_lakeformation as lakeformation
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.config import EVENTS_COLUMNS, EVENTS_PARTITION_SOURCE_COLUMN, PipelineConfig
from infra.stacks.catalog import iceberg_table
from infra.stacks.lake_formation import DATABASE_PERMISSIONS, TABLE_PERMISSIONS

Cfn = firehose.CfnDeliveryStream
LF = lakeformation.CfnPrincipalPermissions

# What the portal may do with the stream: put batches of records, nothing else.
PORTAL_ACTIONS = ("firehose:PutRecordBatch",)


class EventsToIcebergStack(Stack):
    def __init__(
        self, scope: Construct, construct_id: str, *, config: PipelineConfig, bucket: s3.IBucket, **kwargs
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        database, table_name = config.database_name, config.events_table_name
        self.table_location = config.events_table_location(bucket.bucket_name)

        # --- the table (in the access-log table's database, which stack 2 creates) --------------------------
        self.table = iceberg_table(
            self, "EventsTable", catalog_id=self.account, database_name=database, name=table_name,
            location=self.table_location, columns=EVENTS_COLUMNS, partition_column=EVENTS_PARTITION_SOURCE_COLUMN,
        )

        # --- the stream's role: this table, its two prefixes in the bucket, its own log group ---------------
        self.firehose_role = iam.Role(
            self,
            "EventsFirehoseRole",
            assumed_by=iam.ServicePrincipal(
                "firehose.amazonaws.com", conditions={"StringEquals": {"sts:ExternalId": self.account}}
            ),
            description=f"Firehose stream {config.events_stream_name} writing to the Iceberg table {table_name}",
        )
        log_group_arn = self.format_arn(
            service="logs",
            resource="log-group",
            resource_name=config.events_log_group_name,
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        self.policy = iam.Policy(
            self,
            "EventsFirehoseRolePolicy",
            statements=[
                iam.PolicyStatement(
                    sid="BucketLevel",
                    actions=["s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"],
                    resources=[bucket.bucket_arn],
                ),
                iam.PolicyStatement(
                    # Iceberg rewrites and deletes its own data and metadata files, all under the table's
                    # location; failed records go under the error prefix. Nothing else in the bucket.
                    sid="ObjectLevel",
                    actions=["s3:AbortMultipartUpload", "s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                    resources=[
                        bucket.arn_for_objects(f"{config.events_table_prefix}/*"),
                        bucket.arn_for_objects(f"{config.events_error_prefix_static.lstrip('/')}*"),
                    ],
                ),
                iam.PolicyStatement(
                    sid="GlueCatalog",
                    actions=["glue:GetTable", "glue:GetDatabase", "glue:UpdateTable"],
                    resources=[
                        self.format_arn(service="glue", resource="catalog"),
                        self.format_arn(service="glue", resource="database", resource_name=database),
                        self.format_arn(service="glue", resource="table", resource_name=f"{database}/{table_name}"),
                    ],
                ),
                iam.PolicyStatement(
                    sid="DeliveryErrorLogs",
                    actions=["logs:PutLogEvents"],
                    resources=[f"{log_group_arn}:log-stream:*"],
                ),
            ],
        )
        self.policy.attach_to_role(self.firehose_role)

        # --- Lake Formation grants, as stack 6 gives the access-log stream's role -------------------------
        principal = LF.DataLakePrincipalProperty(data_lake_principal_identifier=self.firehose_role.role_arn)
        database_grant = LF(
            self,
            "EventsDatabasePermissions",
            principal=principal,
            permissions=list(DATABASE_PERMISSIONS),
            permissions_with_grant_option=[],
            resource=LF.ResourceProperty(database=LF.DatabaseResourceProperty(catalog_id=self.account, name=database)),
        )
        table_grant = LF(
            self,
            "EventsTablePermissions",
            principal=principal,
            permissions=list(TABLE_PERMISSIONS),
            permissions_with_grant_option=[],
            resource=LF.ResourceProperty(
                table=LF.TableResourceProperty(catalog_id=self.account, database_name=database, name=table_name)
            ),
        )
        for grant in (database_grant, table_grant):
            grant.apply_removal_policy(RemovalPolicy.DESTROY)
        table_grant.add_resource_dependency(self.table)

        # --- the log group (Firehose does not create it) and the stream -----------------------------------
        log_group = logs.LogGroup(
            self,
            "EventsDeliveryLogGroup",
            log_group_name=config.events_log_group_name,
            retention=logs.RetentionDays.ONE_MONTH,
            removal_policy=RemovalPolicy.DESTROY,
        )
        logs.LogStream(
            self,
            "EventsDeliveryLogStream",
            log_group=log_group,
            log_stream_name=config.firehose_log_stream_name,
            removal_policy=RemovalPolicy.DESTROY,
        )
        logging = Cfn.CloudWatchLoggingOptionsProperty(
            enabled=True,
            log_group_name=config.events_log_group_name,
            log_stream_name=config.firehose_log_stream_name,
        )
        buffering = Cfn.BufferingHintsProperty(
            interval_in_seconds=config.events_buffering_interval_seconds,
            size_in_m_bs=config.events_buffering_size_mbs,
        )
        self.delivery_stream = Cfn(
            self,
            "EventsFirehoseToIceberg",
            delivery_stream_name=config.events_stream_name,
            delivery_stream_type="DirectPut",
            iceberg_destination_configuration=Cfn.IcebergDestinationConfigurationProperty(
                catalog_configuration=Cfn.CatalogConfigurationProperty(
                    catalog_arn=self.format_arn(service="glue", resource="catalog")
                ),
                role_arn=self.firehose_role.role_arn,
                buffering_hints=buffering,
                cloud_watch_logging_options=logging,
                # One table and no unique keys: every record is an insert. The portal sends an event once;
                # a record Firehose redelivers is the same (tenant_id, transaction_id), which readers count once.
                # Append-only lets a Direct PUT stream scale past its default throughput (5 MiB/s or less).
                append_only=True,
                destination_table_configuration_list=[
                    Cfn.DestinationTableConfigurationProperty(
                        destination_database_name=database, destination_table_name=table_name
                    )
                ],
                s3_backup_mode="FailedDataOnly",
                s3_configuration=Cfn.S3DestinationConfigurationProperty(
                    bucket_arn=bucket.bucket_arn,
                    role_arn=self.firehose_role.role_arn,
                    buffering_hints=buffering,
                    cloud_watch_logging_options=logging,
                    compression_format="UNCOMPRESSED",
                    prefix=config.events_table_prefix,
                    error_output_prefix=config.events_error_output_prefix,
                ),
            ),
            tags=[CfnTag(key="Name", value=config.events_stream_name)],
        )
        # Firehose checks the role's access to the table when it creates the stream.
        for dependency in (log_group, self.table, self.policy, database_grant, table_grant):
            self.delivery_stream.node.add_dependency(dependency)

        # --- what the portal's own identity needs to send events ------------------------------------------
        self.portal_policy = iam.ManagedPolicy(
            self,
            "EventsPutRecordsPolicy",
            description=f"Attach to the portal's role or user: PutRecordBatch on {config.events_stream_name} only",
            statements=[
                iam.PolicyStatement(
                    sid="PutEvents", actions=list(PORTAL_ACTIONS), resources=[self.delivery_stream.attr_arn]
                )
            ],
        )

        CfnOutput(self, "EventsTableName", value=table_name)
        CfnOutput(self, "EventsTableLocation", value=self.table_location)
        CfnOutput(self, "EventsFirehoseStreamName", value=config.events_stream_name)
        CfnOutput(self, "EventsFirehoseStreamArn", value=self.delivery_stream.attr_arn)
        CfnOutput(self, "EventsFirehoseRoleArn", value=self.firehose_role.role_arn)
        CfnOutput(self, "EventsFirehoseLogGroupName", value=config.events_log_group_name)
        CfnOutput(self, "EventsPutRecordsPolicyArn", value=self.portal_policy.managed_policy_arn)

