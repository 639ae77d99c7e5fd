"""`manage.py run_billing [--period YYYY-MM] [--as-of ISO]`: bill closed periods, finalize due drafts."""

from datetime import UTC, datetime

from django.core.management.base import BaseCommand, CommandError

from metering.management import retries_logged
from metering.pricing import format_amount, isoformat_local
from metering.services.billing.run import billing_run
from portal.kernel import ApplicationError


def _instant(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise CommandError(f"--as-of {text!r} is not an ISO 8601 date or date-time") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


class Command(BaseCommand):
    help = "Bill every subscription period that has closed and has no invoice; finalize drafts past their grace period."

    def add_arguments(self, parser):
        parser.add_argument("--period", help="Only periods that start in this month (YYYY-MM).")
        parser.add_argument("--as-of", help="Bill as if it were this instant (ISO 8601, UTC by default).")
        parser.add_argument("--finalize-now", action="store_true", help="Finalize new invoices at once (no grace period).")
        parser.add_argument("--no-sync", action="store_true", help="Skip the final usage sync.")

    def handle(self, *args, period=None, as_of=None, finalize_now=False, no_sync=False, verbosity=1, **options):
        try:
            with retries_logged(verbosity):
                result = billing_run(
                    as_of=_instant(as_of) if as_of else None, period=period, finalize_now=finalize_now,
                    sync=not no_sync, triggered_by="command",
                )
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        for invoice in result.created:
            self.stdout.write(
                f"created {invoice} for {invoice.tenant.slug} {isoformat_local(invoice.period_start, invoice.tenant.zone)}.."
                f"{isoformat_local(invoice.period_end, invoice.tenant.zone)}: "
                f"{format_amount(invoice.total, invoice.currency)} {invoice.currency}"
            )
        for invoice in result.finalized:
            self.stdout.write(f"finalized {invoice.number} ({invoice.tenant.slug}): {format_amount(invoice.total, invoice.currency)} {invoice.currency}")
        run = result.run
        self.stdout.write(
            f"billing run {run.pk}: {run.subscriptions_seen} subscriptions, {run.invoices_created} invoices created, "
            f"{run.invoices_finalized} finalized"
        )
        if run.errors:
            self.stderr.write(run.errors)
            raise CommandError("some subscriptions could not be billed (see above)")
