"""The local identity backend: users in the portal's database, ID tokens signed by the portal (RS256).

The signing key is generated once under VAR_DIR (mode 0600) and its public half is published as a JWKS
at /.well-known/jwks.json, so tokens are verified exactly as Cognito's are.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
import time
import uuid
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from tenants.identity.base import (
    IdentityBackend,
    IdentityError,
    IdentityUser,
    InvalidCredentials,
    VerifierConfig,
)
from tenants.identity.passwords import CognitoPasswordPolicyValidator

_key_lock = threading.Lock()
_keys: dict[str, rsa.RSAPrivateKey] = {}


def signing_key_path() -> Path:
    return Path(settings.VAR_DIR) / "identity" / "local-signing-key.pem"


def _load_or_create_key(path: Path) -> rsa.RSAPrivateKey:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        # O_EXCL: two processes starting together cannot both write a key; the loser reads the winner's.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for _ in range(50):
            data = path.read_bytes()
            if data:
                return serialization.load_pem_private_key(data, password=None)
            time.sleep(0.05)  # the other process is still writing it
        raise IdentityError(f"The local identity key {path} is empty.") from None
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    return key


def signing_key() -> rsa.RSAPrivateKey:
    path = signing_key_path()
    with _key_lock:
        key = _keys.get(str(path))
        if key is None:
            key = _keys[str(path)] = _load_or_create_key(path)
        return key


def _kid(public_jwk: dict) -> str:
    # RFC 7638 thumbprint: stable for a key, different for a rotated one.
    canonical = json.dumps({k: public_jwk[k] for k in ("e", "kty", "n")}, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()


def local_jwks() -> dict:
    """The public JWKS of the local signing key (what /.well-known/jwks.json serves)."""
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(signing_key().public_key()))
    jwk.update({"kid": _kid(jwk), "use": "sig", "alg": "RS256"})
    return {"keys": [jwk]}


def _identity_user(identity) -> IdentityUser:
    return IdentityUser(
        username=identity.username,
        email=identity.user.email,
        tenant_id=identity.tenant_id,
        role=identity.role,
        enabled=identity.user.is_active,
    )


class LocalIdentityBackend(IdentityBackend):
    name = "local"

    def _get(self, username: str):
        from tenants.models import LocalIdentity

        try:
            return LocalIdentity.objects.select_related("user").get(username=username)
        except LocalIdentity.DoesNotExist:
            raise IdentityError(f"No identity user {username}.") from None

    def _check_policy(self, password: str) -> None:
        try:
            validate_password(password, password_validators=[CognitoPasswordPolicyValidator()])
        except ValidationError as exc:
            raise IdentityError(" ".join(exc.messages)) from exc

    def create_user(self, *, tenant_id: str, email: str, role: str, password: str) -> IdentityUser:
        from tenants.models import LocalIdentity

        self._check_policy(password)
        username = str(uuid.uuid4())
        User = get_user_model()
        try:
            with transaction.atomic():
                if User.objects.filter(email__iexact=email, local_identity__isnull=False).exists():
                    raise IdentityError("An identity user with this email already exists.")
                user = User(username=username, email=email)
                user.set_password(password)
                user.save()
                identity = LocalIdentity.objects.create(user=user, username=username, tenant_id=tenant_id, role=role)
        except IntegrityError as exc:
            raise IdentityError("The identity user could not be created.") from exc
        return _identity_user(identity)

    def set_password(self, *, username: str, password: str) -> None:
        self._check_policy(password)
        user = self._get(username).user
        user.set_password(password)
        user.save(update_fields=["password"])

    def _set_enabled(self, username: str, enabled: bool) -> None:
        user = self._get(username).user
        if user.is_active != enabled:
            user.is_active = enabled
            user.save(update_fields=["is_active"])

    def disable_user(self, *, username: str) -> None:
        self._set_enabled(username, False)

    def enable_user(self, *, username: str) -> None:
        self._set_enabled(username, True)

    def delete_user(self, *, username: str) -> None:
        from tenants.models import LocalIdentity

        identity = LocalIdentity.objects.select_related("user").filter(username=username).first()
        if identity is not None:
            identity.user.delete()  # cascades to the LocalIdentity row

    def get_user(self, *, username: str) -> IdentityUser | None:
        from tenants.models import LocalIdentity

        identity = LocalIdentity.objects.select_related("user").filter(username=username).first()
        return _identity_user(identity) if identity else None

    def list_users(self, *, tenant_id: str) -> list[IdentityUser]:
        from tenants.models import LocalIdentity

        rows = LocalIdentity.objects.select_related("user").filter(tenant_id=tenant_id).order_by("user__email")
        return [_identity_user(identity) for identity in rows]

    def authenticate(self, *, username: str, password: str) -> str:
        from tenants.models import LocalIdentity

        identity = LocalIdentity.objects.select_related("user").filter(username=username).first()
        if identity is None or not identity.user.is_active or not identity.user.check_password(password):
            raise InvalidCredentials("Incorrect email or password.")
        return self.issue_id_token(username=username)

    def issue_id_token(self, *, username: str) -> str:
        """Sign an ID token with the claims a Cognito ID token carries (no password: the caller checked who)."""
        identity = self._get(username)
        if not identity.user.is_active:
            raise InvalidCredentials("This user is disabled.")
        now = int(time.time())
        claims = {
            "sub": identity.username,
            "email": identity.user.email,
            "email_verified": True,
            "cognito:username": identity.username,
            "cognito:groups": [identity.tenant_id],
            "custom:tenant_id": identity.tenant_id,
            "custom:role": identity.role,
            "token_use": "id",
            "auth_time": now,
            "iat": now,
            "exp": now + settings.IDENTITY_TOKEN_LIFETIME_SECONDS,
            "aud": settings.IDENTITY_LOCAL_CLIENT_ID,
            "iss": settings.IDENTITY_LOCAL_ISSUER,
            "jti": str(uuid.uuid4()),
        }
        kid = local_jwks()["keys"][0]["kid"]
        return jwt.encode(claims, signing_key(), algorithm="RS256", headers={"kid": kid})

    def verifier_config(self) -> VerifierConfig:
        return VerifierConfig(
            issuer=settings.IDENTITY_LOCAL_ISSUER, client_id=settings.IDENTITY_LOCAL_CLIENT_ID, fetch_jwks=local_jwks
        )
