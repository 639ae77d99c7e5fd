"""Invoices say when they are due (payment terms fixed at finalization); tiered lines keep their tier breakdown.

Invoices finalized before this migration get today's terms (INVOICE_PAYMENT_TERMS_DAYS), counted from their
issue date, so that every sent invoice has a due date (a constraint requires it). Their lines keep an empty
breakdown: it is written when a line is priced, and these were priced before it existed.
"""

from datetime import UTC, timedelta

from django.conf import settings
from django.db import migrations, models


def give_sent_invoices_a_due_date(apps, schema_editor):
    Invoice = apps.get_model("metering", "Invoice")
    days = settings.INVOICE_PAYMENT_TERMS_DAYS
    for invoice in Invoice.objects.exclude(status="draft").filter(due_date__isnull=True).only(
        "pk", "finalized_at", "created_at"
    ):
        issued = (invoice.finalized_at or invoice.created_at).astimezone(UTC).date()
        Invoice.objects.filter(pk=invoice.pk).update(payment_terms_days=days, due_date=issued + timedelta(days=days))


class Migration(migrations.Migration):

    dependencies = [
        ('metering', '0005_daily_usage'),
        ('tenants', '0002_identity_signup'),
    ]

    operations = [
        migrations.AddField(
            model_name='invoice',
            name='due_date',
            field=models.DateField(blank=True, help_text='Issue date (UTC) plus the payment terms; fixed at finalization.', null=True),
        ),
        migrations.AddField(
            model_name='invoice',
            name='payment_terms_days',
            field=models.PositiveIntegerField(blank=True, help_text='Days the tenant has to pay, counted from the issue date; fixed at finalization.', null=True),
        ),
        migrations.AddField(
            model_name='invoiceline',
            name='tiers',
            field=models.JSONField(blank=True, default=list, help_text="Graduated and volume lines: per tier its range, units, unit amount, flat amount and amount (decimal strings), adding up to the line's amount; empty for other lines."),
        ),
        migrations.RunPython(give_sent_invoices_a_due_date, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name='invoice',
            constraint=models.CheckConstraint(condition=models.Q(('status', 'draft'), models.Q(('due_date__isnull', False), ('payment_terms_days__isnull', False)), _connector='OR'), name='invoice_due_date_unless_draft'),
        ),
    ]
