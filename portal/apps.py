from django.apps import AppConfig
from django.db.models.signals import post_migrate


class PortalConfig(AppConfig):
    name = "portal"
    verbose_name = "Portal"

    def ready(self):
        from portal import checks  # noqa: F401  (registers the system checks)
        from portal.schedules import ensure_schedules

        post_migrate.connect(ensure_schedules, sender=self, dispatch_uid="portal.ensure_schedules")
