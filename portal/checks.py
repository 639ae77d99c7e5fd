"""System checks: production that was allowed to run on the embedded parts says so on every check."""

from django.conf import settings
from django.core.checks import Tags, Warning, register

from portal import production


@register(Tags.security)
def embedded_parts_in_production(app_configs=None, **kwargs):
    """portal.W001: PORTAL_ENV=production with PORTAL_ALLOW_EMBEDDED=true on SQLite, files, memory or console."""
    if not getattr(settings, "PRODUCTION", False):
        return []
    parts = production.embedded_parts(
        database_engine=settings.DATABASES["default"]["ENGINE"],
        broker_url=settings.CELERY_BROKER_URL,
        result_backend=settings.CELERY_RESULT_BACKEND,
        cache_backend=settings.CACHES["default"]["BACKEND"],
        email_backend=settings.EMAIL_BACKEND,
    )
    if not parts:
        return []
    return [
        Warning(
            "Production is running on embedded parts meant for one laptop (PORTAL_ALLOW_EMBEDDED=true): "
            + "; ".join(parts) + ".",
            hint="Set the variables named above, then remove PORTAL_ALLOW_EMBEDDED.",
            id="portal.W001",
        )
    ]
