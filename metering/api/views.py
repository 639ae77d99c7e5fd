"""Tenant-scope endpoints (/api/v1/...): usage, current totals, projected bill, invoices, plan, users.

Every view is a TenantScopedView: the same classes serve staff under /api/v1/admin/tenants/<tenant>/...
API keys with `usage:read` read everything here but the tenant's users (people's data is for people).
"""

from __future__ import annotations

import hashlib
from datetime import UTC

from django.db.models import Sum
from django.utils import timezone
from django.utils.http import parse_etags, quote_etag
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, status
from rest_framework.generics import ListAPIView, RetrieveAPIView
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from metering.api import filters, serializers
from metering.api.base import TenantScopedView
from metering.api.renderers import BrowsableAPIRenderer, CSVRenderer
from metering.api.selectors import scaled, usage_buckets
from metering.models import Invoice, InvoiceLine, InvoiceStatus
from metering.pricing import (
    calendar_period,
    format_amount,
    format_plain,
    format_unit_amount,
    tier_breakdown,
    tiers_document,
)
from metering.selectors import period_quantities, usage_version, usage_version_and_backfill
from metering.selectors.billing import projected_bill
from metering.services.billing.periods import subscription_period
from metering.services.sync import floor_hour
from tenants.models import ApiKeyScope, Metric, Subscription, TenantUser
from tenants.selectors import tenant_active_subscription

CSV_RENDERERS = [JSONRenderer, CSVRenderer, BrowsableAPIRenderer]
ERRORS = {
    400: OpenApiResponse(description="A query parameter is invalid; the body names it and says why."),
    401: OpenApiResponse(description="No valid credentials."),
    403: OpenApiResponse(description="The caller may not use this endpoint (e.g. a tenant token on a staff endpoint, or an API key without the scope the endpoint needs)."),
    404: OpenApiResponse(description="No such object for this tenant (another tenant's objects are never found)."),
    429: OpenApiResponse(description="Too many requests for this token: retry after the Retry-After header's seconds."),
    503: OpenApiResponse(description="The figures asked for are being computed (after an upgrade): retry in a few minutes."),
}


USAGE_READ = (ApiKeyScope.USAGE_READ.value,)


def errors(*codes):
    return {code: ERRORS[code] for code in codes}


def active_subscription(tenant) -> Subscription | None:
    return tenant_active_subscription(tenant=tenant)


class UsageView(TenantScopedView):
    """Usage by metric in hour, day or month buckets (UTC): each bucket's value is what an invoice of
    that bucket would bill.

    count and sum metrics add up their hours; a max metric's bucket is its largest value; a
    unique_count metric's bucket is the distinct count over the whole bucket (so its day buckets do not
    add up to its month). Buckets without usage are left out. A range that cuts the first or last day
    (or month) bucket of a unique_count metric is refused (400, saying what to ask instead): use
    granularity=hour, whole days or months, or leave the metric out.
    """

    required_scopes = USAGE_READ

    renderer_classes = CSV_RENDERERS
    serializer_class = serializers.UsageBucketSerializer

    @extend_schema(
        parameters=[filters.UsageQuerySerializer, OpenApiParameter(
            "If-None-Match", location=OpenApiParameter.HEADER, required=False,
            description="The ETag of an earlier answer: 304 without a body while the usage is unchanged.")],
        responses={200: serializers.UsageBucketSerializer(many=True), **errors(400, 401, 403, 404, 429, 503),
                   304: OpenApiResponse(description="Not modified: no sync has changed the usage since the "
                                                    "answer whose ETag was sent in If-None-Match.")},
    )
    def get(self, request, *args, **kwargs):
        params = filters.usage_query(request)
        metrics = {metric.pk: metric for metric in params["metric"]}
        version, pending = usage_version_and_backfill(params["start"], params["end"])
        if (params["granularity"] != "hour" and any(m.aggregation == "unique_count" for m in metrics.values())
                and pending):
            raise FiguresPending()
        etag = usage_etag(request, tenant=self.tenant, metrics=metrics.values(), version=version)
        headers = {"ETag": etag, "Cache-Control": "private, no-cache"}
        # If-None-Match compares weakly (RFC 9110 13.1.2): W/"x" matches "x"; "*" matches any answer.
        sent = {tag.removeprefix("W/") for tag in parse_etags(request.headers.get("If-None-Match", ""))}
        if etag in sent or "*" in sent:
            # The usage has not changed since the caller's copy: no usage read, no body.
            return Response(status=status.HTTP_304_NOT_MODIFIED, headers=headers)
        # One query: the buckets are few (the range is bounded), so the page is cut from the list
        # rather than counting the aggregation a second time.
        rows = list(usage_buckets(tenant=self.tenant, metrics=list(metrics.values()), start=params["start"],
                                  end=params["end"], granularity=params["granularity"]))
        page = self.paginate_queryset(rows)
        # Built by hand rather than by UsageBucketSerializer (which documents it): this is the hot path,
        # and a serializer per bucket costs more than the query.
        starts: dict = {}  # a bucket's time is printed once for all its metrics
        data = [
            {
                "metric": (metric := metrics[row["metric_id"]]).code,
                "unit": metric.unit,
                "start": starts.get(row["bucket"]) or starts.setdefault(row["bucket"], utc_iso(row["bucket"])),
                "value": format(scaled(row["raw"], metric), "f"),
            }
            for row in page
        ]
        response = self.get_paginated_response(data)
        for name, value in headers.items():
            response[name] = value
        return response


def usage_etag(request, *, tenant, metrics, version: str | None = None) -> str:
    """The usage answer's entity tag: the usage's version (it changes in the transaction of every sync
    that writes usage), the tenant, the request's query string and the representation asked for (JSON or
    CSV), and the metrics' codes, units and divisors (what the values are scaled by). A client that
    sends it back in If-None-Match gets 304 until one of those changes."""
    negotiated = getattr(request, "accepted_media_type", "") or ""
    parts = (usage_version() if version is None else version, tenant.pk, request.get_full_path(), negotiated,
             sorted((m.code, m.unit, str(m.divisor)) for m in metrics))
    return quote_etag(hashlib.sha256(repr(parts).encode()).hexdigest()[:32])


class FiguresPending(exceptions.APIException):
    status_code = 503
    default_detail = ("The distinct counts of this range are being computed from the lake by the next usage "
                      "sync (after an upgrade); retry in a few minutes, or ask granularity=hour.")
    default_code = "figures_pending"


def utc_iso(moment) -> str:
    """ISO 8601 in UTC with a Z, as DRF's DateTimeField writes it."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


class CurrentUsageView(TenantScopedView):
    """Totals of the current billing period so far (the calendar month without a subscription).

    Each quantity is what the period's invoice would bill for it so far (before any trial is taken
    out): count and sum metrics add their hours, a max metric is its largest value and a unique_count
    metric its distinct count over the whole period. The period's hours are counted as billing counts
    them (a boundary inside an hour moves to that hour's start).
    """

    required_scopes = USAGE_READ

    serializer_class = serializers.CurrentUsageSerializer
    pagination_class = None

    @extend_schema(parameters=[filters.CurrentUsageQuerySerializer],
                   responses={200: serializers.CurrentUsageSerializer, **errors(400, 401, 403, 404, 429)})
    def get(self, request, *args, **kwargs):
        params = filters.validated(filters.CurrentUsageQuerySerializer, request)
        now = timezone.now()
        subscription = active_subscription(self.tenant)
        start, end = subscription_period(subscription, now) if subscription else calendar_period(now, "month", self.tenant.zone)
        quantities = period_quantities(subscription_or_tenant=self.tenant, metrics=params["metric"],
                                       start=floor_hour(start), end=floor_hour(end))
        totals = [
            {"metric": m.code, "name": m.name, "unit": m.unit, "aggregation": m.aggregation,
             "quantity": scaled(quantities[m.code], _NO_DIVISOR)}
            for m in params["metric"]
        ]
        data = {"period_start": start, "period_end": end, "as_of": now, "totals": totals}
        with timezone.override(self.tenant.zone):  # the period on the tenant's clock, with its offsets
            return Response(serializers.CurrentUsageSerializer(data).data)


_NO_DIVISOR = Metric(divisor=1)  # period_quantities has applied the divisor already


class ProjectedBillView(TenantScopedView):
    """The upcoming invoice: the current period priced on its usage so far, as billing would price it."""

    required_scopes = USAGE_READ

    serializer_class = serializers.ProjectedBillSerializer
    pagination_class = None

    @extend_schema(responses={200: serializers.ProjectedBillSerializer, **errors(401, 403, 404, 429)})
    def get(self, request, *args, **kwargs):
        now = timezone.now()
        priced = projected_bill(tenant=self.tenant, as_of=now)
        if priced is None:
            raise exceptions.NotFound("This tenant has no active subscription.")
        data = {"as_of": now, **priced_period_data(priced)}
        with timezone.override(self.tenant.zone):  # the period on the tenant's clock, with its offsets
            return Response(serializers.ProjectedBillSerializer(data).data)


def priced_period_data(priced) -> dict:
    """A priced period as the projected bill shows it (and a plan change's preview): lines with their tiers,
    then the order after the lines (discounts, tax, credits)."""
    lines = [
        {
            "type": line.type, "description": line.description, "plan": line.plan, "metric": line.metric,
            "model": line.model,
            "quantity": None if line.quantity is None else scaled(line.quantity, _NO_DIVISOR),
            "unit_amount": None if line.unit_amount is None else format_unit_amount(line.unit_amount, priced.currency),
            "amount": format_amount(line.amount, priced.currency),
            "tiers": [] if line.charge is None else tiers_document(
                tier_breakdown(line.charge, line.quantity, priced.currency), priced.currency),
            "period_start": line.period_start, "period_end": line.period_end,
        }
        for line in priced.lines
    ]
    return {
        "plans": list(priced.plans), "currency": priced.currency,
        "period_start": priced.period_start, "period_end": priced.period_end, "lines": lines,
        **totals_document(priced.totals),
    }


def totals_document(totals) -> dict:
    """The order after the lines (metering.pricing.totals) as the API prints it."""
    currency = totals.currency
    return {
        "subtotal": format_amount(totals.subtotal, currency),
        "discounts": [{"description": d.label, "amount": format_amount(d.amount, currency)} for d in totals.discounts
                      if d.amount > 0],
        "discount": format_amount(totals.discount, currency),
        "tax_rate": {"name": totals.tax_terms.name, "percentage": format_plain(totals.tax_terms.percentage),
                     "inclusive": totals.tax_terms.inclusive} if totals.shows_tax else None,
        "tax": format_amount(totals.tax, currency),
        "total": format_amount(totals.total, currency),
        "credits_applied": format_amount(totals.credits_applied, currency),
        "amount_due": format_amount(totals.amount_due, currency),
    }


class InvoiceQuerysetMixin:
    """Invoices of the scoped tenant; tenants never see drafts (not final until the grace period ends)."""

    def invoices(self):
        # The payments' sum rides along (amount_due): one query for a page of invoices, not one per invoice.
        queryset = self.scope_queryset(Invoice.objects.select_related("tenant").annotate(
            amount_paid_sum=Sum("payments__amount")))
        if not self.is_admin_scope():
            queryset = queryset.exclude(status=InvoiceStatus.DRAFT)
        return queryset


class InvoiceListView(InvoiceQuerysetMixin, TenantScopedView, ListAPIView):
    """Invoices, newest period first; filter by status and by period start."""

    required_scopes = USAGE_READ

    renderer_classes = CSV_RENDERERS
    serializer_class = serializers.InvoiceSerializer

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Invoice.objects.none()
        params = filters.validated(filters.InvoiceQuerySerializer, self.request)
        queryset = self.invoices().order_by("-period_start", "-created_at")
        if params.get("status"):
            queryset = queryset.filter(status=params["status"])
        if params.get("start"):
            queryset = queryset.filter(period_start__gte=params["start"])
        if params.get("end"):
            queryset = queryset.filter(period_start__lt=params["end"])
        return queryset

    @extend_schema(parameters=[filters.InvoiceQuerySerializer], responses={
        200: serializers.InvoiceSerializer(many=True), **errors(400, 401, 403, 404, 429)})
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class InvoiceDetailView(InvoiceQuerysetMixin, TenantScopedView, RetrieveAPIView):
    """One invoice with its lines (`id` is the invoice's public UUID)."""

    required_scopes = USAGE_READ

    serializer_class = serializers.InvoiceDetailSerializer
    lookup_field = "public_id"
    lookup_url_kwarg = "invoice"

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Invoice.objects.none()
        return self.invoices().prefetch_related("lines__adjusts", "credit_notes")

    @extend_schema(responses={200: serializers.InvoiceDetailSerializer, **errors(401, 403, 404, 429)})
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class InvoiceLinesView(InvoiceQuerysetMixin, TenantScopedView, ListAPIView):
    """The lines of one invoice, in order (JSON or CSV)."""

    required_scopes = USAGE_READ

    renderer_classes = CSV_RENDERERS
    serializer_class = serializers.InvoiceLineSerializer

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return InvoiceLine.objects.none()
        invoice = self.invoices().filter(public_id=self.kwargs["invoice"]).first()
        if invoice is None:
            raise exceptions.NotFound("No such invoice.")
        return invoice.lines.select_related("adjusts", "invoice").order_by("position")

    @extend_schema(responses={200: serializers.InvoiceLineSerializer(many=True), **errors(401, 403, 404, 429)})
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class PlanView(TenantScopedView):
    """The active subscription and its plan version's document."""

    required_scopes = USAGE_READ

    serializer_class = serializers.TenantPlanSerializer
    pagination_class = None

    @extend_schema(responses={200: serializers.TenantPlanSerializer, **errors(401, 403, 404, 429)})
    def get(self, request, *args, **kwargs):
        subscription = active_subscription(self.tenant)
        if subscription is None:
            raise exceptions.NotFound("This tenant has no active subscription.")
        subscription.tenant = self.tenant
        data = {"subscription": subscription, "plan": subscription.plan_version}
        return Response(serializers.TenantPlanSerializer(data).data)


class TenantUserListView(TenantScopedView, ListAPIView):
    """The tenant's users."""

    queryset = TenantUser.objects.order_by("email")
    serializer_class = serializers.TenantUserSerializer

    @extend_schema(responses={200: serializers.TenantUserSerializer(many=True), **errors(401, 403, 404, 429)})
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class TenantUserDetailView(TenantScopedView, RetrieveAPIView):
    """One user of the tenant."""

    queryset = TenantUser.objects.all()
    serializer_class = serializers.TenantUserSerializer
    lookup_url_kwarg = "user"

    @extend_schema(responses={200: serializers.TenantUserSerializer, **errors(401, 403, 404, 429)})
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class MetricListView(TenantScopedView, ListAPIView):
    """The provider's metrics (the same catalogue for every tenant): the codes `usage/` accepts."""

    required_scopes = USAGE_READ

    serializer_class = serializers.MetricSerializer

    def get_queryset(self):
        return Metric.objects.order_by("code")  # not tenant data: nothing to scope

    @extend_schema(responses={200: serializers.MetricSerializer(many=True), **errors(401, 403, 404, 429)})
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)
