from django.apps import AppConfig, apps
from django.db.models.signals import post_migrate


class PortalConfig(AppConfig):
    name = "portal"
    verbose_name = "Portal"

    def ready(self):
        from portal import checks  # noqa: F401  (registers the system checks)
        from portal.schedules import ensure_schedules

        # Django sends post_migrate only for apps with models, and the portal app has none: the sender is the
        # app whose tables the schedules live in, so every `migrate` (and a test database's) creates them.
        post_migrate.connect(ensure_schedules, sender=apps.get_app_config("django_celery_beat"),
                             dispatch_uid="portal.ensure_schedules")
