"""Credit notes: money given back on a finalized or paid invoice, for some of its lines or an amount.

A credit note is a ledger entry, never edited. Its invoice keeps the running figures (``credited_amount``,
and ``credited_against_due``, the part that was taken off what the tenant still owed) under database checks
that no credit note can pass: never more than the invoice's total is credited
(metering.services.billing.credit_notes; docs/plans.md, "Credit notes")."""

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q


class CreditNoteOutcome(models.TextChoices):
    INVOICE = "invoice", "Taken off what is left to pay"
    REFUNDED = "refunded", "Refunded (recorded)"
    BALANCE = "balance", "Credited to the tenant's balance"


class ImmutableCreditNoteError(Exception):
    """A credit note, once issued, never changes: issue another one."""


class CreditNote(models.Model):
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    invoice = models.ForeignKey("metering.Invoice", on_delete=models.PROTECT, related_name="credit_notes")
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.PROTECT, related_name="credit_notes")
    number = models.CharField(max_length=40, unique=True, help_text="CN-2026-000001: its own gapless sequence.")
    currency = models.CharField(max_length=3)
    amount = models.DecimalField(max_digits=18, decimal_places=4, help_text="The lines' sum, in the invoice's currency.")
    outcome = models.CharField(max_length=10, choices=CreditNoteOutcome.choices)
    reason = models.TextField(blank=True)
    reference = models.CharField(max_length=200, blank=True, help_text="The refund's bank or processor reference.")
    issued_at = models.DateTimeField()
    issued_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                  related_name="+")

    class Meta:
        ordering = ["issued_at", "pk"]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="credit_note_amount_positive"),
            models.CheckConstraint(condition=Q(outcome__in=CreditNoteOutcome.values), name="credit_note_outcome_known"),
        ]

    def __str__(self):
        return self.number

    def save(self, *args, **kwargs):
        if self.pk is not None and type(self).objects.filter(pk=self.pk).exists():
            raise ImmutableCreditNoteError(f"credit note {self.number} is issued: it cannot change")
        super().save(*args, **kwargs)

    def get_absolute_url(self):
        from django.urls import reverse

        return reverse("credit-note-document", args=[self.public_id])

    def delete(self, *args, **kwargs):
        raise ImmutableCreditNoteError(f"credit note {self.number} is issued: it cannot be deleted")


class CreditNoteLine(models.Model):
    credit_note = models.ForeignKey(CreditNote, on_delete=models.PROTECT, related_name="lines")
    position = models.PositiveIntegerField()
    invoice_line = models.ForeignKey("metering.InvoiceLine", null=True, blank=True, on_delete=models.PROTECT,
                                     related_name="credit_lines", help_text="The invoice line credited; empty "
                                     "for an amount credited on the invoice as a whole.")
    description = models.CharField(max_length=300)
    amount = models.DecimalField(max_digits=18, decimal_places=4)

    class Meta:
        ordering = ["credit_note", "position"]
        constraints = [
            models.UniqueConstraint(fields=["credit_note", "position"], name="credit_note_line_position_unique"),
            models.CheckConstraint(condition=Q(amount__gt=0), name="credit_note_line_amount_positive"),
        ]

    def __str__(self):
        return f"{self.credit_note} #{self.position} {self.description}"
