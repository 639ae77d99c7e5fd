from django.apps import AppConfig
from django.db.models.signals import post_migrate


class PortalConfig(AppConfig):
    name = "portal"
    verbose_name = "Portal"

    def ready(self):
        from portal.lockout import connect_signals
        from portal.schedules import ensure_schedules

        connect_signals()

        post_migrate.connect(ensure_schedules, sender=self, dispatch_uid="portal.ensure_schedules")
