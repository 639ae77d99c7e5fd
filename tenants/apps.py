from django.apps import AppConfig


class TenantsConfig(AppConfig):
    name = "tenants"
    verbose_name = "Tenants and plans"

    def ready(self):
        from tenants.identity import receivers  # noqa: F401  (connects the tenant status receiver)
        from tenants.identity.lockout import connect_signals

        connect_signals()  # sign-in failures counted and lockouts logged
