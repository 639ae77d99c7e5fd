"""The events endpoints: ``POST /api/v1/events/`` (ingest) and what arrived (``GET /api/v1/events/``,
``GET /api/v1/events/rejections/``); the same views serve staff under /api/v1/admin/tenants/<tenant>/events/.

Who may post: a tenant user or a tenant's API key (its events are its tenant's; naming another tenant
rejects that event), and staff or a provider key (an API key without a tenant), who name each event's
``tenant`` at /api/v1/events/ (under /api/v1/admin/tenants/<tenant>/ the URL's tenant is the default). Reading is tenant-scoped like every other endpoint.
``required_scopes`` are declared for the API keys' ``HasScopes`` permission.
"""

from __future__ import annotations

import codecs
import json
import logging

from django.conf import settings
from django.http import HttpResponse
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions, parsers, permissions, status
from rest_framework.generics import ListAPIView
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.utils.json import strict_constant

from metering.api import filters, serializers
from metering.api.base import IsStaff, IsTenantUser, TenantScopedView, TokenThrottle, caller_tenant
from metering.api.renderers import BrowsableAPIRenderer
from metering.api.views import errors
from metering.event_sink import EventDeliveryError
from metering.models import EventReceipt, EventRejection
from metering.pricing.documents import MAX_JSON_DEPTH, nesting_depth
from metering.selectors.events import event_receipts, event_rejections_recent
from metering.services.events import EventRefused, events_ingest
from tenants.identity.api_keys import ApiKeyPrincipal, HasScopes, bearer_token, request_api_key
from tenants.models import Tenant
from tenants.services.api_keys import api_key_authenticate, looks_like_api_key

logger = logging.getLogger(__name__)
DELIVERY_FAILED = ("The events could not be taken right now and none was accepted: retry the same request "
                   "(same transaction ids) in a little while.")
# What the lean POST takes (EventsView._lean_post): the Accept headers DRF answers with JSON, and the charsets
# its JSON parser reads as UTF-8.
_LEAN_ACCEPT = frozenset({"", "*/*", "application/json"})
_LEAN_ENCODINGS = frozenset({None, "utf-8"})
_JSON_RENDERER = JSONRenderer()


class EventBatchParser(parsers.JSONParser):
    """The JSON of ``POST /api/v1/events/``: as the API's parser (portal.jsoninput), a body nested more than
    MAX_JSON_DEPTH levels is a 400, never a RecursionError; but a batch is flat by contract (a body, its list,
    the events, their properties: 4 levels), so the shape is checked directly, and only a body that is not
    that shallow pays the generic depth walk (which cost a 100-event request more than its validation)."""

    def parse(self, stream, media_type=None, parser_context=None):
        encoding = parsers.get_encoding(parser_context or {})
        try:
            text = codecs.getreader(encoding)(stream).read()
            body = json.loads(text, parse_constant=strict_constant if api_settings.STRICT_JSON else None)
        except RecursionError:
            raise exceptions.ParseError(f"JSON parse error - nested more than {MAX_JSON_DEPTH} levels deep") from None
        except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors too
            raise exceptions.ParseError(f"JSON parse error - {exc}") from None
        if not _at_most_four_deep(body) and nesting_depth(body, limit=MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
            raise exceptions.ParseError(f"JSON parse error - nested more than {MAX_JSON_DEPTH} levels deep")
        return body


def _at_most_four_deep(body) -> bool:
    """Whether ``body`` nests no deeper than {key: [{key: {key: scalar}}]} (a batch of flat events is)."""
    if type(body) is not dict:
        return type(body) is not list
    for events in body.values():
        if type(events) is dict:
            return False
        if type(events) is not list:
            continue
        for event in events:
            if type(event) is list:
                return False
            if type(event) is not dict:
                continue
            for value in event.values():
                if type(value) is dict:
                    value = value.values()
                elif type(value) is not list:
                    continue
                for item in value:
                    if type(item) is dict or type(item) is list:
                        return False
    return True


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
    parser_classes = [EventBatchParser, parsers.FormParser, parsers.MultiPartParser]
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

    def dispatch(self, request, *args, **kwargs):
        if request.method == "POST" and not kwargs:
            response = self._lean_post(request)
            if response is not None:
                return response
        return super().dispatch(request, *args, **kwargs)

    def _lean_post(self, request):
        """POST /api/v1/events/ by an API key (what sends events by the thousand) without DRF's per-request
        machinery: the same authentication, scope check, throttle, parsing, checks and answers as the DRF path
        (``post``), for the requests whose answer that path would give in JSON. None for anything else (another
        caller, a query string, another format, a key refused, throttled or without the scope, a body that does
        not parse or has not the shape): DRF then answers it, as it answers everything but these requests, so
        every refusal keeps its status, message and headers."""
        meta = request.META
        if (meta.get("QUERY_STRING") or meta.get("HTTP_ACCEPT", "") not in _LEAN_ACCEPT
                or request.content_type != "application/json" or request.encoding not in _LEAN_ENCODINGS):
            return None
        token = bearer_token(meta.get("HTTP_AUTHORIZATION", ""))
        if token is None or not looks_like_api_key(token):
            return None
        try:
            length = int(meta.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return None
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE  # request.body's limit (DRF's parser reads the stream)
        if length <= 0 or (limit is not None and length > limit):
            return None
        api_key = api_key_authenticate(token)
        if api_key is None or not set(self.required_scopes).issubset(api_key.scopes):
            return None
        try:
            body = json.loads(request.body.decode(), parse_constant=strict_constant if api_settings.STRICT_JSON else None)
        except (ValueError, RecursionError):
            return None
        if (type(body) is not dict or len(body) != 1 or type(body.get("events")) is not list
                or not 1 <= len(body["events"]) <= settings.EVENTS_MAX_BATCH):
            return None
        # The throttle last, as DRF's checks come before the body is read: a request left to DRF is counted once.
        caller = _KeyCaller(api_key)
        if not TokenThrottle().allow_request(caller, self):
            return None  # DRF checks again (a refusal records nothing) and answers 429 with the wait
        request.user, request.auth = caller.user, api_key  # as DRF's Request sets them on Django's request
        self.tenant = api_key.tenant
        try:
            # The body nests 2 levels above its events: only an event that is not flat can make it too deep.
            result = events_ingest(tenant_for=self._tenant_for, events=body["events"], received_at=timezone.now(),
                                   screen=_no_deeper_than_the_parser_takes)
        except _TooDeep:  # what EventBatchParser answers
            return self._lean_response({"detail": f"JSON parse error - nested more than {MAX_JSON_DEPTH} levels deep"},
                                       status.HTTP_400_BAD_REQUEST)
        except EventDeliveryError as exc:
            logger.error("events: %s", exc.message)
            return self._lean_response({"detail": DELIVERY_FAILED}, status.HTTP_503_SERVICE_UNAVAILABLE,
                                       {"Retry-After": "30"})
        return self._lean_response(result.as_dict(), status.HTTP_202_ACCEPTED)

    def _lean_response(self, data, status_code: int, headers=None) -> HttpResponse:
        """The answer DRF's Response would be once rendered by JSONRenderer and finalized by APIView."""
        response = HttpResponse(_JSON_RENDERER.render(data), status=status_code, content_type=_JSON_RENDERER.media_type,
                                headers=headers)
        response["Allow"] = ", ".join(self.allowed_methods)
        patch_vary_headers(response, ("Accept",))
        return response

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


class _TooDeep(Exception):
    pass


def _no_deeper_than_the_parser_takes(event) -> None:
    """Raise _TooDeep for an event that makes its body ({"events": [event]}) nest more than MAX_JSON_DEPTH."""
    if nesting_depth(event, limit=MAX_JSON_DEPTH - 2) > MAX_JSON_DEPTH - 2:
        raise _TooDeep


class _KeyCaller:
    """What TokenThrottle reads of a request made with ``api_key`` (DRF's Request, before there is one)."""

    __slots__ = ("auth", "user")

    def __init__(self, api_key):
        self.auth = api_key
        self.user = ApiKeyPrincipal(api_key)


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
