"""Admin for coupons and tax rates: staff create coupons and apply them to subscriptions, and keep the tax
rates (one marked default), all through the services in tenants.services.coupons."""

from django import forms
from django.contrib import admin

from tenants.admin_writes import ServiceWriteAdmin
from tenants.models import Coupon, CouponVia, Subscription, SubscriptionCoupon, SubscriptionStatus, TaxRate
from tenants.services.coupons import coupon_apply, coupon_create, tax_rate_save


@admin.register(Coupon)
class CouponAdmin(ServiceWriteAdmin):
    list_display = ("code", "name", "kind", "terms", "duration", "duration_periods", "times_redeemed",
                    "max_redemptions", "redeem_by", "active")
    list_filter = ("kind", "duration", "active")
    search_fields = ("code", "name")

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ("times_redeemed",)
        # The terms of a coupon in use never change (its invoices say what it took); retire it and make another.
        return ("code", "kind", "percent_off", "amount_off", "currency", "duration", "duration_periods",
                "times_redeemed", "created_at")

    def has_delete_permission(self, request, obj=None):
        return False  # invoices name it; untick "active" to stop it

    @admin.display(description="terms")
    def terms(self, coupon):
        if coupon.kind == "percent":
            return f"{coupon.percent_off.normalize():f} %"
        return f"{coupon.amount_off.normalize():f} {coupon.currency}"

    def save_model(self, request, obj, form, change):
        if change:
            return super().save_model(request, obj, form, change)
        data = form.cleaned_data
        saved = coupon_create(
            code=data["code"], name=data.get("name", ""), kind=data["kind"], percent_off=data.get("percent_off"),
            amount_off=data.get("amount_off"), currency=data.get("currency", ""), duration=data["duration"],
            duration_periods=data.get("duration_periods"), max_redemptions=data.get("max_redemptions"),
            redeem_by=data.get("redeem_by"))
        saved.active = data.get("active", True)
        saved.save(update_fields=["active"])
        self.saved_as(obj, saved)


class SubscriptionCouponForm(forms.ModelForm):
    subscription = forms.ModelChoiceField(
        queryset=Subscription.objects.filter(status=SubscriptionStatus.ACTIVE).select_related("tenant", "plan_version__plan"),
        help_text="An active subscription.")
    coupon = forms.ModelChoiceField(queryset=Coupon.objects.filter(active=True))

    class Meta:
        model = SubscriptionCoupon
        fields = ("subscription", "coupon")


@admin.register(SubscriptionCoupon)
class SubscriptionCouponAdmin(ServiceWriteAdmin):
    form = SubscriptionCouponForm
    list_display = ("coupon", "subscription", "applied_at", "via", "applied_by")
    list_filter = ("via", "coupon")
    list_select_related = ("coupon", "subscription__tenant", "subscription__plan_version__plan", "applied_by")
    search_fields = ("coupon__code", "subscription__tenant__slug")

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else ("subscription", "coupon", "applied_at", "via", "applied_by")

    def has_delete_permission(self, request, obj=None):
        return False  # the invoices it discounted name it

    def save_model(self, request, obj, form, change):
        if change:
            return
        data = form.cleaned_data
        saved = coupon_apply(subscription=data["subscription"], coupon=data["coupon"], via=CouponVia.STAFF,
                             by=request.user)
        self.saved_as(obj, saved)


@admin.register(TaxRate)
class TaxRateAdmin(ServiceWriteAdmin):
    list_display = ("name", "percentage", "inclusive", "country", "is_default")
    list_filter = ("inclusive", "is_default", "country")
    search_fields = ("name", "country")
    fields = ("name", "percentage", "inclusive", "country", "is_default")

    def save_model(self, request, obj, form, change):
        saved = tax_rate_save(tax_rate=obj)
        if not change:
            self.saved_as(obj, saved)
