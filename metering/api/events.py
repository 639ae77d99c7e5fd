"""The events endpoints: ``POST /api/v1/events/`` (ingest) and what arrived (``GET /api/v1/events/``,
``GET /api/v1/events/rejections/``); the same views serve staff under /api/v1/admin/tenants/<tenant>/events/.

Who may post: a tenant user or a tenant's API key (its events are its tenant's; naming another tenant
rejects that event), and staff or a provider key (an API key without a tenant), who name each event's
``tenant`` at /api/v1/events/ (under /api/v1/admin/tenants/<tenant>/ the URL's tenant is the default). Reading is tenant-scoped like every other endpoint.
``required_scopes`` are declared for the API keys' ``HasScopes`` permission.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions, permissions, status
from rest_framework.generics import ListAPIView
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from metering.api import filters, serializers
from metering.api.base import IsStaff, IsTenantUser, TenantScopedView, caller_tenant
from metering.api.renderers import BrowsableAPIRenderer
from metering.api.views import errors
from metering.event_sink import EventDeliveryError
from metering.models import EventReceipt, EventRejection
from metering.selectors.events import event_receipts, event_rejections_recent
from metering.services.events import EventRefused, events_ingest
from tenants.identity.api_keys import HasScopes, request_api_key
from tenants.models import Tenant

logger = logging.getLogger(__name__)
DELIVERY_FAILED = ("The events could not be taken right now and none was accepted: retry the same request "
                   "(same transaction ids) in a little while.")


class IsProviderKey(permissions.BasePermission):
    """A provider key (an API key without a tenant): it may send events for any tenant."""

    message = "This endpoint is for the provider's staff."

    def has_permission(self, request, view):
        api_key = request_api_key(request)
        return api_key is not None and api_key.tenant_id is None


class IsTenantUserOrStaff(IsTenantUser):
    def has_permission(self, request, view):
        return (IsStaff().has_permission(request, view) or IsProviderKey().has_permission(request, view)
                or super().has_permission(request, view))


class IsStaffOrProviderKey(permissions.BasePermission):
    message = IsStaff.message

    def has_permission(self, request, view):
        return IsStaff().has_permission(request, view) or IsProviderKey().has_permission(request, view)


class EventsView(TenantScopedView, ListAPIView):
    """POST: ingest a batch of events (202 with what was accepted, the duplicates and the rejections).
    GET: the tenant's accepted events, last arrived first (filter by code, transaction id, time)."""

    renderer_classes = [JSONRenderer, BrowsableAPIRenderer]
    serializer_class = serializers.EventReceiptSerializer

    @property
    def required_scopes(self):
        return ("events:write",) if self.request is not None and self.request.method == "POST" else ("usage:read",)

    def get_permissions(self):
        if self.is_admin_scope():
            return [IsStaffOrProviderKey(), HasScopes()] if self.request.method == "POST" else [IsStaff()]
        if self.request.method == "POST":
            return [IsTenantUserOrStaff()]
        return [IsTenantUser()]

    def _resolve_tenant(self, request):
        if not self.is_admin_scope() and caller_tenant(request) is None:
            return None  # staff posting at /api/v1/events/: every event names its tenant
        return super()._resolve_tenant(request)

    def get_serializer_class(self):
        if self.request is not None and self.request.method == "POST":
            return serializers.EventBatchSerializer
        return serializers.EventReceiptSerializer

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return EventReceipt.objects.none()
        params = filters.validated(filters.EventQuerySerializer, self.request)
        return event_receipts(tenant=self.tenant, **params)

    @extend_schema(parameters=[filters.EventQuerySerializer], responses={
        200: serializers.EventReceiptSerializer(many=True), **errors(400, 401, 403, 404, 429)})
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(request=serializers.EventBatchSerializer, responses={
        202: serializers.IngestResultSerializer,
        400: OpenApiResponse(description="The body is not {\"events\": [1 to EVENTS_MAX_BATCH events]}."),
        **errors(401, 403, 429),
        503: OpenApiResponse(description="The events could not be handed to the lake; nothing was accepted: retry."),
    })
    def post(self, request, *args, **kwargs):
        body = request.data
        if not isinstance(body, dict) or set(body) != {"events"}:
            raise exceptions.ValidationError({"events": ['The body must be {"events": [...]} and nothing else.']})
        events = body["events"]
        limit = settings.EVENTS_MAX_BATCH
        if not isinstance(events, list) or not 1 <= len(events) <= limit:
            raise exceptions.ValidationError({"events": [f"A list of 1 to {limit} events (EVENTS_MAX_BATCH)."]})
        try:
            result = events_ingest(tenant_for=self._tenant_for, events=events, received_at=timezone.now())
        except EventDeliveryError as exc:
            # The portal's trouble (a full disk, Firehose refusing): details for the operator's log only.
            logger.error("events: %s", exc.message)
            return Response({"detail": DELIVERY_FAILED}, status=status.HTTP_503_SERVICE_UNAVAILABLE,
                            headers={"Retry-After": "30"})
        return Response(result.as_dict(), status=status.HTTP_202_ACCEPTED)

    def _tenant_for(self, slug: str | None) -> Tenant:
        """The tenant an event belongs to (EventRefused when the caller may not post for the one it names)."""
        own = self.tenant
        if slug is None or (own is not None and slug == own.slug):
            if own is None:
                raise EventRefused('staff and provider keys name each event\'s tenant ("tenant": SLUG)')
            return own
        if caller_tenant(self.request) is not None:
            # Never confirm that another tenant exists: the same answer for any slug not the caller's.
            raise EventRefused("an event may only name the caller's own tenant")
        if "\x00" in slug:
            raise EventRefused("no such tenant")
        cache = self.__dict__.setdefault("_tenants", {})
        if slug not in cache:
            cache[slug] = Tenant.objects.filter(slug=slug).first()
        if cache[slug] is None:
            raise EventRefused(f"no tenant {slug[:100]!r}")
        return cache[slug]


class EventRejectionsView(TenantScopedView, ListAPIView):
    """The tenant's rejected events of the last EVENTS_REJECTIONS_KEEP_DAYS days with their reasons, last first."""

    renderer_classes = [JSONRenderer, BrowsableAPIRenderer]
    serializer_class = serializers.EventRejectionSerializer
    required_scopes = ("usage:read",)

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return EventRejection.objects.none()
        params = filters.validated(filters.EventRejectionQuerySerializer, self.request)
        return event_rejections_recent(tenant=self.tenant, now=timezone.now(), **params)

    @extend_schema(parameters=[filters.EventRejectionQuerySerializer], responses={
        200: serializers.EventRejectionSerializer(many=True), **errors(400, 401, 403, 404, 429)})
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)
