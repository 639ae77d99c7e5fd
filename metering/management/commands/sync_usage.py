"""python manage.py sync_usage [--start ISO --end ISO]: pull hourly usage from the lake now."""

from datetime import UTC, datetime

from django.core.management.base import BaseCommand, CommandError

from metering.lake import LakeError
from metering.management import retries_logged
from metering.services.sync import usage_sync


def parse_iso(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise CommandError(f"not an ISO date or time: {value!r}") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class Command(BaseCommand):
    help = "Sync hourly usage from the lake into the portal database (default: from the cursor to now)."

    def add_arguments(self, parser):
        parser.add_argument("--start", type=parse_iso, help="window start (ISO, UTC if no zone)")
        parser.add_argument("--end", type=parse_iso, help="window end (ISO, UTC if no zone)")

    def handle(self, *args, start=None, end=None, verbosity=1, **options):
        try:
            with retries_logged(verbosity):
                run = usage_sync(start=start, end=end, triggered_by="command")
        except LakeError as exc:
            # One line, exit status 1; the run (Admin → Sync runs) keeps the same error and its attempts.
            which = f" (sync run {exc.extra['sync_run']})" if "sync_run" in exc.extra else ""
            raise CommandError(f"usage sync failed{which}: {exc.message}") from exc
        self.stdout.write(
            f"synced {run.window_start:%Y-%m-%dT%H:%MZ} – {run.window_end:%Y-%m-%dT%H:%MZ}: "
            f"{run.rows_read} groups read, {run.rows_written} hourly rows, {run.unattributed_rows} unattributed, "
            f"{run.duration_seconds:.2f} s"
        )
