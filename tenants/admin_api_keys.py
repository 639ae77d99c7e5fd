"""Admin for API keys: staff make keys for any tenant, or provider keys (no tenant: they send events for any
tenant, each naming its own) (through the service: the key is shown once, in a
message on the answer to the add form, never stored or shown again), list them and revoke them.

The hash is never displayed. Keys are not edited or deleted: a key that should stop working is revoked.
"""

from django import forms
from django.contrib import admin, messages
from django.template.response import TemplateResponse

from tenants.admin_writes import ServiceWriteAdmin
from tenants.models import ApiKey, ApiKeyScope
from tenants.services.api_keys import api_key_create, api_key_revoke


class ApiKeyAddForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(choices=ApiKeyScope.choices, widget=forms.CheckboxSelectMultiple,
                                       initial=ApiKeyScope.values)

    class Meta:
        model = ApiKey
        fields = ("tenant", "name", "scopes")


@admin.register(ApiKey)
class ApiKeyAdmin(ServiceWriteAdmin):
    list_display = ("name", "owner", "key", "scopes_shown", "created_at", "last_used_at", "revoked_at", "created_by")
    list_filter = (("revoked_at", admin.EmptyFieldListFilter), "created_at")
    search_fields = ("name", "prefix", "tenant__slug", "tenant__name")
    list_select_related = ("tenant", "created_by")
    actions = ["revoke"]
    readonly_fields = ("tenant", "name", "key", "scopes_shown", "created_by", "created_at", "last_used_at",
                       "revoked_at", "revoked_by")

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = ApiKeyAddForm
        return super().get_form(request, obj, **kwargs)

    def get_fields(self, request, obj=None):
        return ("tenant", "name", "scopes") if obj is None else self.readonly_fields

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else self.readonly_fields

    def has_delete_permission(self, request, obj=None):
        return False  # revoke instead: the row says when the key was used and who made it

    @admin.display(description="tenant", ordering="tenant__slug")
    def owner(self, api_key):
        return api_key.tenant.slug if api_key.tenant is not None else "provider (events for any tenant)"

    @admin.display(description="key", ordering="prefix")
    def key(self, api_key):
        return api_key.display_key

    @admin.display(description="scopes")
    def scopes_shown(self, api_key):
        return ", ".join(api_key.scopes)

    def save_model(self, request, obj, form, change):
        if change:
            return  # every field is read-only once the key exists
        saved, raw_key = api_key_create(tenant=form.cleaned_data["tenant"], name=form.cleaned_data["name"],
                                        scopes=form.cleaned_data["scopes"], created_by=request.user)
        self.saved_as(obj, saved)
        request.api_key_raw = raw_key

    def response_add(self, request, obj, post_url_continue=None):
        raw_key = getattr(request, "api_key_raw", None)
        if raw_key is None:
            return super().response_add(request, obj, post_url_continue)
        # Shown on this answer rather than after a redirect: a message kept for the next page would sit in
        # the message storage (a cookie or the session) until then.
        owner = obj.tenant.slug if obj.tenant is not None else "the provider"
        self.message_user(request, f"The new key of {owner}: {raw_key}", messages.WARNING)
        context = {**self.admin_site.each_context(request), "title": f"API key “{obj.name}” made",
                   "api_key": obj, "opts": self.opts}
        return TemplateResponse(request, "admin/tenants/apikey/key_created.html", context)

    @admin.action(description="Revoke the selected keys")
    def revoke(self, request, queryset):
        count = 0
        for api_key in queryset:
            if api_key.revoked_at is None:
                api_key_revoke(api_key=api_key, by=request.user)
                count += 1
        self.message_user(request, f"Revoked: {count}.", messages.SUCCESS)
