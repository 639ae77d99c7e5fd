"""Stack 8: the metered REST API (GET /random/strings), its Cognito user pool, and access logs to Firehose."""

from __future__ import annotations

from aws_cdk import CfnOutput, Duration, RemovalPolicy, Stack
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cognito as cognito
from aws_cdk import aws_kinesisfirehose as firehose
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra.config import RANDOM_STRINGS_SOURCE_DIR, PipelineConfig
from infra.stacks.transform_lambda import python_function

STAGE_NAME = "prod"
METERED_PATH = ("random", "strings")

# The access-log line: (JSON key, API Gateway variable, quoted?). The seed's fields plus tenant_id.
# Numbers stay unquoted so the line carries the table's types (status int, response_length int,
# request_time epoch ms). API Gateway writes "-" for a variable it has no value for; of the unquoted
# variables only $context.responseLength can be missing (requestId, requestTimeEpoch and status are always
# set), and then the line is invalid JSON (`"response_length": -`). We keep it that way on purpose: the
# transform marks such a line ProcessingFailed, Firehose keeps it under the error prefix in S3
# (s3_backup_mode FailedDataOnly), and no string-typed number ever reaches the int column. Quoting it
# instead would make every length a string, which metering/transform.py rejects for an int column.
ACCESS_LOG_FIELDS: tuple[tuple[str, str, bool], ...] = (
    ("request_id", "$context.requestId", True),
    ("ip", "$context.identity.sourceIp", True),
    ("user", "$context.authorizer.claims['cognito:username']", True),
    ("request_time", "$context.requestTimeEpoch", False),
    ("http_method", "$context.httpMethod", True),
    ("resource_path", "$context.resourcePath", True),
    ("status", "$context.status", False),
    ("protocol", "$context.protocol", True),
    ("response_length", "$context.responseLength", False),
    ("tenant_id", "$context.authorizer.claims['custom:tenant_id']", True),
)


def access_log_format() -> str:
    """The JSON line API Gateway writes per request (one line, no newline)."""
    parts = [f'"{key}": "{var}"' if quoted else f'"{key}": {var}' for key, var, quoted in ACCESS_LOG_FIELDS]
    return "{" + ", ".join(parts) + "}"


class RandomGenApiStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: PipelineConfig,
        delivery_stream: firehose.CfnDeliveryStream,
        **kwargs,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)

        self.user_pool = cognito.UserPool(
            self,
            "UserPool",
            # Off by default: the portal creates tenant users (admin APIs) with their custom:tenant_id; a
            # self-signed-up user would have no tenant and make unattributed calls.
            self_sign_up_enabled=config.cognito_self_sign_up,
            sign_in_aliases=cognito.SignInAliases(email=True),
            auto_verify=cognito.AutoVerifiedAttrs(email=True),
            password_policy=cognito.PasswordPolicy(min_length=8),
            account_recovery=cognito.AccountRecovery.EMAIL_ONLY,
            custom_attributes={
                # Custom attributes cannot be changed or removed once the pool exists.
                "tenant_id": cognito.StringAttribute(min_len=1, max_len=64, mutable=True),
                "role": cognito.StringAttribute(min_len=1, max_len=32, mutable=True),
            },
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.user_pool_client = self.user_pool.add_client(
            "UserPoolClient",
            auth_flows=cognito.AuthFlow(admin_user_password=True, user_password=True, user_srp=True),
            generate_secret=False,
            # Sign-in is by API (initiate-auth), never through the hosted UI's OAuth redirects.
            disable_o_auth=True,
            prevent_user_existence_errors=True,
            # Users may not write custom:tenant_id or custom:role through the client (sign-up or
            # UpdateUserAttributes): only the portal, through the admin APIs, sets who belongs to which
            # tenant. Reading stays allowed, so both claims are in the ID token the authorizer checks.
            write_attributes=cognito.ClientAttributes().with_standard_attributes(email=True, fullname=True),
        )

        self.function = python_function(
            self,
            "RandomStringsFunction",
            prefix="RandomStrings",
            role_description="Execution role of the metered demo API's Lambda",
            # The seed ran this on python3.9, a deprecated runtime that synth-time validation warns about.
            handler="index.handler",
            code=lambda_.Code.from_asset(str(RANDOM_STRINGS_SOURCE_DIR), exclude=["__pycache__", "*.pyc"]),
            description="GET /random/strings: the metered demo API",
            timeout=Duration.seconds(10),
            memory_size=128,
        )

        self.api = apigw.RestApi(
            self,
            "RandomGenApi",
            rest_api_name="saas-metering-random-gen",
            description="Metered demo API; every call's access log goes to Firehose and on to Iceberg",
            # Execution logging to CloudWatch would need the account-wide API Gateway CloudWatch role
            # (the seed's dev stage); metering needs only the access log, which goes to Firehose.
            cloud_watch_role=False,
            deploy_options=apigw.StageOptions(
                stage_name=STAGE_NAME,
                access_log_destination=apigw.FirehoseLogDestination(delivery_stream),
                access_log_format=apigw.AccessLogFormat.custom(access_log_format()),
                metrics_enabled=True,
            ),
        )
        # RestApi adds an output of its own ("RandomGenApiEndpoint<hash>", with a trailing slash); the stack's
        # documented RestApiEndpoint below replaces it, so the outputs file holds only stable keys.
        self.api.node.try_remove_child("Endpoint")
        authorizer = apigw.CognitoUserPoolsAuthorizer(
            self,
            "CognitoAuthorizer",
            cognito_user_pools=[self.user_pool],
            # The raw ID token in Authorization, no "Bearer " (the seed's clients send it that way).
            identity_source=apigw.IdentitySource.header("Authorization"),
        )
        resource = self.api.root
        for part in METERED_PATH:
            resource = resource.add_resource(part)
        resource.add_method(
            "GET",
            apigw.LambdaIntegration(self.function),
            authorizer=authorizer,
            authorization_type=apigw.AuthorizationType.COGNITO,
        )

        stage = self.api.deployment_stage
        endpoint = f"https://{self.api.rest_api_id}.execute-api.{self.region}.{self.url_suffix}/{stage.stage_name}"
        CfnOutput(self, "UserPoolId", value=self.user_pool.user_pool_id)
        CfnOutput(self, "UserPoolClientId", value=self.user_pool_client.user_pool_client_id)
        CfnOutput(self, "RestApiId", value=self.api.rest_api_id)
        CfnOutput(self, "RestApiEndpoint", value=endpoint)
        CfnOutput(self, "RestApiAccessLogToFirehoseARN", value=delivery_stream.attr_arn)
        CfnOutput(self, "Region", value=self.region)
