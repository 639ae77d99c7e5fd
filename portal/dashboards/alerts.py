"""The tenant area's Alerts page (/tenant/alerts/): the tenant's thresholds on a metric's usage or on the
projected bill, how each is told (email, webhook or both) and when it fired; the owner adds and removes them.
Staff set them for any tenant in the admin (Usage alerts)."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from metering.models import AlertChannel, AlertKind, UsageAlert, UsageAlertFiring
from metering.services.alerts import alert_description, usage_alert_create, usage_alert_delete
from portal.kernel import ApplicationError
from tenants.models import Metric, TenantRole
from tenants.views_tenant import tenant_view

FIRINGS_SHOWN = 20


class AlertForm(forms.Form):
    """What to watch: a metric's quantity this period, or the projected bill; the threshold; the channel."""

    watch = forms.ChoiceField(label="Watch", help_text="A metric's usage this period, or the projected bill's total.")
    threshold = forms.DecimalField(max_digits=24, decimal_places=6, min_value=0, label="Threshold",
                                   help_text="In the metric's unit, or in the bill's currency.")
    channel = forms.ChoiceField(choices=AlertChannel.choices, initial=AlertChannel.EMAIL, label="Tell me by")

    def __init__(self, *args, metrics=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.metrics = {str(m.pk): m for m in metrics}
        self.fields["watch"].choices = [("spend", "The projected bill")] + [
            (str(m.pk), f"{m.name}{f' ({m.unit})' if m.unit else ''}") for m in metrics]


def alert_rows(tenant) -> list[dict]:
    """The tenant's alerts with their description and their last firing, for the page and the dashboard."""
    alerts = list(UsageAlert.objects.filter(tenant=tenant).select_related("metric").order_by("kind", "threshold"))
    last = {}
    for firing in UsageAlertFiring.objects.filter(alert__in=alerts).order_by("alert_id", "-fired_at"):
        last.setdefault(firing.alert_id, firing)
    return [{"alert": a, "description": alert_description(a), "last": last.get(a.pk)} for a in alerts]


@tenant_view
@require_http_methods(["GET", "POST"])
def tenant_alerts(request):
    me = request.tenant_user
    tenant = me.tenant
    owner = me.role == TenantRole.OWNER
    metrics = list(Metric.objects.order_by("name"))
    form = AlertForm(request.POST or None, metrics=metrics)
    if request.method == "POST":
        if not owner:
            return render(request, "tenants/area_denied.html", {"reason": "Only the owner sets alerts."}, status=403)
        if form.is_valid():
            watch = form.cleaned_data["watch"]
            try:
                usage_alert_create(tenant=tenant, kind=AlertKind.SPEND if watch == "spend" else AlertKind.USAGE,
                                   metric=form.metrics.get(watch), threshold=form.cleaned_data["threshold"],
                                   channel=form.cleaned_data["channel"], created_by=request.user)
            except ApplicationError as exc:
                form.add_error(None, exc.message)
            else:
                messages.success(request, "Alert added: it is checked after each usage sync.")
                return redirect("tenant-alerts")
    firings = (UsageAlertFiring.objects.filter(alert__tenant=tenant).select_related("alert", "alert__metric")
               .order_by("-fired_at")[:FIRINGS_SHOWN])
    return render(request, "portal/dashboards/alerts.html", {
        "tenant": tenant, "owner": owner, "form": form, "rows": alert_rows(tenant),
        "firings": [{"firing": f, "description": alert_description(f.alert, f)} for f in firings],
    })


@tenant_view
@require_POST
def tenant_alert_delete(request, pk: int):
    me = request.tenant_user
    if me.role != TenantRole.OWNER:
        return render(request, "tenants/area_denied.html", {"reason": "Only the owner sets alerts."}, status=403)
    alert = get_object_or_404(UsageAlert, pk=pk, tenant=me.tenant)  # another tenant's alert is a 404
    usage_alert_delete(alert=alert)
    messages.success(request, "Alert removed.")
    return redirect("tenant-alerts")
