"""API keys for machines: a tenant's key for /api/v1/, stored hashed, with its scopes and a displayed prefix.

A key without a tenant is the provider's (a staff key): it only sends events (``events:write``), for any
tenant, each event naming its own; it reads nothing.

A key reads `mk_<prefix>_<secret>`. Only the prefix (to show and to find the row) and the SHA-256 of the whole
key are kept: the key itself is shown once, when it is made (tenants/services/api_keys.py).
"""

from itertools import combinations

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Length
from django.db.models.lookups import GreaterThanOrEqual, LessThanOrEqual

API_KEY_PREFIX_LENGTH = 8
API_KEY_NAME_MAX_LENGTH = 100


class ApiKeyScope(models.TextChoices):
    EVENTS_WRITE = "events:write", "Send events (events:write)"
    USAGE_READ = "usage:read", "Read usage, invoices and the projected bill (usage:read)"


def canonical_scopes(scopes) -> list[str]:
    """The scopes as stored: each once, in ApiKeyScope's order (so the database can check the list)."""
    wanted = set(scopes)
    return [scope for scope in ApiKeyScope.values if scope in wanted]


# A provider key (no tenant) sends events for any tenant and reads nothing.
PROVIDER_KEY_SCOPES = [ApiKeyScope.EVENTS_WRITE.value]

# Every non-empty subset of the scopes in canonical order: the only values the `scopes` column may hold.
ALLOWED_SCOPE_LISTS = [list(subset) for size in range(1, len(ApiKeyScope.values) + 1)
                       for subset in combinations(ApiKeyScope.values, size)]


class ApiKey(models.Model):
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="api_keys", null=True,
                               blank=True, help_text="Empty: a provider key, which sends events for any tenant.")
    name = models.CharField(max_length=API_KEY_NAME_MAX_LENGTH, help_text="What the key is for (shown in lists).")
    prefix = models.CharField(max_length=API_KEY_PREFIX_LENGTH, unique=True, editable=False,
                              help_text="The key's first part (mk_<prefix>_…): shown, and how the key is found.")
    secret_hash = models.CharField(max_length=64, editable=False, help_text="SHA-256 of the whole key (hex).")
    scopes = models.JSONField(help_text="What the key may do: a non-empty list of events:write and usage:read.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+", help_text="The login that made the key (none: a command).")
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, help_text="Recorded at most once a minute (so a busy key does not write on every request).")
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+", help_text="The login that revoked the key (none: a command).")

    class Meta:
        verbose_name = "API key"
        ordering = ["tenant", "-created_at"]
        constraints = [
            models.CheckConstraint(condition=Q(prefix__regex=rf"^[a-z0-9]{{{API_KEY_PREFIX_LENGTH}}}$"),
                                   name="api_key_prefix_shape"),
            models.CheckConstraint(condition=Q(secret_hash__regex=r"^[0-9a-f]{64}$"), name="api_key_hash_shape"),
            models.CheckConstraint(
                condition=GreaterThanOrEqual(Length("name"), 1) & LessThanOrEqual(Length("name"), API_KEY_NAME_MAX_LENGTH),
                name="api_key_name_length",
            ),
            models.CheckConstraint(condition=Q(scopes__in=ALLOWED_SCOPE_LISTS), name="api_key_scopes_known"),
            models.CheckConstraint(condition=Q(revoked_at__isnull=True) | Q(revoked_at__gte=F("created_at")),
                                   name="api_key_revoked_after_created"),
            models.CheckConstraint(condition=Q(last_used_at__isnull=True) | Q(last_used_at__gte=F("created_at")),
                                   name="api_key_used_after_created"),
            models.CheckConstraint(condition=Q(revoked_by__isnull=True) | Q(revoked_at__isnull=False),
                                   name="api_key_revoked_by_only_if_revoked"),
            models.CheckConstraint(condition=Q(tenant__isnull=False) | Q(scopes=PROVIDER_KEY_SCOPES),
                                   name="api_key_provider_keys_only_send_events",
                                   violation_error_message="A provider key (no tenant) only sends events: its "
                                                           "scope is events:write alone."),
        ]

    def __str__(self):
        return f"{self.name} (mk_{self.prefix}_…)"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    @property
    def is_provider_key(self) -> bool:
        return self.tenant_id is None

    @property
    def display_key(self) -> str:
        return f"mk_{self.prefix}_…"
