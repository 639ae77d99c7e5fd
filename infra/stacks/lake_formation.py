"""Stack 6: Lake Formation grants that let the Firehose role write the Iceberg table.

The seed made the CDK execution role a data-lake administrator with `CfnDataLakeSettings`, because it
granted on a table someone else had created in the Athena console. That resource *replaces* the account's
whole administrator list, and CloudFormation owns the list from then on: a surprising thing for an app to
do to an account. Here CloudFormation creates the database and the table itself (stack 2), and in Lake
Formation a creator holds implicit, grantable permissions on what it created, so no administrator change is
needed. Where an account has taken CREATE_DATABASE away from IAMAllowedPrincipals, an administrator adds
the CDK execution role as a data-lake admin once, by hand (infra/README.md, "Lake Formation").
"""

from __future__ import annotations

from aws_cdk import CfnOutput, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lakeformation as lakeformation
from constructs import Construct

from infra.config import PipelineConfig

TABLE_PERMISSIONS = ("SELECT", "INSERT", "DELETE", "DESCRIBE", "ALTER")
DATABASE_PERMISSIONS = ("DESCRIBE",)


class DataLakePermissionsStack(Stack):
    def __init__(
        self, scope: Construct, construct_id: str, *, config: PipelineConfig, firehose_role: iam.IRole, **kwargs
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        principal = lakeformation.CfnPrincipalPermissions.DataLakePrincipalProperty(
            data_lake_principal_identifier=firehose_role.role_arn
        )
        database_grant = lakeformation.CfnPrincipalPermissions(
            self,
            "DatabasePermissions",
            principal=principal,
            permissions=list(DATABASE_PERMISSIONS),
            permissions_with_grant_option=[],
            resource=lakeformation.CfnPrincipalPermissions.ResourceProperty(
                database=lakeformation.CfnPrincipalPermissions.DatabaseResourceProperty(
                    catalog_id=self.account, name=config.database_name
                )
            ),
        )
        # The named table only, not the seed's TableWildcard over every table of the database.
        table_grant = lakeformation.CfnPrincipalPermissions(
            self,
            "TablePermissions",
            principal=principal,
            permissions=list(TABLE_PERMISSIONS),
            permissions_with_grant_option=[],
            resource=lakeformation.CfnPrincipalPermissions.ResourceProperty(
                table=lakeformation.CfnPrincipalPermissions.TableResourceProperty(
                    catalog_id=self.account, database_name=config.database_name, name=config.table_name
                )
            ),
        )
        for grant in (database_grant, table_grant):
            grant.apply_removal_policy(RemovalPolicy.DESTROY)

        CfnOutput(self, "Principal", value=table_grant.attr_principal_identifier)
