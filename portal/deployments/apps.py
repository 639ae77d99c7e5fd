"""The deployments app: pipeline environments and the CDK runs that deploy them."""

from django.apps import AppConfig


class DeploymentsConfig(AppConfig):
    name = "portal.deployments"
    label = "deployments"
    verbose_name = "Pipeline deployments"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from metering.runs import register_run_kind
        from portal.deployments.config import deployed_setting
        from portal.deployments.services import DEPLOYMENTS
        from portal.kernel import register_pipeline_config

        register_pipeline_config(deployed_setting)
        register_run_kind(DEPLOYMENTS)
