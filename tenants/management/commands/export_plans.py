"""Export every metric and the current version of every plan, in the import format."""

import json

from django.core.management.base import BaseCommand

from tenants.services.plans import plans_export


class Command(BaseCommand):
    help = "Print the metrics and plans as a JSON file that import_plans re-imports to the same state."

    def add_arguments(self, parser):
        parser.add_argument("--output", "-o", help="Write to this file instead of standard output.")

    def handle(self, *args, output=None, **options):
        text = json.dumps(plans_export(), indent=2) + "\n"
        if output:
            with open(output, "w", encoding="utf-8") as fh:
                fh.write(text)
        else:
            self.stdout.write(text, ending="")
