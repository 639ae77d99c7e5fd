from django.apps import AppConfig
from django.core.signals import setting_changed


def _configure_pricing_rules(*, setting: str | None = None, **kwargs) -> None:
    """Hand the configured custom rules to the pricing package (which imports no Django)."""
    if setting in (None, "PRICING_CUSTOM_RULES"):
        from django.conf import settings

        from metering.pricing import configure_rules

        configure_rules(getattr(settings, "PRICING_CUSTOM_RULES", None))


def _register_webhook_resources() -> None:
    """Webhook payloads show each resource as the REST API does: its serializers live in this layer, so they
    are handed to the webhooks registry (tenants, below) here."""
    from metering.api import serializers
    from metering.models import Invoice
    from tenants.webhooks.registry import register_resource

    def invoice(instance):
        # The invoice as GET /api/v1/invoices/<id>/ shows it, lines in order (read fresh: the caller may hold
        # an instance whose lines were just rewritten).
        fresh = Invoice.objects.select_related("tenant").prefetch_related("lines__adjusts").get(pk=instance.pk)
        return serializers.InvoiceDetailSerializer(fresh).data

    def pipeline(cursor):
        # The sync cursor the pipeline.late notice is about: how far usage is synced, and the allowed lag.
        from django.conf import settings

        return {"backend": cursor.name, "synced_until": cursor.synced_until.isoformat().replace("+00:00", "Z"),
                "late_after_minutes": settings.PIPELINE_LATE_ALERT_MINUTES}

    register_resource("invoice", invoice)
    register_resource("tenant", lambda tenant: serializers.TenantSerializer(tenant).data)
    register_resource("subscription", lambda sub: serializers.SubscriptionSerializer(sub).data)
    # The alerts (metering.services.alerts) emit these: a firing, a failed sync run, the late pipeline.
    register_resource("threshold", lambda firing: serializers.AlertFiringSerializer(firing).data)
    register_resource("sync_run", lambda run: serializers.SyncRunSerializer(run).data)
    register_resource("pipeline", pipeline)


class MeteringConfig(AppConfig):
    name = "metering"
    verbose_name = "Metering and billing"

    def ready(self):
        from metering.services.documents import invoice_email_attachments
        from tenants.services.email import register_attachments

        register_attachments("invoice", invoice_email_attachments)  # the invoice email carries its PDF
        _configure_pricing_rules()
        _register_webhook_resources()
        setting_changed.connect(_configure_pricing_rules, dispatch_uid="metering.pricing_rules")
