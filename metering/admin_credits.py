"""Admin for prepaid credits: staff grant credit to a tenant (through the credits service) and see every
grant's remaining amount and the ledger of what invoices drew (never edited: no change, no delete)."""

from django import forms
from django.contrib import admin

from metering.models import CreditEntry, CreditGrant, CreditSource
from metering.pricing import format_amount
from metering.services.credits import credit_grant_create
from tenants.admin_writes import ServiceWriteAdmin


class CreditGrantForm(forms.ModelForm):
    class Meta:
        model = CreditGrant
        fields = ("tenant", "amount", "currency", "expires_at", "note")


class CreditEntryInline(admin.TabularInline):
    model = CreditEntry
    extra = 0
    can_delete = False
    fields = ("created_at", "kind", "invoice", "amount", "remaining_after")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(CreditGrant)
class CreditGrantAdmin(ServiceWriteAdmin):
    form = CreditGrantForm
    list_display = ("tenant", "amount_shown", "remaining_shown", "expires_at", "source", "note", "created_at")
    list_filter = ("source", "currency")
    list_select_related = ("tenant",)
    search_fields = ("tenant__slug", "note")
    date_hierarchy = "created_at"
    inlines = [CreditEntryInline]

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ()
        return ("tenant", "amount", "currency", "remaining", "expires_at", "note", "source", "subscription",
                "period_start", "created_by", "created_at")

    def get_fields(self, request, obj=None):
        return ("tenant", "amount", "currency", "expires_at", "note") if obj is None else self.get_readonly_fields(request, obj)

    def has_delete_permission(self, request, obj=None):
        return False  # the ledger refers to it

    @admin.display(description="amount")
    def amount_shown(self, grant):
        return f"{format_amount(grant.amount, grant.currency)} {grant.currency}"

    @admin.display(description="remaining")
    def remaining_shown(self, grant):
        return f"{format_amount(grant.remaining, grant.currency)} {grant.currency}"

    def save_model(self, request, obj, form, change):
        if change:
            return
        data = form.cleaned_data
        saved = credit_grant_create(tenant=data["tenant"], amount=data["amount"], currency=data["currency"],
                                    expires_at=data.get("expires_at"), note=data.get("note", ""),
                                    source=CreditSource.STAFF, by=request.user)
        self.saved_as(obj, saved)


@admin.register(CreditEntry)
class CreditEntryAdmin(admin.ModelAdmin):
    list_display = ("created_at", "tenant", "kind", "invoice", "amount_shown", "remaining_after", "grant")
    list_filter = ("kind",)
    list_select_related = ("grant__tenant", "invoice")
    search_fields = ("grant__tenant__slug", "invoice__number")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="tenant")
    def tenant(self, entry):
        return entry.grant.tenant

    @admin.display(description="amount")
    def amount_shown(self, entry):
        return f"{format_amount(entry.amount, entry.grant.currency)} {entry.grant.currency}"
