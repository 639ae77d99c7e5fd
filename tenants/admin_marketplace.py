"""Admin for AWS Marketplace customers: who registered through the landing, and the tenant each became
(written by the landing and the signup only; docs/marketplace.md)."""

from django.contrib import admin

from tenants.models import MarketplaceCustomer


@admin.register(MarketplaceCustomer)
class MarketplaceCustomerAdmin(admin.ModelAdmin):
    list_display = ("customer_identifier", "product_code", "aws_account_id", "tenant", "registered_at", "last_seen_at")
    list_filter = ("product_code",)
    search_fields = ("customer_identifier", "aws_account_id", "tenant__slug")
    list_select_related = ("tenant",)
    readonly_fields = ("customer_identifier", "product_code", "aws_account_id", "tenant", "registered_at",
                       "last_seen_at")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
