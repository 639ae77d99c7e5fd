"""API URLs: /api/v1/ (tenant scope), /api/v1/admin/ (staff), the OpenAPI schema and its interactive docs."""

from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from metering.api import admin_views, credits, events, schema, subscription, views, webhooks  # noqa: F401  (schema registers the token and key schemes)

# The tenant's data; mounted at /api/v1/ for tenant tokens and at /api/v1/admin/tenants/<tenant>/ for staff.
tenant_patterns = [
    path("usage/", views.UsageView.as_view(), name="usage"),
    path("usage/current/", views.CurrentUsageView.as_view(), name="usage-current"),
    path("projected-bill/", views.ProjectedBillView.as_view(), name="projected-bill"),
    path("invoices/", views.InvoiceListView.as_view(), name="invoices"),
    path("invoices/<uuid:invoice>/", views.InvoiceDetailView.as_view(), name="invoice"),
    path("invoices/<uuid:invoice>/lines/", views.InvoiceLinesView.as_view(), name="invoice-lines"),
    path("plan/", views.PlanView.as_view(), name="plan"),
    path("plans/", subscription.OfferedPlansView.as_view(), name="plans-offered"),
    path("subscription/", subscription.SubscriptionView.as_view(), name="subscription"),
    path("subscription/preview/", subscription.SubscriptionPreviewView.as_view(), name="subscription-preview"),
    path("subscription/change/", subscription.SubscriptionChangeView.as_view(), name="subscription-change"),
    path("subscription/cancel/", subscription.SubscriptionCancelView.as_view(), name="subscription-cancel"),
    path("subscription/withdraw/", subscription.SubscriptionWithdrawView.as_view(), name="subscription-withdraw"),
    path("credits/", credits.CreditsView.as_view(), name="credits"),
    path("users/", views.TenantUserListView.as_view(), name="users"),
    path("users/<int:user>/", views.TenantUserDetailView.as_view(), name="user"),
    path("events/", events.EventsView.as_view(), name="events"),
    path("events/rejections/", events.EventRejectionsView.as_view(), name="event-rejections"),
    path("webhook-endpoints/", webhooks.WebhookEndpointListView.as_view(), name="webhook-endpoints"),
    path("webhook-endpoints/<int:endpoint>/", webhooks.WebhookEndpointDetailView.as_view(), name="webhook-endpoint"),
    path("webhook-endpoints/<int:endpoint>/rotate-secret/", webhooks.WebhookEndpointRotateView.as_view(),
         name="webhook-endpoint-rotate"),
    path("webhook-endpoints/<int:endpoint>/deliveries/", webhooks.WebhookDeliveryListView.as_view(),
         name="webhook-deliveries"),
    path("webhook-endpoints/<int:endpoint>/deliveries/<str:delivery>/resend/",
         webhooks.WebhookDeliveryResendView.as_view(), name="webhook-delivery-resend"),
]

admin_patterns = [
    path("tenants/", admin_views.TenantListView.as_view(), name="tenants"),
    path("tenants/<slug:tenant>/", admin_views.TenantDetailView.as_view(), name="tenant"),
    path("tenants/<slug:tenant>/status/", admin_views.TenantStatusView.as_view(), name="tenant-status"),
    path("tenants/<slug:tenant>/", include((tenant_patterns, "tenant-scope"))),
    path("plans/", admin_views.PlanListView.as_view(), name="plans"),
    path("plans/<slug:plan>/", admin_views.PlanDetailView.as_view(), name="plan"),
    path("subscriptions/", admin_views.SubscriptionListView.as_view(), name="subscriptions"),
    path("subscriptions/<int:subscription>/", admin_views.SubscriptionDetailView.as_view(), name="subscription"),
    path("subscriptions/<int:subscription>/coupons/", credits.SubscriptionCouponsView.as_view(),
         name="subscription-coupons"),
    path("metrics/", admin_views.AdminMetricListView.as_view(), name="metrics"),
    path("metrics/<slug:metric>/", admin_views.AdminMetricDetailView.as_view(), name="metric"),
    path("usage/top/", admin_views.TopTenantsView.as_view(), name="top-tenants"),
    path("revenue/", admin_views.RevenueView.as_view(), name="revenue"),
    path("webhook-endpoints/", webhooks.ProviderWebhookEndpointListView.as_view(), name="webhook-endpoints"),
    path("webhook-endpoints/<int:endpoint>/", webhooks.ProviderWebhookEndpointDetailView.as_view(),
         name="webhook-endpoint"),
    path("webhook-endpoints/<int:endpoint>/rotate-secret/", webhooks.ProviderWebhookEndpointRotateView.as_view(),
         name="webhook-endpoint-rotate"),
    path("webhook-endpoints/<int:endpoint>/deliveries/", webhooks.ProviderWebhookDeliveryListView.as_view(),
         name="webhook-deliveries"),
    path("webhook-endpoints/<int:endpoint>/deliveries/<str:delivery>/resend/",
         webhooks.ProviderWebhookDeliveryResendView.as_view(), name="webhook-delivery-resend"),
]

v1_patterns = [
    *tenant_patterns,
    path("metrics/", views.MetricListView.as_view(), name="metrics"),
    path("admin/", include((admin_patterns, "admin"))),
]

urlpatterns = [
    path("v1/", include((v1_patterns, "api-v1"))),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
]
