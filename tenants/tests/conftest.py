"""Identity fixtures: a local identity with its own key directory, and a Cognito pool under moto."""

import boto3
import pytest
from moto import mock_aws

from tenants.identity import tokens


@pytest.fixture
def local_identity(settings, tmp_path):
    """The local backend, with a signing key made for this test (under a private VAR_DIR)."""
    settings.IDENTITY_BACKEND = "local"
    settings.VAR_DIR = tmp_path
    tokens.clear_jwks_cache()
    yield settings
    tokens.clear_jwks_cache()


@pytest.fixture
def cognito_pool(settings, monkeypatch):
    """A moto user pool shaped like the deployed one: email as username, custom:tenant_id and custom:role."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        client = boto3.client("cognito-idp", region_name="us-east-1")
        pool = client.create_user_pool(
            PoolName="tenants",
            UsernameAttributes=["email"],
            Schema=[
                {"Name": "tenant_id", "AttributeDataType": "String", "Mutable": True},
                {"Name": "role", "AttributeDataType": "String", "Mutable": True},
            ],
        )["UserPool"]
        app = client.create_user_pool_client(
            UserPoolId=pool["Id"],
            ClientName="portal",
            ExplicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH", "ALLOW_ADMIN_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
        )["UserPoolClient"]
        settings.IDENTITY_BACKEND = "cognito"
        settings.COGNITO_USER_POOL_ID = pool["Id"]
        settings.COGNITO_CLIENT_ID = app["ClientId"]
        settings.COGNITO_REGION = "us-east-1"
        tokens.clear_jwks_cache()
        yield client
        tokens.clear_jwks_cache()
