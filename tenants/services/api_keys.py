"""API keys for machines: make one (shown once), revoke one, and recognise one on a request.

A key is `mk_<prefix>_<secret>`: the prefix (8 lowercase letters or digits) finds the row, the secret is 32
random bytes (URL-safe base64). Only the SHA-256 of the whole key is stored: keys are high-entropy random
strings, so a fast hash is as good as a slow one, and checking it costs nothing per request.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from portal.kernel import ApplicationError
from tenants.models import USABLE_TENANT_STATUSES, ApiKey, ApiKeyScope, Tenant
from tenants.models.api_keys import (
    API_KEY_NAME_MAX_LENGTH,
    API_KEY_PREFIX_LENGTH,
    PROVIDER_KEY_SCOPES,
    canonical_scopes,
)

KEY_MARK = "mk_"
SECRET_BYTES = 32
# last_used_at is written at most once per this interval and key: a busy key does not write on every request.
LAST_USED_RESOLUTION = timedelta(minutes=1)
_PREFIX_ALPHABET = string.ascii_lowercase + string.digits
_UNKNOWN_KEY_HASH = "0" * 64  # compared against when no key has the prefix, so both paths do the same work


def hash_key(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


def looks_like_api_key(token: str) -> bool:
    """Whether a bearer token is meant as an API key (the others are ID tokens)."""
    return token.startswith(KEY_MARK)


def _validated_scopes(scopes) -> list[str]:
    if scopes is None:
        return list(ApiKeyScope.values)
    if isinstance(scopes, str):
        scopes = [scopes]
    unknown = sorted(set(scopes) - set(ApiKeyScope.values))
    if unknown:
        raise ApplicationError(f"Unknown scope {', '.join(map(repr, unknown))}: the scopes are "
                               f"{', '.join(ApiKeyScope.values)}.")
    if not scopes:
        raise ApplicationError("A key needs at least one scope.")
    return canonical_scopes(scopes)


def _validated_name(name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise ApplicationError("A key needs a name (what it is for).")
    if len(name) > API_KEY_NAME_MAX_LENGTH:
        raise ApplicationError(f"A key's name has at most {API_KEY_NAME_MAX_LENGTH} characters.")
    return name


def api_key_create(*, tenant: Tenant | None, name: str, scopes=None, created_by=None) -> tuple[ApiKey, str]:
    """A new key of `tenant` and the key itself, which is not kept: show it once. Default scopes: all.
    With no tenant, a provider key: it sends events for any tenant (events:write, its only scope)."""
    name = _validated_name(name)
    if tenant is None:
        if scopes is not None and canonical_scopes(scopes if not isinstance(scopes, str) else [scopes]) \
                != PROVIDER_KEY_SCOPES:
            raise ApplicationError("A provider key (no tenant) only sends events: its scope is events:write alone; "
                                   "a key that reads usage belongs to a tenant.")
        scopes = list(PROVIDER_KEY_SCOPES)
    scopes = _validated_scopes(scopes)
    for _attempt in range(5):
        prefix = "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(API_KEY_PREFIX_LENGTH))
        raw_key = f"{KEY_MARK}{prefix}_{secrets.token_urlsafe(SECRET_BYTES)}"
        try:
            with transaction.atomic():
                api_key = ApiKey.objects.create(tenant=tenant, name=name, prefix=prefix, secret_hash=hash_key(raw_key),
                                                scopes=scopes, created_by=created_by)
        except IntegrityError:
            if not ApiKey.objects.filter(prefix=prefix).exists():
                raise
            continue  # the prefix is taken (one chance in 36**8 per key): draw another
        return api_key, raw_key
    raise ApplicationError("Could not draw a free key prefix; try again.")


def api_key_revoke(*, api_key: ApiKey, by=None) -> ApiKey:
    """Revoke the key from now on; revoking a revoked key changes nothing (it keeps its first revocation)."""
    ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now(), revoked_by=by)
    api_key.refresh_from_db()
    return api_key


def api_key_authenticate(raw_key: str) -> ApiKey | None:
    """The live key `raw_key` is, with its tenant, or None: unknown, wrong secret, revoked, or the tenant is
    not trialing or active (a provider key has none). Records the use (at most once a minute)."""
    parts = raw_key.split("_", 2)
    if len(parts) != 3 or f"{parts[0]}_" != KEY_MARK or len(parts[1]) != API_KEY_PREFIX_LENGTH or not parts[2]:
        return None
    api_key = ApiKey.objects.select_related("tenant").filter(prefix=parts[1]).first()
    expected = api_key.secret_hash if api_key is not None else _UNKNOWN_KEY_HASH
    if not hmac.compare_digest(expected, hash_key(raw_key)) or api_key is None:
        return None
    if api_key.revoked_at is not None or (api_key.tenant is not None
                                          and api_key.tenant.status not in USABLE_TENANT_STATUSES):
        return None
    _record_use(api_key)
    return api_key


def _record_use(api_key: ApiKey) -> None:
    now = timezone.now()
    if api_key.last_used_at is not None and now - api_key.last_used_at < LAST_USED_RESOLUTION:
        return
    # Conditional, so that of concurrent requests in the same minute only one writes.
    stale = Q(last_used_at__isnull=True) | Q(last_used_at__lte=now - LAST_USED_RESOLUTION)
    if ApiKey.objects.filter(stale, pk=api_key.pk).update(last_used_at=now):
        api_key.last_used_at = now
