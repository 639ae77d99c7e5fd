"""Load the demo metrics, plans and tenants (idempotent: a second run changes nothing)."""

from pathlib import Path

from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import transaction

from tenants.services.demo import demo_load


class Command(BaseCommand):
    help = "Load demo plans and tenants, and create (or report) the admin login."

    def add_arguments(self, parser):
        parser.add_argument("--admin-username", default="admin")
        parser.add_argument("--admin-password", default=None, help="Default: generated on first run, then kept.")

    def handle(self, *args, admin_username, admin_password, **options):
        plans_file = Path(__file__).resolve().parents[2] / "fixtures" / "demo_plans.json"
        call_command("import_plans", str(plans_file), stdout=self.stdout, stderr=self.stderr)
        with transaction.atomic():
            result = demo_load(admin_username=admin_username, admin_password=admin_password)
        for line in result.lines:
            self.stdout.write(line)
