"""ID/access token verification, the same code path for Cognito and local tokens.

The issuer's JWKS is fetched once and cached per issuer; a token signed with a key id the cache does not
know triggers one refresh (key rotation), at most every JWKS_MIN_REFRESH_SECONDS so that a flood of
tokens with made-up key ids cannot turn into a flood of JWKS requests. JWKS are fetched with `requests`
(PyJWKClient uses urllib, which moto does not intercept).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable

import jwt
import requests

from tenants.identity.base import VerifierConfig

logger = logging.getLogger(__name__)

JWKS_MIN_REFRESH_SECONDS = 60.0
JWKS_TIMEOUT_SECONDS = 5.0
CLOCK_LEEWAY_SECONDS = 30

_cache_lock = threading.Lock()
# issuer -> (keys by kid, time fetched)
_jwks_cache: dict[str, tuple[dict[str, object], float]] = {}


class TokenError(Exception):
    """The token was refused. The reason is for logs only: callers answer a bare 401."""


def fetch_jwks_url(url: str) -> dict:
    response = requests.get(url, timeout=JWKS_TIMEOUT_SECONDS)
    response.raise_for_status()
    return response.json()


def jwks_fetcher(url: str) -> Callable[[], dict]:
    return lambda: fetch_jwks_url(url)


def clear_jwks_cache() -> None:
    with _cache_lock:
        _jwks_cache.clear()


def _parse_keys(document: dict) -> dict[str, object]:
    keys = {}
    for jwk in document.get("keys", []):
        if jwk.get("kty") != "RSA" or "kid" not in jwk or jwk.get("use", "sig") != "sig":
            continue
        key = jwt.algorithms.RSAAlgorithm.from_jwk(json.dumps(jwk))
        # A JWKS that (wrongly) carries a private key is still only used to verify.
        keys[jwk["kid"]] = key.public_key() if hasattr(key, "public_key") else key
    return keys


def _signing_key(config: VerifierConfig, kid: str):
    now = time.monotonic()
    with _cache_lock:
        cached = _jwks_cache.get(config.issuer)
    if cached and kid in cached[0]:
        return cached[0][kid]
    if cached and now - cached[1] < JWKS_MIN_REFRESH_SECONDS:
        raise TokenError(f"unknown kid {kid!r} (JWKS refreshed {now - cached[1]:.0f}s ago)")
    try:
        keys = _parse_keys(config.fetch_jwks())
    except Exception as exc:  # network, HTTP or JSON trouble: the token cannot be checked, so it is refused
        logger.warning("JWKS fetch for %s failed: %s", config.issuer, exc)
        raise TokenError("JWKS unavailable") from exc
    with _cache_lock:
        _jwks_cache[config.issuer] = (keys, now)
    if kid not in keys:
        raise TokenError(f"unknown kid {kid!r}")
    return keys[kid]


def verify_token(token: str, config: VerifierConfig, *, token_use: str = "id") -> dict:
    """Verify signature, exp, iss, token_use and aud (id) or client_id (access); return the claims.

    Raises TokenError for any refusal.
    """
    if token_use not in ("id", "access"):
        raise ValueError("token_use is 'id' or 'access'")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise TokenError("malformed token") from exc
    # Only RS256: refusing every other alg closes the 'none' and HMAC-with-the-public-key confusions.
    if header.get("alg") != "RS256":
        raise TokenError(f"alg {header.get('alg')!r} refused")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise TokenError("no kid")
    key = _signing_key(config, kid)
    try:
        claims = jwt.decode(
            token,
            key=key,
            algorithms=["RS256"],
            issuer=config.issuer,
            leeway=CLOCK_LEEWAY_SECONDS,
            # The audience check differs by token type (aud vs client_id), so it is done below.
            options={"require": ["exp", "iss", "token_use", "sub"], "verify_aud": False},
        )
    except jwt.PyJWTError as exc:
        raise TokenError(f"{type(exc).__name__}: {exc}") from exc
    if claims.get("token_use") != token_use:
        raise TokenError(f"token_use {claims.get('token_use')!r}, {token_use!r} required")
    audience = claims.get("aud") if token_use == "id" else claims.get("client_id")
    if not config.client_id or audience != config.client_id:
        raise TokenError("audience mismatch")
    return claims
