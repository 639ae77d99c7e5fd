"""Signing secrets (whsec_ + base64 of 24 random bytes, kept encrypted) and Standard Webhooks signatures."""

from __future__ import annotations

import base64
import secrets
from datetime import datetime

from cryptography.fernet import Fernet
from django.utils.crypto import salted_hmac
from standardwebhooks import Webhook

SECRET_PREFIX = "whsec_"


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def _fernet() -> Fernet:
    key = salted_hmac("tenants.webhooks.secret", "fernet-key", algorithm="sha256").digest()
    return Fernet(base64.urlsafe_b64encode(key))


def encrypt_secret(secret: str) -> str:
    return _fernet().encrypt(secret.encode()).decode()


def decrypt_secret(token: str) -> str:
    return _fernet().decrypt(token.encode()).decode()


def new_message_id() -> str:
    return "msg_" + secrets.token_hex(16)


def new_event_id() -> str:
    return "evt_" + secrets.token_hex(16)


def signed_headers(*, secrets_: list[str], msg_id: str, timestamp: datetime, body: str) -> dict[str, str]:
    """The three Standard Webhooks headers; one v1 signature per secret (the current one, and the previous
    one during a rotation), space-separated as the specification allows."""
    signatures = " ".join(Webhook(secret).sign(msg_id=msg_id, timestamp=timestamp, data=body) for secret in secrets_)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": signatures,
    }
