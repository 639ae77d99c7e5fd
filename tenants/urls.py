"""Tenant-facing URLs: the local identity's JWKS, self-service signup and the tenant area."""

from django.urls import path

from tenants.identity import views as identity_views

urlpatterns = [
    path(".well-known/jwks.json", identity_views.jwks, name="identity-jwks"),
]
