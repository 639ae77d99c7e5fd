"""The local identity store (the embedded default): the portal's own users, in place of a Cognito user pool."""

from django.conf import settings
from django.db import models
from django.db.models import Q


class LocalIdentity(models.Model):
    """A local identity user: its password and enabled flag are the linked auth User's; the attributes a
    Cognito user would carry (`custom:tenant_id`, `custom:role`, group) are kept here."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="local_identity")
    username = models.CharField(max_length=128, unique=True, help_text="cognito:username of the user's tokens.")
    tenant_id = models.CharField(max_length=63, db_index=True, help_text="custom:tenant_id (the tenant's slug).")
    role = models.CharField(max_length=10)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["tenant_id", "username"]
        verbose_name = "local identity"
        verbose_name_plural = "local identities"
        constraints = [models.CheckConstraint(condition=Q(role__in=["owner", "member"]), name="local_identity_role_known")]

    def __str__(self):
        return f"{self.username} ({self.tenant_id})"
