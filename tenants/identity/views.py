"""The local identity's public endpoint: its JWKS, so any verifier (the metered API, a client) checks tokens."""

from django.conf import settings
from django.http import Http404, JsonResponse
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_GET


@require_GET
@cache_control(public=True, max_age=3600)
def jwks(request):
    if settings.IDENTITY_BACKEND != "local":
        raise Http404("Tokens are issued by the Cognito user pool, which publishes its own JWKS.")
    from tenants.identity.local import local_jwks

    return JsonResponse(local_jwks())
