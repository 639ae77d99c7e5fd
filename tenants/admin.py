"""Admin for tenants, plans and subscriptions: lifecycle actions call the same services as everything else."""

import json

from django import forms
from django.contrib import admin, messages
from django.db.models import Count, Q
from django.utils import timezone

from metering.pricing import format_unit_amount
from metering.pricing.documents import DocumentError, parse_plan
from portal.kernel import ApplicationError
from tenants import (  # noqa: F401  (register the API keys', email deliveries', Marketplace's, metrics' and webhooks' admins)
    admin_api_keys,
    admin_coupons,
    admin_email,
    admin_marketplace,
    admin_metrics,
    admin_subscription_requests,
    admin_webhooks,
)
from tenants.admin_writes import ServiceWriteAdmin
from tenants.forms import loads_json_object
from tenants.models import (
    Charge,
    Plan,
    PlanVersion,
    Subscription,
    SubscriptionChange,
    SubscriptionRequest,
    SubscriptionStatus,
    Tenant,
    time_zone_names,
)
from tenants.selectors import subscriptions_active
from tenants.services import lifecycle
from tenants.services.plans import plan_save
from tenants.services.subscriptions import (
    subscription_change_plan,
    subscription_create,
    subscription_end,
    subscription_move_to_latest,
    subscription_set_trial_end,
)


def _run_for_each(modeladmin, request, queryset, service, verb):
    done, failed = 0, []
    for obj in queryset:
        try:
            service(obj)
            done += 1
        except ApplicationError as exc:
            failed.append(exc.message)
    if done:
        modeladmin.message_user(request, f"{verb}: {done}.", messages.SUCCESS)
    for message in failed:
        modeladmin.message_user(request, message, messages.ERROR)


class SubscriptionInline(admin.TabularInline):
    model = Subscription
    extra = 0
    fields = ("plan_version", "status", "billing_cycle", "started_at", "trial_ends_at", "ends_at")
    readonly_fields = fields
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False


class TenantAdminForm(forms.ModelForm):
    """The tenant's fields; the time zone is picked from the IANA names and checked as the service checks it."""

    time_zone = forms.ChoiceField(initial="UTC", help_text=Tenant._meta.get_field("time_zone").help_text)

    class Meta:
        model = Tenant
        fields = ("slug", "name", "contact_email", "time_zone", "country", "tax_id", "tax_rate", "payment_terms_days")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["time_zone"].choices = [(name, name) for name in sorted(time_zone_names())]

    def clean_time_zone(self):
        name = self.cleaned_data["time_zone"]
        problem = lifecycle.time_zone_change_problem(tenant=self.instance, time_zone=name)
        if problem:
            raise forms.ValidationError(problem)
        return name


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    form = TenantAdminForm
    list_display = ("slug", "name", "status", "time_zone", "contact_email", "current_plan", "country", "tax_rate",
                    "created_at")
    list_filter = ("status", "created_at", "tax_rate")
    search_fields = ("slug", "name", "contact_email")
    # The billing channel is set by an AWS Marketplace signup (docs/marketplace.md), never by hand.
    readonly_fields = ("status", "status_changed_at", "billing_channel", "created_at", "updated_at")
    inlines = [SubscriptionInline]
    actions = ["suspend", "reactivate", "cancel"]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("subscriptions__plan_version__plan")

    def save_model(self, request, obj, form, change):
        if change:
            if "time_zone" in form.changed_data:  # the zone goes through its service (which checks it again, locked)
                wanted, obj.time_zone = obj.time_zone, form.initial["time_zone"]
                super().save_model(request, obj, form, change)
                obj.time_zone = lifecycle.tenant_set_time_zone(tenant=obj, time_zone=wanted).time_zone
                return None
            return super().save_model(request, obj, form, change)
        # A new tenant goes through the lifecycle service, as every other creation does (its webhook event).
        saved = lifecycle.tenant_create(slug=obj.slug, name=obj.name, contact_email=obj.contact_email,
                                        time_zone=obj.time_zone)
        if obj.country or obj.tax_id or obj.tax_rate_id:  # the tax details, when given with the tenant
            saved.country, saved.tax_id, saved.tax_rate_id = obj.country.upper(), obj.tax_id, obj.tax_rate_id
            saved.save(update_fields=["country", "tax_id", "tax_rate", "updated_at"])
        ServiceWriteAdmin.saved_as(obj, saved)

    @admin.display(description="current plan")
    def current_plan(self, tenant):
        for sub in tenant.subscriptions.all():
            if sub.status == SubscriptionStatus.ACTIVE:
                return str(sub.plan_version)
        return "—"

    @admin.action(description="Suspend the selected tenants")
    def suspend(self, request, queryset):
        _run_for_each(self, request, queryset, lambda t: lifecycle.tenant_suspend(tenant=t), "Suspended")

    @admin.action(description="Reactivate the selected tenants")
    def reactivate(self, request, queryset):
        _run_for_each(self, request, queryset, lambda t: lifecycle.tenant_reactivate(tenant=t), "Reactivated")

    @admin.action(description="Cancel the selected tenants (ends their subscriptions now)")
    def cancel(self, request, queryset):
        _run_for_each(self, request, queryset, lambda t: lifecycle.tenant_cancel(tenant=t), "Cancelled")


class PlanForm(forms.ModelForm):
    """The plan is edited as its document (docs/plans.md); saving validates it and versions it when it has subscribers."""

    document = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 24, "cols": 100, "style": "font-family: monospace"}),
        help_text=('The plan as a JSON document, in the format of <a href="/admin/docs/plans/">docs/plans.md</a> '
                   "(fields, bounds, charge models, worked examples). Editing a plan that has subscribers makes a "
                   "new version."),
    )

    class Meta:
        model = Plan
        fields = ("is_public",)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        current = self.instance.current_version if self.instance.pk else None
        if current is not None:
            self.initial["document"] = json.dumps(current.document, indent=2)

    def clean_document(self):
        document = loads_json_object(self.cleaned_data["document"], "A plan document is a JSON object.")
        if self.instance.pk and document.get("code") != self.instance.code:
            raise forms.ValidationError(f"The code of a saved plan cannot change (it is {self.instance.code!r}).")
        return document

    def clean(self):
        cleaned = super().clean()
        document = cleaned.get("document")
        if document is not None:
            from tenants.models import Metric

            try:
                parse_plan(document, metric_codes=Metric.objects.values_list("code", flat=True))
            except DocumentError as exc:
                raise forms.ValidationError([forms.ValidationError(e) for e in exc.errors]) from exc
        return cleaned


class _PlanAmounts:
    """A plan version's amounts as the plan document writes them ("49.00", not the column's 49.000000)."""

    @admin.display(description="base fee", ordering="base_fee")
    def base_fee_shown(self, version):
        return format_unit_amount(version.base_fee, version.currency)

    @admin.display(description="minimum commitment", ordering="minimum_commitment")
    def commitment_shown(self, version):
        return "-" if version.minimum_commitment is None else format_unit_amount(version.minimum_commitment,
                                                                                version.currency)


class PlanVersionInline(_PlanAmounts, admin.TabularInline):
    model = PlanVersion
    extra = 0
    fields = ("version", "name", "currency", "interval", "base_fee_shown", "trial_days", "commitment_shown",
              "subscribers", "created_at")
    readonly_fields = fields
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False

    @admin.display(description="active subscribers")
    def subscribers(self, version):
        return subscriptions_active(plan_version=version).count()


@admin.register(Plan)
class PlanAdmin(ServiceWriteAdmin):
    form = PlanForm
    list_display = ("code", "name", "is_public", "latest_version", "active_subscribers", "updated_at")
    list_filter = ("is_public",)
    search_fields = ("code", "name")
    inlines = [PlanVersionInline]
    actions = ["move_subscribers_to_latest"]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(
                _latest=Count("versions", distinct=True),
                _active=Count(
                    "versions__subscriptions",
                    filter=Q(versions__subscriptions__status=SubscriptionStatus.ACTIVE),
                    distinct=True,
                ),
            )
        )

    def get_fields(self, request, obj=None):
        return ("document", "is_public")

    def get_inlines(self, request, obj):
        return self.inlines if obj is not None else []

    @admin.display(description="versions", ordering="_latest")
    def latest_version(self, plan):
        return plan._latest

    @admin.display(description="active subscribers", ordering="_active")
    def active_subscribers(self, plan):
        return plan._active

    def save_model(self, request, obj, form, change):
        version, outcome = plan_save(document=form.cleaned_data["document"], is_public=form.cleaned_data["is_public"])
        self.saved_as(obj, version.plan)
        messages.info(request, f"Plan {obj.code}: {outcome}.")

    @admin.action(description="Move active subscribers to the latest version, from now")
    def move_subscribers_to_latest(self, request, queryset):
        now = timezone.now()
        _run_for_each(self, request, queryset, lambda p: subscription_move_to_latest(plan=p, at=now), "Plans processed")


class ChargeInline(admin.TabularInline):
    model = Charge
    extra = 0
    fields = ("position", "metric", "model", "spec")
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(PlanVersion)
class PlanVersionAdmin(_PlanAmounts, admin.ModelAdmin):
    list_display = ("__str__", "name", "currency", "interval", "base_fee_shown", "trial_days", "created_at")
    fields = ("plan", "version", "name", "currency", "interval", "base_fee_shown", "trial_days", "commitment_shown",
              "document", "created_at")
    readonly_fields = fields
    list_filter = ("currency", "interval", "plan")
    search_fields = ("plan__code", "name")
    inlines = [ChargeInline]

    def has_add_permission(self, request):
        return False  # versions are made by editing the plan

    def has_change_permission(self, request, obj=None):
        return False  # a version that may have subscribers is never edited in place from here


class SubscriptionChangeInline(admin.TabularInline):
    """The plan changes billing prices, each from its time (a future one is scheduled), with who made it."""

    model = SubscriptionChange
    extra = 0
    fields = ("from_version", "to_version", "changed_at", "made_by_shown", "created_at")
    readonly_fields = fields
    can_delete = False
    verbose_name_plural = "plan changes (as billed)"

    @admin.display(description="made by")
    def made_by_shown(self, obj):
        return admin_subscription_requests.who(obj.made_by)

    def has_add_permission(self, request, obj=None):
        return False


class SubscriptionRequestInline(admin_subscription_requests.PeopleColumns, admin.TabularInline):
    """What the tenant asked for (and staff decided): upgrades, downgrades, cancellations and their fate."""

    model = SubscriptionRequest
    extra = 0
    fields = ("created_at", "kind", "status", "from_version", "to_version", "effective_at", "requested_by_shown",
              "decided_by_shown", "note")
    readonly_fields = fields
    can_delete = False
    show_change_link = True
    verbose_name_plural = "requests by the tenant"

    def has_add_permission(self, request, obj=None):
        return False


class SubscriptionForm(forms.ModelForm):
    """Input only: saving calls the subscription services (start, change plan, set the trial's end, end)."""

    class Meta:
        model = Subscription
        fields = ("tenant", "plan_version", "billing_cycle", "started_at", "trial_ends_at", "ends_at")
        help_texts = {
            "trial_ends_at": "Empty when adding: the plan's trial, from the start.",
            "ends_at": "Setting it ends the subscription (it is billed up to then); an end cannot be removed.",
        }


@admin.register(Subscription)
class SubscriptionAdmin(ServiceWriteAdmin):
    form = SubscriptionForm
    list_display = ("tenant", "plan_version", "status", "billing_cycle", "started_at", "trial_ends_at", "ends_at")
    list_filter = ("status", "billing_cycle", "plan_version__plan")
    search_fields = ("tenant__slug", "tenant__name", "plan_version__plan__code")
    list_select_related = ("tenant", "plan_version__plan")
    readonly_fields = ("status", "created_at", "updated_at")
    inlines = [SubscriptionChangeInline, SubscriptionRequestInline]
    actions = ["end_now"]

    def get_inlines(self, request, obj):
        return self.inlines if obj is not None else []

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return self.readonly_fields
        if obj.status == SubscriptionStatus.ENDED:
            return (*self.readonly_fields, *SubscriptionForm.Meta.fields)  # history: nothing to change
        # No service moves a start or changes a billing cycle (past invoices were billed on them).
        return (*self.readonly_fields, "tenant", "started_at", "billing_cycle")

    def save_model(self, request, obj, form, change):
        data, changed = form.cleaned_data, set(form.changed_data)
        if not change:
            saved = subscription_create(
                tenant=data["tenant"], plan_version=data["plan_version"], started_at=data["started_at"],
                billing_cycle=data["billing_cycle"], trial_ends_at=data.get("trial_ends_at"),
            )
            if data.get("ends_at"):
                saved = subscription_end(subscription=saved, at=data["ends_at"])
        else:
            saved = Subscription.objects.get(pk=obj.pk)
            if "plan_version" in changed:
                # From now on, recorded with its time (billing prices each part of the period under its version).
                saved = subscription_change_plan(subscription=saved, plan_version=data["plan_version"],
                                                 at=timezone.now(), made_by=request.user)
            if "trial_ends_at" in changed:
                saved = subscription_set_trial_end(subscription=saved, trial_ends_at=data["trial_ends_at"])
            if "ends_at" in changed:
                if data["ends_at"] is None:
                    raise ApplicationError("An end cannot be removed: start a new subscription instead.")
                saved = subscription_end(subscription=saved, at=data["ends_at"])
        self.saved_as(obj, saved)

    @admin.action(description="End the selected subscriptions now")
    def end_now(self, request, queryset):
        now = timezone.now()
        _run_for_each(self, request, queryset, lambda s: subscription_end(subscription=s, at=now), "Ended")


# --- Identity (issue 6): tenant users and signups. Every change goes through the identity services, so the
# identity store (Cognito or local) and the portal's mirror stay in step.

from tenants.models import SignupRequest, SignupStatus, TenantUser  # noqa: E402
from tenants.services import identity as identity_services  # noqa: E402
from tenants.services.signup import signup_provision  # noqa: E402


class TenantUserAddForm(forms.ModelForm):
    """Input only: the identity service creates the user in save_model (a refusal, such as a taken email or
    the identity provider unavailable, shows on the form: see ServiceWriteAdmin)."""

    class Meta:
        model = TenantUser
        fields = ("tenant", "email", "role")

    def _post_clean(self):
        pass  # the service validates; the username and login it needs come from the identity store


@admin.register(TenantUser)
class TenantUserAdmin(ServiceWriteAdmin):
    list_display = ("email", "tenant", "role", "is_active", "password_change_required", "username", "disabled_at",
                    "identity_deleted_at", "created_at")
    list_filter = ("role", "is_active", "tenant__status", "password_change_required")
    search_fields = ("email", "username", "tenant__slug", "tenant__name")
    list_select_related = ("tenant",)
    readonly_fields = ("tenant", "email", "role", "username", "user", "is_active", "disabled_at", "disabled_with_tenant",
                       "password_change_required", "identity_deleted_at", "created_at", "updated_at")
    actions = ["disable", "enable", "reset_password", "remove"]

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = TenantUserAddForm
        return super().get_form(request, obj, **kwargs)

    def get_fields(self, request, obj=None):
        return ("tenant", "email", "role") if obj is None else self.readonly_fields

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else self.readonly_fields

    def save_model(self, request, obj, form, change):
        if not change:
            data = form.cleaned_data
            created = identity_services.tenant_user_add(tenant=data["tenant"], email=data["email"], role=data["role"])
            self.saved_as(obj, created)
            messages.info(request, f"Created the user {obj.email}; a temporary password was emailed to them.")

    def save_related(self, request, form, formsets, change):
        pass

    def has_delete_permission(self, request, obj=None):
        return False  # "remove" deletes the identity user too; a bare row delete would orphan it

    @admin.action(description="Disable the selected users (identity provider and portal)")
    def disable(self, request, queryset):
        _run_for_each(self, request, queryset, lambda u: identity_services.tenant_user_disable(tenant_user=u), "Disabled")

    @admin.action(description="Enable the selected users")
    def enable(self, request, queryset):
        _run_for_each(self, request, queryset, lambda u: identity_services.tenant_user_enable(tenant_user=u), "Enabled")

    @admin.action(description="Reset the password (a temporary one is emailed)")
    def reset_password(self, request, queryset):
        _run_for_each(self, request, queryset,
                      lambda u: identity_services.tenant_user_reset_password(tenant_user=u), "Passwords reset")

    @admin.action(description="Remove the selected members (deletes them from the identity provider)")
    def remove(self, request, queryset):
        _run_for_each(self, request, queryset, lambda u: identity_services.tenant_user_remove(tenant_user=u), "Removed")


@admin.register(SignupRequest)
class SignupRequestAdmin(admin.ModelAdmin):
    list_display = ("email", "company", "slug", "plan_version", "status", "provision_attempts", "short_error",
                    "ip", "created_at")
    list_filter = ("status", "created_at")
    search_fields = ("email", "company", "slug", "ip")
    list_select_related = ("plan_version__plan",)
    readonly_fields = ("company", "slug", "email", "plan_version", "status", "error", "verify_attempts",
                       "provision_attempts", "ip", "tenant", "owner", "code_expires_at", "verified_at",
                       "provisioned_at", "created_at", "updated_at")
    fields = readonly_fields
    actions = ["retry_provisioning"]

    def has_add_permission(self, request):
        return False

    @admin.display(description="error")
    def short_error(self, signup):
        return (signup.error[:80] + "…") if len(signup.error) > 80 else signup.error

    @admin.action(description="Retry provisioning of the selected (verified or failed) signups")
    def retry_provisioning(self, request, queryset):
        done, failed = 0, []
        for signup in queryset:
            try:
                result = signup_provision(request_id=signup.pk)
            except ApplicationError as exc:
                failed.append(f"Signup of {signup.email}: {exc.message}")
                continue
            if result.status == SignupStatus.PROVISIONED:
                done += 1
            else:
                failed.append(f"Signup of {signup.email}: {result.error}")
        if done:
            self.message_user(request, f"Provisioned: {done}.", messages.SUCCESS)
        for message in failed:
            self.message_user(request, message, messages.ERROR)
