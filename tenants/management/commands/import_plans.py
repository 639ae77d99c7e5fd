"""Import metrics and plans from a plans file (docs/plans.md); importing the same file twice changes nothing."""

import sys

from django.core.management.base import BaseCommand, CommandError

from metering.pricing.documents import MAX_DOCUMENT_BYTES, DocumentError, loads_document
from portal.kernel import ApplicationError
from tenants.services.plans import plans_import


class Command(BaseCommand):
    help = "Import a plans file: one plan document, or {\"metrics\": [...], \"plans\": [...]}."

    def add_arguments(self, parser):
        parser.add_argument("file", help="Path to the JSON file ('-' reads standard input).")

    def handle(self, *args, file, **options):
        try:
            # One byte past the limit is enough to refuse a file too large, without reading all of it.
            if file == "-":
                raw = sys.stdin.buffer.read(MAX_DOCUMENT_BYTES + 1)
            else:
                with open(file, "rb") as fh:
                    raw = fh.read(MAX_DOCUMENT_BYTES + 1)
            # Numbers are read as exact Decimals, never floats.
            document = loads_document(raw)
        except OSError as exc:
            raise CommandError(f"Cannot read {file}: {exc.strerror}") from exc
        except DocumentError as exc:
            raise CommandError(f"{file} is not valid JSON: {exc}") from exc
        try:
            report = plans_import(document=document)
        except ApplicationError as exc:
            for error in exc.extra.get("errors", [exc.message]):
                self.stderr.write(error)
            raise CommandError(f"{file} was not imported: {len(exc.extra.get('errors', [1]))} error(s)") from exc
        for line in report.lines():
            self.stdout.write(line)
        self.stdout.write("nothing changed" if not report.changed else "imported")
