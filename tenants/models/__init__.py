"""Tenant-side models, a module per concern; import them all here so Django finds them."""

from tenants.models.api_keys import ApiKey, ApiKeyScope
from tenants.models.commercial import (
    USABLE_TENANT_STATUSES,
    BillingChannel,
    BillingCycle,
    Charge,
    Plan,
    PlanVersion,
    Subscription,
    SubscriptionChange,
    SubscriptionRequest,
    SubscriptionRequestKind,
    SubscriptionRequestStatus,
    SubscriptionStatus,
    Tenant,
    TenantStatus,
    time_zone_names,
    validate_time_zone,
    zone_named,
)
from tenants.models.coupons import Coupon, CouponDuration, CouponKind, CouponVia, SubscriptionCoupon, TaxRate
from tenants.models.email import DeliveryStatus, EmailDelivery, EmailKind
from tenants.models.identity import TenantRole, TenantUser
from tenants.models.local_identity import LocalIdentity
from tenants.models.marketplace import MarketplaceCustomer
from tenants.models.metrics import Aggregation, Metric
from tenants.models.signup import SignupRequest, SignupStatus
from tenants.models.webhooks import (
    WebhookAttempt,
    WebhookDelivery,
    WebhookDeliveryStatus,
    WebhookEndpoint,
    WebhookEvent,
)

__all__ = [
    "BillingChannel",
    "MarketplaceCustomer",
    "ApiKey",
    "ApiKeyScope",
    "BillingCycle",
    "Charge",
    "Coupon",
    "CouponDuration",
    "CouponKind",
    "CouponVia",
    "SubscriptionCoupon",
    "TaxRate",
    "Plan",
    "PlanVersion",
    "Subscription",
    "SubscriptionChange",
    "SubscriptionRequest",
    "SubscriptionRequestKind",
    "SubscriptionRequestStatus",
    "SubscriptionStatus",
    "Tenant",
    "TenantStatus",
    "USABLE_TENANT_STATUSES",
    "TenantRole",
    "TenantUser",
    "LocalIdentity",
    "Aggregation",
    "Metric",
    "SignupRequest",
    "SignupStatus",
    "DeliveryStatus",
    "EmailDelivery",
    "EmailKind",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookDeliveryStatus",
    "WebhookEndpoint",
    "WebhookEvent",
    "time_zone_names",
    "validate_time_zone",
    "zone_named",
]
