"""AWS Marketplace customers: who AWS sent to the portal's registration landing, and the tenant they became.

The landing resolves the registration token (``ResolveCustomer``) into a row here; the signup that follows
links it to its tenant, which is then collected through AWS Marketplace (docs/marketplace.md)."""

from django.db import models


class MarketplaceCustomer(models.Model):
    customer_identifier = models.CharField(
        max_length=255, unique=True, help_text="ResolveCustomer's CustomerIdentifier: the key of every usage record.")
    product_code = models.CharField(max_length=255, help_text="The Marketplace product the customer subscribed to.")
    aws_account_id = models.CharField(max_length=32, blank=True, help_text="The customer's AWS account id.")
    tenant = models.OneToOneField("tenants.Tenant", null=True, blank=True, on_delete=models.PROTECT,
                                  related_name="marketplace_customer",
                                  help_text="Set when the customer's signup made their tenant.")
    registered_at = models.DateTimeField(auto_now_add=True, help_text="First arrival on the landing.")
    last_seen_at = models.DateTimeField(auto_now=True, help_text="Latest arrival on the landing.")

    class Meta:
        ordering = ["-registered_at"]

    def __str__(self):
        return f"{self.customer_identifier} ({self.product_code})"
