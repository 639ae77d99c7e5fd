"""Stack 2: the Glue database and the Iceberg table that the seed created by hand in the Athena console."""

from __future__ import annotations

from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_glue as glue
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.config import ICEBERG_COLUMNS, PARTITION_SOURCE_COLUMN, PARTITION_TRANSFORM, PipelineConfig

# Iceberg numbers partition fields from 1000 by convention, apart from the schema's field ids.
FIRST_PARTITION_FIELD_ID = 1000


def iceberg_table(
    scope: Construct, construct_id: str, *, catalog_id: str, database_name: str, name: str, location: str,
    columns, partition_column: str,
) -> glue.CfnTable:
    """A Glue Iceberg table (v2, Parquet with Snappy) partitioned by PARTITION_TRANSFORM of `partition_column`;
    `columns` are (name, Iceberg type, field id). Glue writes the table's first metadata itself."""
    source_id = next(fid for column, _, fid in columns if column == partition_column)
    return glue.CfnTable(
        scope,
        construct_id,
        catalog_id=catalog_id,
        database_name=database_name,
        name=name,
        open_table_format_input=glue.CfnTable.OpenTableFormatInputProperty(
            iceberg_input=glue.CfnTable.IcebergInputProperty(
                metadata_operation="CREATE",
                version="2",
                iceberg_table_input=glue.CfnTable.IcebergTableInputProperty(
                    location=location,
                    schema=glue.CfnTable.IcebergSchemaProperty(
                        schema_id=0,
                        type="struct",
                        fields=[
                            glue.CfnTable.IcebergStructFieldProperty(
                                id=field_id, name=column, type=iceberg_type, required=False
                            )
                            for column, iceberg_type, field_id in columns
                        ],
                    ),
                    partition_spec=glue.CfnTable.IcebergPartitionSpecProperty(
                        spec_id=0,
                        fields=[
                            glue.CfnTable.IcebergPartitionFieldProperty(
                                field_id=FIRST_PARTITION_FIELD_ID,
                                name=f"{partition_column}_{PARTITION_TRANSFORM}",
                                source_id=source_id,
                                transform=PARTITION_TRANSFORM,
                            )
                        ],
                    ),
                    properties={
                        "write.format.default": "parquet",
                        "write.parquet.compression-codec": "snappy",
                    },
                ),
            )
        ),
    )


class IcebergTableStack(Stack):
    def __init__(
        self, scope: Construct, construct_id: str, *, config: PipelineConfig, bucket: s3.IBucket, **kwargs
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.database_name = config.database_name
        self.table_name = config.table_name
        self.table_location = config.table_location(bucket.bucket_name)

        self.database = glue.CfnDatabase(
            self,
            "IcebergDatabase",
            catalog_id=self.account,
            database_input=glue.CfnDatabase.DatabaseInputProperty(
                name=config.database_name,
                description="API Gateway access logs of the metered API, one row per call",
            ),
        )

        # Glue writes the Iceberg metadata itself (IcebergInput + IcebergTableInput), so the table is
        # partitioned by day(request_time) from its first snapshot. The older TableInput/StorageDescriptor
        # form cannot express an Iceberg partition spec; this one has no TableInput at all.
        self.table = iceberg_table(
            self, "IcebergTable", catalog_id=self.account, database_name=config.database_name,
            name=config.table_name, location=self.table_location, columns=ICEBERG_COLUMNS,
            partition_column=PARTITION_SOURCE_COLUMN,
        )
        self.table.add_resource_dependency(self.database)

        CfnOutput(self, "GlueDatabaseName", value=config.database_name)
        CfnOutput(self, "GlueTableName", value=config.table_name)
        CfnOutput(self, "GlueTableLocation", value=self.table_location)
