"""Template context shared by every page."""

from django.conf import settings


def provider(request):
    return {"provider_name": settings.PROVIDER_NAME}
