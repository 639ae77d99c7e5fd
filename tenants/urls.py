"""Tenant-facing URLs: the local identity's JWKS, self-service signup and the tenant area."""

from django.urls import path

from tenants import views_signup, views_tenant, views_webhooks
from tenants.identity import views as identity_views

urlpatterns = [
    path(".well-known/jwks.json", identity_views.jwks, name="identity-jwks"),
    path("signup/", views_signup.signup, name="signup"),
    path("signup/verify/", views_signup.signup_verify, name="signup-verify"),
    path("marketplace/aws/", views_signup.marketplace_landing, name="marketplace-landing"),
    path("tenant/", views_tenant.tenant_home, name="tenant-home"),
    path("tenant/users/", views_tenant.tenant_users, name="tenant-users"),
    path("tenant/users/<int:pk>/<slug:action>/", views_tenant.tenant_user_action, name="tenant-user-action"),
    path("tenant/api-keys/", views_tenant.tenant_api_keys_page, name="tenant-api-keys"),
    path("tenant/api-keys/<int:pk>/revoke/", views_tenant.tenant_api_key_revoke, name="tenant-api-key-revoke"),
    path("tenant/webhooks/", views_webhooks.tenant_webhooks, name="tenant-webhooks"),
    path("tenant/webhooks/<int:pk>/", views_webhooks.tenant_webhook, name="tenant-webhook"),
    path("tenant/webhooks/<int:pk>/deliveries/<str:webhook_id>/resend/", views_webhooks.tenant_webhook_resend,
         name="tenant-webhook-resend"),
    path("tenant/token/", views_tenant.tenant_token, name="tenant-token"),
    path("tenant/password/", views_tenant.tenant_password, name="tenant-password"),
]
