"""Load the demo metrics, plans and tenants, and with --with-traffic their usage and invoices (idempotent: a
second run changes nothing). A project command: it sets up every app's demo data."""

from pathlib import Path

from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import transaction

from metering.services.demo import demo_traffic_load
from tenants.services.demo import demo_load


class Command(BaseCommand):
    help = "Load demo plans and tenants, and create (or report) the admin's and the demo tenants' logins."

    def add_arguments(self, parser):
        parser.add_argument("--admin-username", default="admin")
        parser.add_argument("--admin-password", default=None, help="Default: generated on first run, then kept.")
        parser.add_argument(
            "--with-traffic", action="store_true",
            help="Also generate traffic for the demo tenants from the start of last month up to now (the hours "
                 "not generated yet), sync it and bill last month.",
        )

    def handle(self, *args, admin_username, admin_password, with_traffic=False, **options):
        plans_file = Path(__file__).resolve().parents[3] / "tenants" / "fixtures" / "demo_plans.json"
        call_command("import_plans", str(plans_file), stdout=self.stdout, stderr=self.stderr)
        with transaction.atomic():
            result = demo_load(admin_username=admin_username, admin_password=admin_password)
        # The tenants before the billing that emails their invoices, the logins last: the last thing on the
        # screen before the server starts.
        for line in result.lines:
            self.stdout.write(line)
        if with_traffic:
            traffic = demo_traffic_load()
            self.stdout.write(
                f"demo traffic: {traffic.generated} records generated for last month and "
                f"{traffic.generated_this_month} for this month up to now, {traffic.events_accepted} events accepted, "
                f"{traffic.hourly_rows} hourly rows synced, "
                f"{traffic.invoices_created} invoices created, {traffic.invoices_finalized} finalized"
            )
        for line in result.logins:
            self.stdout.write(line)
