"""The deployments app: pipeline environments and the CDK runs that deploy them."""

from django.apps import AppConfig


class DeploymentsConfig(AppConfig):
    name = "portal.deployments"
    label = "deployments"
    verbose_name = "Pipeline deployments"
    default_auto_field = "django.db.models.BigAutoField"
