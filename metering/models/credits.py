"""Prepaid credits: grants of a tenant's balance, and the ledger of what invoices drew from them.

A ``CreditGrant`` is an amount in one currency, optionally expiring, added by staff (admin or API) or by the
tenant's plan each period (``included_credit``). Its ``remaining`` is what is left: the billing run lowers it
under the grant's row lock, and a check constraint refuses it below 0, so two finalizations can never spend
the same credit. Every change of ``remaining`` is one ``CreditEntry``, never edited nor deleted afterwards: a
draw-down by an invoice, or its restoration when that invoice is voided. At most one of each per grant and
invoice (a unique constraint), so finalizing or voiding twice changes nothing.
"""

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone


class CreditSource(models.TextChoices):
    STAFF = "staff", "Staff (admin)"
    API = "api", "Staff API"
    PLAN = "plan", "Included in the plan"


class CreditGrant(models.Model):
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.PROTECT, related_name="credit_grants")
    currency = models.CharField(max_length=3)
    amount = models.DecimalField(max_digits=18, decimal_places=4, help_text="What was granted.")
    remaining = models.DecimalField(max_digits=18, decimal_places=4, help_text="What is left to draw.")
    expires_at = models.DateTimeField(
        null=True, blank=True,
        help_text="Pays invoices of periods that end by then (empty: never expires).")
    note = models.CharField(max_length=300, blank=True)
    source = models.CharField(max_length=10, choices=CreditSource.choices)
    subscription = models.ForeignKey("tenants.Subscription", null=True, blank=True, on_delete=models.PROTECT,
                                     related_name="credit_grants", help_text="Plan credits: the subscription.")
    period_start = models.DateTimeField(null=True, blank=True,
                                        help_text="Plan credits: the period they belong to (and pay).")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["tenant", "created_at", "pk"]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="credit_grant_amount_positive",
                                   violation_error_message="A grant is above 0."),
            models.CheckConstraint(condition=Q(remaining__gte=0, remaining__lte=F("amount")),
                                   name="credit_grant_remaining_within_amount"),
            models.CheckConstraint(condition=Q(source__in=CreditSource.values), name="credit_grant_source_known"),
            models.CheckConstraint(
                condition=Q(source="plan", subscription__isnull=False, period_start__isnull=False)
                | (~Q(source="plan") & Q(subscription__isnull=True, period_start__isnull=True)),
                name="credit_grant_plan_has_period",
            ),
            # One included credit per subscription and period, however often the billing run looks.
            models.UniqueConstraint(fields=["subscription", "period_start"], condition=Q(source="plan"),
                                    name="credit_grant_one_per_plan_period"),
        ]
        indexes = [models.Index(fields=["tenant", "currency", "expires_at"], name="credit_grant_usable")]

    def __str__(self):
        return f"{self.amount.normalize():f} {self.currency} for {self.tenant}"


class CreditEntryKind(models.TextChoices):
    DRAW = "draw", "Drawn by an invoice"
    RESTORE = "restore", "Restored (invoice voided)"


class CreditLedgerError(Exception):
    """Raised when code tries to change or delete a ledger entry: the ledger is append-only."""


class CreditEntry(models.Model):
    grant = models.ForeignKey(CreditGrant, on_delete=models.PROTECT, related_name="entries")
    invoice = models.ForeignKey("metering.Invoice", on_delete=models.PROTECT, related_name="credit_entries")
    kind = models.CharField(max_length=10, choices=CreditEntryKind.choices)
    amount = models.DecimalField(max_digits=18, decimal_places=4, help_text="Always above 0; the kind says which way.")
    remaining_after = models.DecimalField(max_digits=18, decimal_places=4, help_text="The grant's remaining after it.")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "pk"]
        verbose_name_plural = "credit entries"
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="credit_entry_amount_positive"),
            models.CheckConstraint(condition=Q(remaining_after__gte=0), name="credit_entry_never_below_zero"),
            models.CheckConstraint(condition=Q(kind__in=CreditEntryKind.values), name="credit_entry_kind_known"),
            models.UniqueConstraint(fields=["grant", "invoice", "kind"], name="credit_entry_once_per_invoice"),
        ]

    def __str__(self):
        return f"{self.get_kind_display()}: {self.amount.normalize():f} of grant {self.grant_id}"

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise CreditLedgerError("a credit ledger entry is never changed")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise CreditLedgerError("a credit ledger entry is never deleted")
