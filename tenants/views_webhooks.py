"""The tenant area's webhooks (owner only): add an endpoint (its secret shown once), list them, and per endpoint
its deliveries with every attempt; disable, enable, rotate the secret, delete, resend a delivery.

Everything is looked up within the caller's tenant: another tenant's endpoint or delivery is a 404.
"""

from django.contrib import messages
from django.db.models import Prefetch
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from portal.kernel import ApplicationError
from tenants.forms import WebhookEndpointForm
from tenants.models import TenantRole, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from tenants.views_tenant import _owner_only, tenant_view
from tenants.webhooks import delivery as delivery_services
from tenants.webhooks import endpoints as endpoint_services

OWNER_ONLY = "Only the owner manages webhooks."
DELIVERIES_SHOWN = 50


def _own_endpoint(request, pk: int) -> WebhookEndpoint:
    return get_object_or_404(WebhookEndpoint, pk=pk, tenant=request.tenant_user.tenant)


@tenant_view
@never_cache
@require_http_methods(["GET", "POST"])
def tenant_webhooks(request):
    me = request.tenant_user
    if me.role != TenantRole.OWNER:
        return _owner_only(request, OWNER_ONLY)
    form = WebhookEndpointForm(request.POST or None)
    shown = None
    if request.method == "POST" and form.is_valid():
        try:
            endpoint, secret = endpoint_services.webhook_endpoint_create(
                tenant=me.tenant, url=form.cleaned_data["url"], event_types=form.cleaned_data["event_types"],
                description=form.cleaned_data["description"], created_by=request.user)
        except ApplicationError as exc:
            form.add_error(None, exc.message)
        else:
            shown = (endpoint, secret)
            form = WebhookEndpointForm()
    endpoints = WebhookEndpoint.objects.filter(tenant=me.tenant).order_by("pk")
    return render(request, "tenants/area_webhooks.html", {"form": form, "endpoints": endpoints, "shown": shown})


@tenant_view
@never_cache
@require_http_methods(["GET", "POST"])
def tenant_webhook(request, pk: int):
    if request.tenant_user.role != TenantRole.OWNER:
        return _owner_only(request, OWNER_ONLY)
    endpoint = _own_endpoint(request, pk)
    secret = None
    if request.method == "POST":
        action = request.POST.get("action")
        try:
            if action == "disable":
                delivery_services.webhook_endpoint_disable(endpoint=endpoint)
                messages.success(request, "The endpoint is disabled: nothing is sent to it.")
            elif action == "enable":
                endpoint_services.webhook_endpoint_enable(endpoint=endpoint)
                messages.success(request, "The endpoint is enabled again.")
            elif action == "rotate":
                endpoint, secret = endpoint_services.webhook_endpoint_rotate_secret(endpoint=endpoint)
            elif action == "delete":
                endpoint_services.webhook_endpoint_delete(endpoint=endpoint)
                messages.success(request, f"The endpoint {endpoint.url} is deleted.")
                return redirect("tenant-webhooks")
        except ApplicationError as exc:
            messages.error(request, exc.message)
        endpoint.refresh_from_db()
    deliveries = (WebhookDelivery.objects.filter(endpoint=endpoint).select_related("event")
                  .prefetch_related(Prefetch("attempt_log", WebhookAttempt.objects.order_by("number")))
                  .order_by("-created_at", "-pk")[:DELIVERIES_SHOWN])
    return render(request, "tenants/area_webhook.html", {"endpoint": endpoint, "deliveries": deliveries,
                                                         "secret": secret})


@tenant_view
@require_POST
def tenant_webhook_resend(request, pk: int, webhook_id: str):
    if request.tenant_user.role != TenantRole.OWNER:
        return _owner_only(request, OWNER_ONLY)
    endpoint = _own_endpoint(request, pk)
    delivery = get_object_or_404(WebhookDelivery, endpoint=endpoint, webhook_id=webhook_id)
    try:
        delivery_services.webhook_delivery_resend(delivery=delivery)
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"{delivery.webhook_id} is queued again.")
    return redirect("tenant-webhook", pk=endpoint.pk)
