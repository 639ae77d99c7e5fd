"""Prepaid credits and coupons over the API: GET /api/v1/credits/ (the tenant's balance, grants and ledger;
staff under /api/v1/admin/tenants/<tenant>/credits/, where POST grants credit), and staff applying a coupon
to a subscription (/api/v1/admin/subscriptions/<id>/coupons/)."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, status
from rest_framework.response import Response

from metering.api import serializers
from metering.api.base import APIBase, TenantScopedView
from metering.api.views import USAGE_READ, errors
from metering.models import CreditSource
from metering.pricing import format_amount
from metering.selectors.credits import credit_balances, credit_entries, grant_is_live
from metering.services.credits import credit_grant_create
from tenants.models import CouponVia, Subscription, SubscriptionCoupon
from tenants.services.coupons import coupon_apply, coupon_for_code

DRAW_DOWNS_SHOWN = 500


def credits_document(tenant) -> dict:
    now = timezone.now()
    balances = credit_balances(tenant=tenant, at=now)
    grants = [
        {"id": grant.pk, "currency": grant.currency, "amount": format_amount(grant.amount, grant.currency),
         "remaining": format_amount(grant.remaining, grant.currency), "expires_at": grant.expires_at,
         "expired": not grant_is_live(grant, now), "source": grant.source, "note": grant.note,
         "created_at": grant.created_at}
        for balance in balances for grant in balance.grants
    ]
    entries = [
        {"grant": entry.grant_id, "invoice": entry.invoice.public_id, "invoice_number": entry.invoice.number,
         "kind": entry.kind, "amount": format_amount(entry.amount, entry.grant.currency),
         "remaining_after": format_amount(entry.remaining_after, entry.grant.currency), "created_at": entry.created_at}
        for entry in credit_entries(tenant=tenant)[:DRAW_DOWNS_SHOWN]
    ]
    return {"balances": [{"currency": b.currency, "balance": format_amount(b.balance, b.currency)} for b in balances],
            "grants": grants, "draw_downs": entries}


class CreditsView(TenantScopedView):
    """The tenant's prepaid credits: balance per currency, every grant, and the ledger of draw-downs (the latest
    500). Staff (admin scope) POST a grant."""

    required_scopes = USAGE_READ
    serializer_class = serializers.CreditsSerializer
    pagination_class = None

    @extend_schema(responses={200: serializers.CreditsSerializer, **errors(401, 403, 404, 429)})
    def get(self, request, *args, **kwargs):
        return Response(serializers.CreditsSerializer(credits_document(self.tenant)).data)

    @extend_schema(request=serializers.CreditGrantCreateSerializer,
                   responses={201: serializers.CreditsSerializer, **errors(400, 401, 403, 404, 429)})
    def post(self, request, *args, **kwargs):
        if not self.is_admin_scope():
            raise exceptions.PermissionDenied("Credits are granted by staff (/api/v1/admin/tenants/<tenant>/credits/).")
        given = serializers.CreditGrantCreateSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        data = given.validated_data
        credit_grant_create(tenant=self.tenant, amount=data["amount"], currency=data["currency"],
                            expires_at=data.get("expires_at"), note=data.get("note", ""), source=CreditSource.API,
                            by=request.user if request.user.is_authenticated else None)
        return Response(serializers.CreditsSerializer(credits_document(self.tenant)).data,
                        status=status.HTTP_201_CREATED)


class SubscriptionCouponsView(APIBase):
    """The coupons applied to a subscription, in the order applied; POST applies one by its code."""

    serializer_class = serializers.SubscriptionCouponSerializer
    pagination_class = None

    def _subscription(self, pk) -> Subscription:
        return get_object_or_404(Subscription.objects.select_related("plan_version"), pk=pk)

    @extend_schema(responses={200: serializers.SubscriptionCouponSerializer(many=True), **errors(401, 403, 404, 429)})
    def get(self, request, subscription):
        found = SubscriptionCoupon.objects.filter(subscription=self._subscription(subscription)).select_related("coupon")
        return Response(serializers.SubscriptionCouponSerializer(found.order_by("applied_at", "pk"), many=True).data)

    @extend_schema(request=serializers.CouponApplySerializer,
                   responses={201: serializers.SubscriptionCouponSerializer, **errors(400, 401, 403, 404, 429)})
    def post(self, request, subscription):
        target = self._subscription(subscription)
        given = serializers.CouponApplySerializer(data=request.data)
        given.is_valid(raise_exception=True)
        coupon = coupon_for_code(code=given.validated_data["code"], currency=target.plan_version.currency)
        redemption = coupon_apply(subscription=target, coupon=coupon, via=CouponVia.API,
                                  by=request.user if request.user.is_authenticated else None)
        return Response(serializers.SubscriptionCouponSerializer(redemption).data, status=status.HTTP_201_CREATED)
