"""Tenant users: the people of a tenant, mirrored from the identity backend (Cognito or local)."""

from django.conf import settings
from django.db import models
from django.db.models import Q


class TenantRole(models.TextChoices):
    OWNER = "owner", "Owner"
    MEMBER = "member", "Member"


class TenantUser(models.Model):
    """One user of a tenant. `username` is the identity's `cognito:username` (the `user` column of the
    access log), so usage from records without tenant_id is attributed through it."""

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="users")
    username = models.CharField(max_length=128, unique=True, help_text="cognito:username (sub) of the user.")
    email = models.EmailField()
    role = models.CharField(max_length=10, choices=TenantRole.choices, default=TenantRole.MEMBER)
    is_active = models.BooleanField(default=True)
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="tenant_user",
        help_text="The portal login of this user (tenant area), when it has one.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    disabled_at = models.DateTimeField(null=True, blank=True)
    disabled_with_tenant = models.BooleanField(default=False, help_text="Disabled by the tenant's suspension: reactivation enables it again.")
    password_change_required = models.BooleanField(default=False, help_text="Signed in with a temporary password: must choose one.")
    identity_deleted_at = models.DateTimeField(null=True, blank=True, help_text="When the identity user was deleted (cancelled tenant, after retention).")

    class Meta:
        ordering = ["tenant", "email"]
        constraints = [
            models.UniqueConstraint(fields=["email"], name="tenant_user_email_unique"),
            models.CheckConstraint(condition=Q(role__in=TenantRole.values), name="tenant_user_role_known"),
        ]

    def __str__(self):
        return f"{self.email} ({self.tenant.slug})"
