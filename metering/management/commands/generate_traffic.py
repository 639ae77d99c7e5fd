"""python manage.py generate_traffic: realistic access-log records for N tenants, straight into the local lake."""

from datetime import UTC, datetime, timedelta

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from metering.management.commands.sync_usage import parse_iso
from metering.services.traffic import traffic_generate


def _last_month() -> tuple[datetime, datetime]:
    end = datetime.now(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return (end - timedelta(days=1)).replace(day=1), end


class Command(BaseCommand):
    help = ("Write generated access-log records for N tenants into the local lake (creating demo tenants, "
            "users and subscriptions where the portal has fewer active tenants). The same seed gives the same records.")

    def add_arguments(self, parser):
        parser.add_argument("--tenants", type=int, default=3)
        parser.add_argument("--events", type=int, default=10_000)
        parser.add_argument("--start", type=parse_iso, help="first instant (ISO, UTC if no zone); default: last month")
        parser.add_argument("--end", type=parse_iso, help="end (exclusive)")
        parser.add_argument("--seed", type=int, default=0)

    def handle(self, *args, tenants, events, start, end, seed, **options):
        default_start, default_end = _last_month()
        start, end = start or default_start, end or default_end
        if tenants < 1 or events < 0:
            raise CommandError("--tenants must be at least 1 and --events not negative")
        if end <= start:
            raise CommandError("--end must be after --start")
        with tqdm(total=events, unit="events", unit_scale=True, file=self.stderr._out,
                  disable=events < 100_000 and not self.stderr.isatty()) as bar:
            try:
                written = traffic_generate(tenants=tenants, events=events, start=start, end=end, seed=seed,
                                           progress=bar.update)
            except ValueError as exc:
                raise CommandError(str(exc)) from exc
        self.stdout.write(f"wrote {written} records for {tenants} tenants, {start.isoformat()} – {end.isoformat()}")
