"""Backfill events from a file through the same validation and exactly-once receipts as POST /api/v1/events/.

    manage.py send_events FILE [--tenant SLUG] [--format jsonl|csv]

JSON Lines: one event object a line (blank lines are skipped). CSV: a header with ``transaction_id``,
``code``, ``timestamp``, optionally ``tenant``, and one ``properties.<name>`` column per property; a
property cell that reads as a JSON number or ``true``/``false`` is that number or boolean, any other
text a string, and an empty cell leaves the property out. ``--tenant`` is the tenant of events that
name none (the command acts as the provider: an event may name any tenant). The format follows the
file's extension (``.csv``, else JSON Lines) unless ``--format`` says. Rejections are reported by the
file's line number. Running it again accepts nothing new (every event is then a duplicate).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from tqdm import tqdm

from metering.event_sink import EventDeliveryError, reset_event_sink
from metering.services.events import EventRefused, IngestResult, events_ingest
from tenants.models import Tenant

SHOWN_REJECTIONS = 10
PROPERTY_PREFIX = "properties."


class Command(BaseCommand):
    help = "Send the events of a JSON Lines or CSV file (validated, each (tenant, transaction_id) accepted once)."

    def add_arguments(self, parser):
        parser.add_argument("file")
        parser.add_argument("--tenant", help="the tenant (slug) of events that name none")
        parser.add_argument("--format", choices=("jsonl", "csv"), help="default: from the file's extension")

    def handle(self, *args, file, tenant, format, **options):
        path = Path(file)
        fmt = format or ("csv" if path.suffix.lower() == ".csv" else "jsonl")
        default = None
        if tenant:
            default = Tenant.objects.filter(slug=tenant).first()
            if default is None:
                raise CommandError(f"no tenant {tenant!r}")
        try:
            with path.open(encoding="utf-8", newline="") as fh:
                lines = sum(1 for _ in fh)
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"cannot read {path}: {exc}") from exc
        tenants: dict[str, Tenant | None] = {}

        def tenant_for(slug):
            if slug is None:
                if default is None:
                    raise EventRefused("the event names no tenant (give --tenant SLUG or a tenant column)")
                return default
            if slug not in tenants:
                tenants[slug] = None if "\x00" in slug else Tenant.objects.filter(slug=slug).first()
            if tenants[slug] is None:
                raise EventRefused(f"no tenant {slug[:100]!r}")
            return tenants[slug]

        total = IngestResult()
        batch: list[tuple[int, object]] = []

        def send():
            if not batch:
                return
            result = events_ingest(tenant_for=tenant_for, events=[e for _, e in batch],
                                   indexes=[line for line, _ in batch], received_at=timezone.now())
            total.accepted += result.accepted
            total.duplicates += result.duplicates
            total.rejected += result.rejected
            bar.update(len(batch))
            batch.clear()

        with tqdm(total=lines, unit="lines", unit_scale=True, file=self.stderr._out,
                  disable=lines < 10_000 and not self.stderr.isatty()) as bar:
            try:
                with path.open(encoding="utf-8", newline="") as fh:
                    for line, item in (_csv_events(fh) if fmt == "csv" else _jsonl_events(fh)):
                        if isinstance(item, EventRefused):
                            total.rejected.append({"index": line, "error": str(item)})
                            bar.update(1)
                            continue
                        batch.append((line, item))
                        if len(batch) >= settings.EVENTS_MAX_BATCH:
                            send()
                    send()
            except (OSError, UnicodeDecodeError, csv.Error) as exc:
                raise CommandError(f"cannot read {path}: {exc}") from exc
            except EventDeliveryError as exc:
                raise CommandError(f"{exc.message} (the events before this batch were accepted; run again "
                                   f"to send the rest: those are duplicates now)") from exc
            finally:
                reset_event_sink()  # the accepted events into the lake now
        total.rejected.sort(key=lambda r: r["index"])
        self.stdout.write(f"accepted {total.accepted}, duplicates {total.duplicates}, "
                          f"rejected {len(total.rejected)}")
        for rejection in total.rejected[:SHOWN_REJECTIONS]:
            self.stdout.write(f"  line {rejection['index']}: {rejection['error']}")
        if len(total.rejected) > SHOWN_REJECTIONS:
            self.stdout.write(f"  … and {len(total.rejected) - SHOWN_REJECTIONS} more rejected")


def _jsonl_events(fh) -> Iterator[tuple[int, object]]:
    for number, text in enumerate(fh, start=1):
        if not text.strip():
            continue
        try:
            yield number, json.loads(text)
        except ValueError as exc:
            yield number, EventRefused(f"not JSON ({exc})")


def _csv_events(fh) -> Iterator[tuple[int, object]]:
    reader = csv.DictReader(fh)
    for row in reader:
        number = reader.line_num
        event: dict = {}
        properties: dict = {}
        for column, value in row.items():
            if column is None:  # more cells than the header has columns
                yield number, EventRefused("the row has more cells than the header")
                break
            if value in (None, ""):
                continue
            if column.startswith(PROPERTY_PREFIX):
                properties[column[len(PROPERTY_PREFIX):]] = _cell(value)
            else:
                event[column] = value
        else:
            if properties:
                event["properties"] = properties
            yield number, event


def _cell(value: str):
    if value in ("true", "false"):
        return value == "true"
    try:
        number = json.loads(value)
    except ValueError:
        return value
    return number if isinstance(number, int | float) and not isinstance(number, bool) else value
