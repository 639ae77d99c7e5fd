"""The REST API's exception handler: an ApplicationError (portal.kernel) becomes a clear JSON answer."""

import logging

from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler

from portal.kernel import ApplicationError

logger = logging.getLogger(__name__)
UNAVAILABLE = "The usage figures are unavailable right now; try again in a few minutes."


def api_exception_handler(exc, context):
    if isinstance(exc, ApplicationError):
        if exc.status_code >= 500:
            # The portal's own trouble (the lake did not answer): its details (paths, query ids) are for
            # the operator's log, not for the API client.
            logger.error("%s: %s", context.get("view").__class__.__name__, exc.message)
            return Response({"detail": UNAVAILABLE}, status=exc.status_code)
        return Response({"detail": exc.message, **exc.extra}, status=exc.status_code)
    if isinstance(exc, exceptions.AuthenticationFailed) and getattr(context.get("request"), "axes_locked_out", False):
        # HTTP Basic for a locked-out username or client (django-axes marked DRF's request): say so, with 429.
        from tenants.identity.lockout import SignInLockedOut

        exc = SignInLockedOut()
    return exception_handler(exc, context)
