"""The metered demo API: GET /random/strings returns `num` random strings of length `len` drawn from `chars`.

Behind API Gateway's Lambda proxy integration. Query parameters, all optional:
  chars: letters (default), lowercase, uppercase or digits
  len:   length of each string, clamped to 1..20 (default 1)
  num:   how many strings, clamped to 1..100 (default 1)
A value that is not an integer, or an unknown `chars`, gets 400 with {"message": ...}.
Standard library only.
"""

from __future__ import annotations

import json
import secrets
import string
from typing import Any

ALPHABETS = {
    "letters": string.ascii_letters,
    "lowercase": string.ascii_lowercase,
    "uppercase": string.ascii_uppercase,
    "digits": string.digits,
}
LEN_RANGE = (1, 20)
NUM_RANGE = (1, 100)


class BadRequest(ValueError):
    pass


def clamp(value: int, low: int, high: int) -> int:
    return max(low, min(high, value))


def _int_param(params: dict[str, str], name: str, low: int, high: int) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return 1
    try:
        return clamp(int(raw), low, high)
    except ValueError:
        raise BadRequest(f"{name} must be an integer") from None


def random_strings(chars: str = "letters", length: int = 1, num: int = 1) -> list[str]:
    """`num` strings of `length` characters from the named alphabet; length and num are clamped."""
    if chars not in ALPHABETS:
        raise BadRequest(f"chars must be one of {', '.join(ALPHABETS)}")
    alphabet = ALPHABETS[chars]
    length = clamp(length, *LEN_RANGE)
    num = clamp(num, *NUM_RANGE)
    return ["".join(secrets.choice(alphabet) for _ in range(length)) for _ in range(num)]


def _response(status: int, body: Any) -> dict[str, Any]:
    return {"statusCode": status, "headers": {"Content-Type": "application/json"}, "body": json.dumps(body)}


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    params = (event or {}).get("queryStringParameters") or {}
    try:
        result = random_strings(
            chars=params.get("chars") or "letters",
            length=_int_param(params, "len", *LEN_RANGE),
            num=_int_param(params, "num", *NUM_RANGE),
        )
    except BadRequest as exc:
        return _response(400, {"message": str(exc)})
    return _response(200, result)
