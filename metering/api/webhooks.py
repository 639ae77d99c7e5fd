"""Webhook endpoints over the API: a tenant's owner manages their tenant's endpoints; staff the provider's.

- /api/v1/webhook-endpoints/ (tenant scope): the caller's tenant's endpoints; the tenant's owner only (an ID
  token or the tenant area's session). API keys are refused: an endpoint's secret signs what the tenant
  trusts, so machines do not manage them.
- /api/v1/admin/tenants/<tenant>/webhook-endpoints/ (staff): the same for any tenant.
- /api/v1/admin/webhook-endpoints/ (staff): provider endpoints, which receive every tenant's events.

POST answers 201 with the endpoint and its signing `secret`, which is never shown again (rotate-secret makes a
new one). PATCH changes url, events, description, or `enabled` (false disables it). Each endpoint's
deliveries and their attempts are listed; a delivery is resent with POST .../deliveries/<webhook-id>/resend/.
"""

from __future__ import annotations

from django.db.models import Prefetch
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import exceptions, permissions, serializers, status
from rest_framework.response import Response

from metering.api.base import APIBase, TenantScopedView, caller_tenant_user
from metering.api.views import errors
from tenants.models import TenantRole, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from tenants.webhooks import delivery as delivery_services
from tenants.webhooks import endpoints as endpoint_services
from tenants.webhooks.registry import EVENT_TYPES

# --- serializers -------------------------------------------------------------------------------------


class WebhookEndpointSerializer(serializers.ModelSerializer):
    tenant = serializers.SlugRelatedField(slug_field="slug", read_only=True, allow_null=True,
                                          help_text="The tenant whose events it receives; null: a provider endpoint.")
    events = serializers.ListField(source="event_types", child=serializers.CharField())

    class Meta:
        model = WebhookEndpoint
        fields = ["id", "tenant", "url", "description", "events", "enabled", "disabled_at", "disabled_reason",
                  "failing_since", "created_at", "updated_at"]


class WebhookEndpointWithSecretSerializer(WebhookEndpointSerializer):
    secret = serializers.CharField(help_text="The signing secret (whsec_…): shown in this answer only.")

    class Meta(WebhookEndpointSerializer.Meta):
        fields = [*WebhookEndpointSerializer.Meta.fields, "secret"]


class WebhookEndpointInputSerializer(serializers.Serializer):
    url = serializers.URLField(max_length=2000)
    events = serializers.ListField(child=serializers.ChoiceField(choices=list(EVENT_TYPES)), allow_empty=False)
    description = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    enabled = serializers.BooleanField(required=False, help_text="PATCH false to disable, true to enable again.")


class WebhookAttemptSerializer(serializers.ModelSerializer):
    class Meta:
        model = WebhookAttempt
        fields = ["number", "started_at", "finished_at", "succeeded", "status_code", "latency_ms",
                  "response_excerpt", "error"]


class WebhookDeliverySerializer(serializers.ModelSerializer):
    event_id = serializers.CharField(source="event.public_id", read_only=True)
    event_type = serializers.CharField(source="event.type", read_only=True)
    attempt_log = WebhookAttemptSerializer(many=True, read_only=True)

    class Meta:
        model = WebhookDelivery
        fields = ["webhook_id", "event_id", "event_type", "status", "attempts", "next_attempt_at", "last_status_code",
                  "last_error", "delivered_at", "resends", "created_at", "attempt_log"]


SECRET_ANSWER = inline_serializer("WebhookSecret", {"secret": serializers.CharField()})


# --- views -------------------------------------------------------------------------------------------


class IsTenantOwner(permissions.BasePermission):
    message = "Only the tenant's owner manages webhook endpoints."

    def has_permission(self, request, view):
        tenant_user = caller_tenant_user(request)
        return tenant_user is not None and tenant_user.role == TenantRole.OWNER


class TenantEndpointsMixin(TenantScopedView):
    """Endpoints of one tenant (the caller's, or the one staff name in the URL)."""

    def get_permissions(self):
        return [*super().get_permissions(), *([] if self.is_admin_scope() else [IsTenantOwner()])]

    def owner_tenant(self):
        return self.tenant

    def endpoints(self):
        return WebhookEndpoint.objects.select_related("tenant").filter(tenant=self.tenant).order_by("pk")


class ProviderEndpointsMixin(APIBase):
    """Provider endpoints (no tenant): staff only (APIBase's IsStaff)."""

    def owner_tenant(self):
        return None

    def endpoints(self):
        return WebhookEndpoint.objects.filter(tenant__isnull=True).order_by("pk")


class _EndpointList:
    """GET: the endpoints; POST: a new one, with its secret."""

    serializer_class = WebhookEndpointSerializer

    @extend_schema(responses={200: WebhookEndpointSerializer(many=True), **errors(401, 403, 404, 429)})
    def get(self, request, *args, **kwargs):
        page = self.paginate_queryset(self.endpoints())
        return self.get_paginated_response(WebhookEndpointSerializer(page, many=True).data)

    @extend_schema(request=WebhookEndpointInputSerializer,
                   responses={201: WebhookEndpointWithSecretSerializer, **errors(400, 401, 403, 404, 429)})
    def post(self, request, *args, **kwargs):
        given = WebhookEndpointInputSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        endpoint, secret = endpoint_services.webhook_endpoint_create(
            tenant=self.owner_tenant(), url=given.validated_data["url"], event_types=given.validated_data["events"],
            description=given.validated_data.get("description", ""), created_by=request.user)
        endpoint.secret = secret
        return Response(WebhookEndpointWithSecretSerializer(endpoint).data, status=status.HTTP_201_CREATED)


class _EndpointDetail:
    """GET, PATCH (url, events, description, enabled), DELETE one endpoint."""

    serializer_class = WebhookEndpointSerializer
    pagination_class = None

    def endpoint(self) -> WebhookEndpoint:
        endpoint = self.endpoints().filter(pk=self.kwargs["endpoint"]).first()
        if endpoint is None:
            raise exceptions.NotFound("No such webhook endpoint.")
        return endpoint

    @extend_schema(responses={200: WebhookEndpointSerializer, **errors(401, 403, 404, 429)})
    def get(self, request, *args, **kwargs):
        return Response(WebhookEndpointSerializer(self.endpoint()).data)

    @extend_schema(request=WebhookEndpointInputSerializer,
                   responses={200: WebhookEndpointSerializer, **errors(400, 401, 403, 404, 429)})
    def patch(self, request, *args, **kwargs):
        endpoint = self.endpoint()
        given = WebhookEndpointInputSerializer(data=request.data, partial=True)
        given.is_valid(raise_exception=True)
        data = given.validated_data
        endpoint = endpoint_services.webhook_endpoint_update(
            endpoint=endpoint, url=data.get("url"), event_types=data.get("events"), description=data.get("description"))
        if data.get("enabled") is False:
            endpoint = delivery_services.webhook_endpoint_disable(endpoint=endpoint)
        elif data.get("enabled") is True:
            endpoint = endpoint_services.webhook_endpoint_enable(endpoint=endpoint)
        return Response(WebhookEndpointSerializer(endpoint).data)

    @extend_schema(responses={200: OpenApiResponse(WebhookEndpointSerializer,
                                                   description="Deleted, with its deliveries: what it was."),
                              **errors(401, 403, 404, 429)})
    def delete(self, request, *args, **kwargs):
        endpoint = self.endpoint()
        data = WebhookEndpointSerializer(endpoint).data
        endpoint_services.webhook_endpoint_delete(endpoint=endpoint)
        return Response(data)


class _RotateSecret(_EndpointDetail):
    """A new signing secret, shown in this answer only; the old one also signs for WEBHOOKS_SECRET_OVERLAP_HOURS."""

    @extend_schema(request=None, responses={200: SECRET_ANSWER, **errors(401, 403, 404, 429)})
    def post(self, request, *args, **kwargs):
        _endpoint, secret = endpoint_services.webhook_endpoint_rotate_secret(endpoint=self.endpoint())
        return Response({"secret": secret})


class _Deliveries(_EndpointDetail):
    """The endpoint's deliveries, newest first, each with its attempts (time, status, latency, answer's start)."""

    serializer_class = WebhookDeliverySerializer
    pagination_class = APIBase.pagination_class

    @extend_schema(responses={200: WebhookDeliverySerializer(many=True), **errors(401, 403, 404, 429)})
    def get(self, request, *args, **kwargs):
        deliveries = (WebhookDelivery.objects.filter(endpoint=self.endpoint()).select_related("event")
                      .prefetch_related(Prefetch("attempt_log", WebhookAttempt.objects.order_by("number")))
                      .order_by("-created_at", "-pk"))
        page = self.paginate_queryset(deliveries)
        return self.get_paginated_response(WebhookDeliverySerializer(page, many=True).data)


class _Resend(_EndpointDetail):
    """Send a delivery again now (a fresh set of attempts, the same webhook-id)."""

    serializer_class = WebhookDeliverySerializer

    @extend_schema(request=None, responses={202: WebhookDeliverySerializer, **errors(400, 401, 403, 404, 429)})
    def post(self, request, *args, **kwargs):
        delivery = WebhookDelivery.objects.filter(endpoint=self.endpoint(), webhook_id=self.kwargs["delivery"]).first()
        if delivery is None:
            raise exceptions.NotFound("No such delivery.")
        delivery = delivery_services.webhook_delivery_resend(delivery=delivery)
        return Response(WebhookDeliverySerializer(delivery).data, status=status.HTTP_202_ACCEPTED)


class WebhookEndpointListView(_EndpointList, TenantEndpointsMixin):
    pass


class WebhookEndpointDetailView(_EndpointDetail, TenantEndpointsMixin):
    pass


class WebhookEndpointRotateView(_RotateSecret, TenantEndpointsMixin):
    pass


class WebhookDeliveryListView(_Deliveries, TenantEndpointsMixin):
    pass


class WebhookDeliveryResendView(_Resend, TenantEndpointsMixin):
    pass


class ProviderWebhookEndpointListView(_EndpointList, ProviderEndpointsMixin):
    pass


class ProviderWebhookEndpointDetailView(_EndpointDetail, ProviderEndpointsMixin):
    pass


class ProviderWebhookEndpointRotateView(_RotateSecret, ProviderEndpointsMixin):
    pass


class ProviderWebhookDeliveryListView(_Deliveries, ProviderEndpointsMixin):
    pass


class ProviderWebhookDeliveryResendView(_Resend, ProviderEndpointsMixin):
    pass
