"""Sign-in lockout (django-axes): who a failed sign-in counts against, and what a locked-out client is told.

Every password check goes through Django's `authenticate(request=...)`: the sign-in page, the admin's, and
HTTP Basic on the REST API (DRF's BasicAuthentication passes its request). Axes' backend, first in
AUTHENTICATION_BACKENDS, refuses a locked-out username or client before any password is checked, even the
right one; its signal handler counts every failure. A page gets `lockout_response` (through the axes
middleware); the API gets `SignInLockedOut`, a 429 with a JSON body (see portal.errors), because DRF keeps
the lockout mark on its own request object where the middleware does not look.
"""

from __future__ import annotations

import logging
import math

from django.conf import settings
from django.http import JsonResponse
from django.shortcuts import render
from rest_framework import exceptions

logger = logging.getLogger(__name__)


def username_key(request, credentials) -> str | None:
    """The username a failure counts against, lowercased and stripped: tenant users sign in with their email
    in any case, so `Ann@…` and `ann@…` must be one user to the lockout as they are to the sign-in."""
    raw = (credentials or {}).get("username")
    if raw is None and request is not None:
        raw = request.POST.get("username")
    return raw.strip().lower() if isinstance(raw, str) else raw


def client_ip(request) -> str | None:
    # REMOTE_ADDR, as for the signup rate limit: X-Forwarded-For is whatever the client writes. Behind a
    # proxy, have the proxy set REMOTE_ADDR (gunicorn's --forwarded-allow-ips with a trusted proxy).
    return request.META.get("REMOTE_ADDR")


def cooloff_minutes() -> int:
    return max(1, math.ceil(settings.AXES_COOLOFF_TIME.total_seconds() / 60))


def lockout_message() -> str:
    minutes = cooloff_minutes()
    return (
        f"Too many failed sign-ins: try again in {minutes} minute{'s' if minutes != 1 else ''}. "
        "Each further attempt before then starts the wait again."
    )


class SignInLockedOut(exceptions.Throttled):
    """The API's answer to a locked-out username or client: 429, the message, and Retry-After."""

    default_code = "locked_out"

    def __init__(self):
        super().__init__(detail=lockout_message())
        self.wait = cooloff_minutes() * 60  # DRF's handler turns it into Retry-After


def lockout_response(request, original_response=None, credentials=None):
    """AXES_LOCKOUT_CALLABLE: the page (or JSON for a client asking for it) shown instead of the sign-in form."""
    status = settings.AXES_HTTP_RESPONSE_CODE  # 429
    message = lockout_message()
    wants_json = "application/json" in request.META.get("HTTP_ACCEPT", "") or (
        request.META.get("HTTP_X_REQUESTED_WITH") == "XMLHttpRequest"
    )
    if wants_json:
        response = JsonResponse({"detail": message, "code": SignInLockedOut.default_code}, status=status)
    else:
        response = render(request, "registration/locked_out.html", {"message": message}, status=status)
    response["Retry-After"] = str(cooloff_minutes() * 60)
    return response


def _log_lockout(sender, request=None, username=None, ip_address=None, **kwargs):
    # Axes masks usernames and addresses in its own log lines; the operator needs them to tell an attack
    # from a user who forgot a password (and to lift a lockout: Admin -> Axes -> Access attempts).
    logger.warning(
        "sign-in locked out: username=%r ip=%s path=%s (%s failures within %s minutes)",
        username, ip_address, getattr(request, "path", "?"), settings.AXES_FAILURE_LIMIT, cooloff_minutes(),
    )


def connect_signals() -> None:
    from axes.signals import user_locked_out

    user_locked_out.connect(_log_lockout, dispatch_uid="tenants.identity.lockout.log")


def guarded_password_check(request, username: str, check):
    """Run a password check made outside `authenticate()` (the tenant area's current-password and token
    pages, which ask the identity backend directly) under the same lockout: while `username` or this client
    is locked out it is refused without checking, and a wrong password counts as a failed sign-in. `check`
    raises InvalidCredentials for a wrong password; the lockout page then replaces the view's answer."""
    from axes.handlers.proxy import AxesProxyHandler
    from django.contrib.auth.signals import user_login_failed

    from tenants.identity import InvalidCredentials

    credentials = {"username": username}
    if not AxesProxyHandler.is_allowed(request, credentials):
        user_login_failed.send(sender=__name__, credentials=credentials, request=request)  # as authenticate() does
        raise InvalidCredentials("Locked out: too many failed sign-ins.")
    try:
        return check()
    except InvalidCredentials:
        user_login_failed.send(sender=__name__, credentials=credentials, request=request)
        raise
