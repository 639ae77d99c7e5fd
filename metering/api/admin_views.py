"""Admin-scope endpoints (/api/v1/admin/...), staff only: tenants, plans, subscriptions, metrics, top tenants.

Per-tenant reads (usage, invoices, plan...) are the tenant-scope views mounted under
/api/v1/admin/tenants/<tenant>/, so the one TenantScopedView base serves both scopes. Writes call the
same services as the Django admin.
"""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.generics import ListAPIView, RetrieveAPIView
from rest_framework.response import Response

from metering.api import filters, serializers
from metering.api.base import APIBase
from metering.api.selectors import scaled, top_tenants
from metering.api.views import errors
from tenants.models import Metric, Plan, Subscription, SubscriptionStatus, Tenant, TenantStatus
from tenants.services.lifecycle import tenant_create, tenant_transition
from tenants.services.plans import metric_document_save, plan_save
from tenants.services.subscriptions import subscription_create

STATUS_PARAM = OpenApiParameter("status", str, enum=TenantStatus.values, description="Only tenants in this status.")


class TenantListView(APIBase, ListAPIView):
    """Tenants (filter with `status`); POST creates one."""

    queryset = Tenant.objects.order_by("slug")
    serializer_class = serializers.TenantSerializer

    def get_queryset(self):
        queryset = super().get_queryset()
        wanted = self.request.query_params.get("status")
        return queryset.filter(status=wanted) if wanted else queryset

    @extend_schema(parameters=[STATUS_PARAM], responses={200: serializers.TenantSerializer(many=True), **errors(401, 403, 429)})
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(request=serializers.TenantSerializer,
                   responses={201: serializers.TenantSerializer, **errors(400, 401, 403, 429)})
    def post(self, request, *args, **kwargs):
        given = serializers.TenantSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        tenant = tenant_create(**{k: v for k, v in given.validated_data.items() if k != "status"},
                               status=given.validated_data.get("status", "active"))
        return Response(serializers.TenantSerializer(tenant).data, status=status.HTTP_201_CREATED)


class TenantDetailView(APIBase, RetrieveAPIView):
    """One tenant, by slug."""

    queryset = Tenant.objects.all()
    serializer_class = serializers.TenantSerializer
    lookup_field = "slug"
    lookup_url_kwarg = "tenant"

    @extend_schema(responses={200: serializers.TenantSerializer, **errors(401, 403, 404, 429)})
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class TenantStatusView(APIBase):
    """Suspend, reactivate or cancel a tenant (the lifecycle's allowed moves only)."""

    serializer_class = serializers.TenantStatusSerializer
    pagination_class = None

    @extend_schema(request=serializers.TenantStatusSerializer,
                   responses={200: serializers.TenantSerializer, **errors(400, 401, 403, 404, 429)})
    def post(self, request, tenant):
        tenant_obj = self.get_tenant(tenant)
        given = serializers.TenantStatusSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        tenant_obj = tenant_transition(tenant=tenant_obj, to_status=given.validated_data["status"])
        return Response(serializers.TenantSerializer(tenant_obj).data)

    def get_tenant(self, slug):
        from django.shortcuts import get_object_or_404

        return get_object_or_404(Tenant, slug=slug)


class PlanListView(APIBase, ListAPIView):
    """Plans with their current version; POST stores a plan document (a new version when it has subscribers)."""

    queryset = Plan.objects.order_by("code").prefetch_related("versions")
    serializer_class = serializers.PlanSerializer

    @extend_schema(responses={200: serializers.PlanSerializer(many=True), **errors(401, 403, 429)})
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(request=serializers.PlanDocumentSerializer,
                   responses={200: serializers.PlanSerializer, **errors(400, 401, 403, 429)})
    def post(self, request, *args, **kwargs):
        given = serializers.PlanDocumentSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        version, _ = plan_save(document=given.validated_data["document"], is_public=given.validated_data["is_public"])
        return Response(serializers.PlanSerializer(version.plan).data)


class PlanDetailView(APIBase, RetrieveAPIView):
    """One plan, by code, with its current version's document."""

    queryset = Plan.objects.all()
    serializer_class = serializers.PlanSerializer
    lookup_field = "code"
    lookup_url_kwarg = "plan"

    @extend_schema(responses={200: serializers.PlanSerializer, **errors(401, 403, 404, 429)})
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class SubscriptionListView(APIBase, ListAPIView):
    """Subscriptions (filter with `tenant` and `status`); POST subscribes a tenant to a plan's current version."""

    serializer_class = serializers.SubscriptionSerializer

    def get_queryset(self):
        queryset = Subscription.objects.select_related("tenant", "plan_version__plan").order_by("-started_at", "pk")
        params = self.request.query_params
        if params.get("tenant"):
            queryset = queryset.filter(tenant__slug=params["tenant"])
        if params.get("status"):
            queryset = queryset.filter(status=params["status"])
        return queryset

    @extend_schema(
        parameters=[
            OpenApiParameter("tenant", str, description="Only this tenant's subscriptions (its slug)."),
            OpenApiParameter("status", str, enum=SubscriptionStatus.values, description="Only subscriptions in this status."),
        ],
        responses={200: serializers.SubscriptionSerializer(many=True), **errors(401, 403, 429)},
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(request=serializers.SubscriptionCreateSerializer,
                   responses={201: serializers.SubscriptionSerializer, **errors(400, 401, 403, 429)})
    def post(self, request, *args, **kwargs):
        given = serializers.SubscriptionCreateSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        data = dict(given.validated_data)
        plan = data.pop("plan")
        subscription = subscription_create(plan_version=plan.current_version, **data)
        return Response(serializers.SubscriptionSerializer(subscription).data, status=status.HTTP_201_CREATED)


class SubscriptionDetailView(APIBase, RetrieveAPIView):
    """One subscription, by id."""

    queryset = Subscription.objects.select_related("tenant", "plan_version__plan")
    serializer_class = serializers.SubscriptionSerializer
    lookup_url_kwarg = "subscription"

    @extend_schema(responses={200: serializers.SubscriptionSerializer, **errors(401, 403, 404, 429)})
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class AdminMetricListView(APIBase, ListAPIView):
    """Metrics; POST stores a metrics-document entry (created, or updated when the code exists)."""

    queryset = Metric.objects.order_by("code")
    serializer_class = serializers.MetricSerializer

    @extend_schema(responses={200: serializers.MetricSerializer(many=True), **errors(401, 403, 429)})
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(request=serializers.MetricDocumentSerializer,
                   responses={200: serializers.MetricSerializer, **errors(400, 401, 403, 429)})
    def post(self, request, *args, **kwargs):
        given = serializers.MetricDocumentSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        metric, _ = metric_document_save(document=dict(given.validated_data))
        return Response(serializers.MetricSerializer(metric).data)


class AdminMetricDetailView(APIBase, RetrieveAPIView):
    """One metric, by code."""

    queryset = Metric.objects.all()
    serializer_class = serializers.MetricSerializer
    lookup_field = "code"
    lookup_url_kwarg = "metric"

    @extend_schema(responses={200: serializers.MetricSerializer, **errors(401, 403, 404, 429)})
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class TopTenantsView(APIBase):
    """Usage across tenants: the tenants with the most usage of a metric over a range, largest first."""

    serializer_class = serializers.TopTenantSerializer

    @extend_schema(parameters=[filters.TopTenantsQuerySerializer],
                   responses={200: serializers.TopTenantSerializer(many=True), **errors(400, 401, 403, 429)})
    def get(self, request, *args, **kwargs):
        params = filters.validated(filters.TopTenantsQuerySerializer, request)
        metric = params["metric"]
        rows = top_tenants(metric=metric, start=params["start"], end=params["end"])[: params["limit"]]
        page = self.paginate_queryset(rows)
        data = [{"tenant": row["tenant__slug"], "name": row["tenant__name"], "value": scaled(row["raw"], metric)}
                for row in page]
        return self.get_paginated_response(serializers.TopTenantSerializer(data, many=True).data)


class RevenueView(APIBase):
    """Revenue per currency (never added across currencies): MRR, ARR, 12-month net revenue retention, and per
    month of the last twelve its revenue (by plan), usage charges, MRR, ARR, new and churned tenants; with the
    definitions of each figure. Amounts are decimal strings in their currency's minor digits."""

    @extend_schema(responses={200: OpenApiTypes.OBJECT, **errors(401, 403, 429)})
    def get(self, request, *args, **kwargs):
        from metering.selectors.revenue import report_json, revenue_report

        return Response(report_json(revenue_report()))
