from django.apps import AppConfig
from django.core.signals import setting_changed


def _configure_pricing_rules(*, setting: str | None = None, **kwargs) -> None:
    """Hand the configured custom rules to the pricing package (which imports no Django)."""
    if setting in (None, "PRICING_CUSTOM_RULES"):
        from django.conf import settings

        from metering.pricing import configure_rules

        configure_rules(getattr(settings, "PRICING_CUSTOM_RULES", None))


class MeteringConfig(AppConfig):
    name = "metering"
    verbose_name = "Metering and billing"

    def ready(self):
        from metering.services.documents import invoice_email_attachments
        from tenants.services.email import register_attachments

        register_attachments("invoice", invoice_email_attachments)  # the invoice email carries its PDF
        _configure_pricing_rules()
        setting_changed.connect(_configure_pricing_rules, dispatch_uid="metering.pricing_rules")
