"""The Cognito identity backend (boto3 cognito-idp): tenant users in the metered API's user pool.

The pool id, app client id and region come from settings (COGNITO_*), which a deploy fills from the
pipeline's outputs (infra/outputs.py). The app client must allow USER_PASSWORD_AUTH, have no client
secret, and must NOT list custom:tenant_id or custom:role among its writable attributes: the portal sets
them with admin calls, and a user able to rewrite them could move into another tenant.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from portal.kernel import pipeline_setting
from tenants.identity.base import (
    IdentityBackend,
    IdentityError,
    IdentityUser,
    InvalidCredentials,
    VerifierConfig,
    generate_temporary_password,
)
from tenants.identity.tokens import jwks_fetcher

logger = logging.getLogger(__name__)

TENANT_ATTRIBUTE = "custom:tenant_id"
ROLE_ATTRIBUTE = "custom:role"

# Error codes whose message is safe and useful to show as is.
_USER_FACING = {
    "InvalidPasswordException": "The identity provider refused the password: it does not meet the pool's policy.",
    "UsernameExistsException": "A user with this email already exists in the identity provider.",
    "AliasExistsException": "A user with this email already exists in the identity provider.",
    "UserNotFoundException": "No such user in the identity provider.",
    "TooManyRequestsException": "The identity provider is busy; try again in a minute.",
    "LimitExceededException": "The identity provider is busy; try again in a minute.",
}


@dataclass(frozen=True)
class CognitoPool:
    user_pool_id: str
    client_id: str
    region: str

    @property
    def issuer(self) -> str:
        return f"https://cognito-idp.{self.region}.amazonaws.com/{self.user_pool_id}"


def configured_pool() -> CognitoPool:
    """The pool from settings; IdentityError when it is not configured."""
    # A deployed pipeline environment (portal.deployments) supplies these unless the environment sets them.
    pool = CognitoPool(pipeline_setting("COGNITO_USER_POOL_ID"), pipeline_setting("COGNITO_CLIENT_ID"),
                       pipeline_setting("COGNITO_REGION"))
    if not pool.user_pool_id or not pool.client_id:
        raise IdentityError(
            "IDENTITY_BACKEND=cognito needs COGNITO_USER_POOL_ID and COGNITO_CLIENT_ID "
            "(the UserPoolId and UserPoolClientId outputs of the deployed API stack)."
        )
    return pool


def _error(exc: Exception, action: str) -> IdentityError:
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        logger.warning("Cognito %s failed: %s", action, exc)
        message = _USER_FACING.get(code, f"The identity provider refused to {action} ({code or 'error'}).")
        return IdentityError(message, {"code": code})
    logger.warning("Cognito %s failed: %s", action, exc)
    return IdentityError(f"The identity provider could not be reached to {action}.")


def _attrs(raw: list[dict]) -> dict[str, str]:
    return {a["Name"]: a["Value"] for a in raw or []}


class CognitoIdentityBackend(IdentityBackend):
    name = "cognito"

    def __init__(self, pool: CognitoPool | None = None, client=None):
        self.pool = pool or configured_pool()
        self.client = client or boto3.client("cognito-idp", region_name=self.pool.region)
        self._username_attributes: list[str] | None = None

    def _call(self, action: str, method: str, **kwargs):
        try:
            return getattr(self.client, method)(UserPoolId=self.pool.user_pool_id, **kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise _error(exc, action) from exc

    def _uses_email_as_username(self) -> bool:
        if self._username_attributes is None:
            pool = self._call("read the user pool", "describe_user_pool")["UserPool"]
            self._username_attributes = pool.get("UsernameAttributes") or []
        return "email" in self._username_attributes

    def _to_user(self, username: str, attributes: dict[str, str], enabled: bool) -> IdentityUser:
        return IdentityUser(
            username=username,
            email=attributes.get("email", ""),
            tenant_id=attributes.get(TENANT_ATTRIBUTE, ""),
            role=attributes.get(ROLE_ATTRIBUTE, ""),
            enabled=enabled,
            attributes=attributes,
        )

    def _ensure_group(self, tenant_id: str) -> None:
        try:
            self.client.create_group(
                UserPoolId=self.pool.user_pool_id, GroupName=tenant_id, Description=f"Users of tenant {tenant_id}"
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "GroupExistsException":
                raise _error(exc, "create the tenant's group") from exc
        except BotoCoreError as exc:
            raise _error(exc, "create the tenant's group") from exc

    def create_user(self, *, tenant_id: str, email: str, role: str, password: str) -> IdentityUser:
        # An email-username pool (the deployed one) takes the email and names the user by its sub; a pool
        # with free usernames gets a UUID, so cognito:username is an opaque id either way.
        requested = email if self._uses_email_as_username() else str(uuid.uuid4())
        self._ensure_group(tenant_id)
        response = self._call(
            "create the user",
            "admin_create_user",
            Username=requested,
            UserAttributes=[
                {"Name": "email", "Value": email},
                {"Name": "email_verified", "Value": "true"},  # the portal verified it at signup or invite
                {"Name": TENANT_ATTRIBUTE, "Value": tenant_id},
                {"Name": ROLE_ATTRIBUTE, "Value": role},
            ],
            # The portal sends its own email; a temporary password nobody knows is replaced just below.
            MessageAction="SUPPRESS",
            TemporaryPassword=generate_temporary_password(),
        )
        username = response["User"]["Username"]
        try:
            self._call("add the user to the tenant's group", "admin_add_user_to_group",
                       Username=username, GroupName=tenant_id)
            self.set_password(username=username, password=password)
        except IdentityError:
            # Leave nothing half made in the pool: the caller sees one failure and no user.
            try:
                self.delete_user(username=username)
            except IdentityError:
                logger.error("Cognito user %s could not be removed after a failed creation", username)
            raise
        return self._to_user(username, _attrs(response["User"].get("Attributes")), True)

    def set_password(self, *, username: str, password: str) -> None:
        self._call("set the password", "admin_set_user_password", Username=username, Password=password, Permanent=True)

    def disable_user(self, *, username: str) -> None:
        self._call("disable the user", "admin_disable_user", Username=username)

    def enable_user(self, *, username: str) -> None:
        self._call("enable the user", "admin_enable_user", Username=username)

    def delete_user(self, *, username: str) -> None:
        try:
            self.client.admin_delete_user(UserPoolId=self.pool.user_pool_id, Username=username)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "UserNotFoundException":
                return  # already gone: deleting twice is not an error
            raise _error(exc, "delete the user") from exc
        except BotoCoreError as exc:
            raise _error(exc, "delete the user") from exc

    def get_user(self, *, username: str) -> IdentityUser | None:
        try:
            response = self.client.admin_get_user(UserPoolId=self.pool.user_pool_id, Username=username)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "UserNotFoundException":
                return None
            raise _error(exc, "read the user") from exc
        except BotoCoreError as exc:
            raise _error(exc, "read the user") from exc
        return self._to_user(response["Username"], _attrs(response.get("UserAttributes")), response.get("Enabled", True))

    def list_users(self, *, tenant_id: str) -> list[IdentityUser]:
        users, token = [], None
        while True:
            kwargs = {"GroupName": tenant_id, "Limit": 60}
            if token:
                kwargs["NextToken"] = token
            try:
                page = self.client.list_users_in_group(UserPoolId=self.pool.user_pool_id, **kwargs)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                    return []  # no group yet: no users
                raise _error(exc, "list the tenant's users") from exc
            users += [self._to_user(u["Username"], _attrs(u.get("Attributes")), u.get("Enabled", True))
                      for u in page.get("Users", [])]
            token = page.get("NextToken")
            if not token:
                return sorted(users, key=lambda u: u.email)

    def authenticate(self, *, username: str, password: str) -> str:
        try:
            response = self.client.initiate_auth(
                ClientId=self.pool.client_id,
                AuthFlow="USER_PASSWORD_AUTH",
                AuthParameters={"USERNAME": username, "PASSWORD": password},
            )
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("NotAuthorizedException", "UserNotFoundException", "PasswordResetRequiredException",
                        "UserNotConfirmedException"):
                raise InvalidCredentials("Incorrect email or password.") from exc
            raise _error(exc, "sign in") from exc
        except BotoCoreError as exc:
            raise _error(exc, "sign in") from exc
        result = response.get("AuthenticationResult")
        if not result:  # a challenge (e.g. NEW_PASSWORD_REQUIRED): the portal sets passwords as permanent
            raise InvalidCredentials(f"The identity provider asks for {response.get('ChallengeName')}.")
        return result["IdToken"]

    def verifier_config(self) -> VerifierConfig:
        return VerifierConfig(
            issuer=self.pool.issuer,
            client_id=self.pool.client_id,
            fetch_jwks=jwks_fetcher(f"{self.pool.issuer}/.well-known/jwks.json"),
        )
