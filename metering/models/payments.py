"""What a tenant paid against an invoice, and the payment reminders it was sent.

``InvoicePayment`` records money received (all of it, or part): a ledger never edited (a mistake is
corrected by voiding the invoice). An invoice is paid when its payments reach its total
(metering.services.billing.payments). ``InvoiceReminder`` is one reminder email of an unpaid invoice,
per step of INVOICE_REMINDER_DAYS (days from the due date): the unique (invoice, step) sends each once.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q


class InvoicePayment(models.Model):
    invoice = models.ForeignKey("metering.Invoice", on_delete=models.PROTECT, related_name="payments")
    amount = models.DecimalField(max_digits=18, decimal_places=4, help_text="In the invoice's currency.")
    received_at = models.DateTimeField(help_text="When the money arrived.")
    reference = models.CharField(max_length=200, blank=True, help_text="The bank or processor's reference.")
    recorded_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["invoice", "received_at", "pk"]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="invoice_payment_positive",
                                   violation_error_message="A payment is above 0."),
        ]

    def __str__(self):
        return f"{self.amount.normalize():f} {self.invoice.currency} on {self.invoice}"


class InvoiceReminder(models.Model):
    invoice = models.ForeignKey("metering.Invoice", on_delete=models.CASCADE, related_name="reminders")
    step = models.IntegerField(help_text="Days from the due date (negative: before it).")
    sent_at = models.DateTimeField()

    class Meta:
        ordering = ["invoice", "step"]
        constraints = [
            models.UniqueConstraint(fields=["invoice", "step"], name="invoice_reminder_once_per_step"),
        ]

    def __str__(self):
        return f"reminder {self.step:+d} days of {self.invoice}"
