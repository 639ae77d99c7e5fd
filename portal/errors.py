"""One error type for expected failures, and the REST API's handler that maps it to a clear response."""

from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler


class ApplicationError(Exception):
    """An expected failure with a message fit to show a user (and optional structured extra)."""

    def __init__(self, message: str, extra: dict | None = None):
        super().__init__(message)
        self.message = message
        self.extra = extra or {}


def api_exception_handler(exc, context):
    if isinstance(exc, ApplicationError):
        return Response({"detail": exc.message, **exc.extra}, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, exceptions.AuthenticationFailed) and getattr(context.get("request"), "axes_locked_out", False):
        # HTTP Basic for a locked-out username or client (django-axes marked DRF's request): say so, with 429.
        from portal.lockout import SignInLockedOut

        exc = SignInLockedOut()
    return exception_handler(exc, context)
