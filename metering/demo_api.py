"""The metered demo API: the AWS sample's GET /random/strings, served by the portal, with its access log.

Each call (401s included) leaves an access-log line in API Gateway's format, which goes through
the transform into the local buffered sink, and from there into the local Iceberg table: the
embedded default's whole path from an API call to a usage number, with no cloud.
"""

from __future__ import annotations

import json
import random
import string
import time
import uuid
from functools import lru_cache

from django.conf import settings
from django.utils.module_loading import import_string
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status as http_status
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from metering.sink import get_sink

CHARSETS = {
    "letters": string.ascii_letters,
    "lowercase": string.ascii_lowercase,
    "uppercase": string.ascii_uppercase,
    "digits": string.digits,
}
RESOURCE_PATH = "/random/strings"
_random = random.SystemRandom()


@lru_cache(maxsize=8)
def _authentication_classes(paths: tuple[str, ...]) -> list[type]:
    return [import_string(path) for path in paths]


def _clamped(value: str | None, low: int, high: int) -> int:
    if value in (None, ""):
        return 1
    return min(high, max(low, int(value)))


def access_log_line(*, request, status: int, response_length: int, claims: dict | None) -> str:
    """The access-log line as the API Gateway stage writes it ('-' where a variable has no value)."""
    claims = claims if isinstance(claims, dict) else {}
    return json.dumps({
        "request_id": str(uuid.uuid4()),
        "ip": request.META.get("REMOTE_ADDR") or "-",
        "user": claims.get("cognito:username") or "-",
        "request_time": int(time.time() * 1000),
        "http_method": request.method,
        "resource_path": RESOURCE_PATH,
        "status": status,
        "protocol": request.META.get("SERVER_PROTOCOL") or "HTTP/1.1",
        "response_length": response_length,
        "tenant_id": claims.get("custom:tenant_id") or "-",
    })


class RandomStringsView(APIView):
    """GET /random/strings?chars=letters|lowercase|uppercase|digits&len=1..20&num=1..100."""

    permission_classes = [IsAuthenticated]
    throttle_classes = []

    def get_authenticators(self):
        # Resolved per request from the setting, so tests and deployments can swap the class.
        return [cls() for cls in _authentication_classes(tuple(settings.METERED_API_AUTHENTICATION))]

    @extend_schema(
        parameters=[
            OpenApiParameter("chars", str, enum=list(CHARSETS), description="character set (default letters)"),
            OpenApiParameter("len", int, description="length of each string, clamped to 1..20 (default 1)"),
            OpenApiParameter("num", int, description="how many strings, clamped to 1..100 (default 1)"),
        ],
        responses={200: {"type": "array", "items": {"type": "string"}}},
        description="The AWS sample's metered API: random strings. Every call is metered.",
    )
    def get(self, request):
        alphabet = CHARSETS.get(request.query_params.get("chars") or "letters", CHARSETS["letters"])
        try:
            length = _clamped(request.query_params.get("len"), 1, 20)
            count = _clamped(request.query_params.get("num"), 1, 100)
        except ValueError:
            return Response({"detail": "len and num must be integers."}, status=http_status.HTTP_400_BAD_REQUEST)
        return Response(["".join(_random.choice(alphabet) for _ in range(length)) for _ in range(count)])

    def dispatch(self, request, *args, **kwargs):
        response = super().dispatch(request, *args, **kwargs)
        if hasattr(response, "render") and callable(response.render):
            response.render()
        drf_request = getattr(self, "request", None)
        claims = getattr(drf_request, "_auth", None) if drf_request is not None else None
        line = access_log_line(request=request, status=response.status_code,
                               response_length=len(getattr(response, "content", b"")), claims=claims)
        get_sink().put(line)
        return response
