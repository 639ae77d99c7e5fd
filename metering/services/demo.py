"""The demo's first impression: last month's traffic for the demo tenants, synced and billed, exactly once."""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.utils import timezone

from metering.lake import get_lake
from metering.services.billing import billing_run
from metering.services.sync import usage_sync
from metering.services.traffic import traffic_generate
from tenants.models import Tenant, TenantStatus


@dataclass
class DemoTraffic:
    generated: int
    hourly_rows: int
    invoices_created: int
    invoices_finalized: int


def last_month(now: datetime | None = None) -> tuple[datetime, datetime]:
    end = (now or timezone.now()).astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return (end - timedelta(days=1)).replace(day=1), end


def demo_traffic_load(*, events: int = 30_000, seed: int = 2026) -> DemoTraffic:
    """Generate last month's traffic for the active tenants (once: skipped when the lake already has
    records for that month), sync it and bill it. Each step is idempotent, so a second start of the
    demo, or a start after one that died half way, ends in the same state."""
    start, end = last_month()
    lake = get_lake()
    generated = 0
    # A new lake is no lake yet (reads never create it): then the traffic generated is its first write.
    if not lake.exists() or lake.count_requests(start=start, end=end) == 0:
        tenants = Tenant.objects.filter(status=TenantStatus.ACTIVE).count() or 3
        generated = traffic_generate(tenants=tenants, events=events, start=start, end=end, seed=seed, lake=lake)
    run = usage_sync(start=start, end=end, lake=lake, triggered_by="demo")
    billed = billing_run(period=f"{start:%Y-%m}", finalize_now=True, sync=False, triggered_by="demo")
    return DemoTraffic(generated, run.rows_written, len(billed.created), len(billed.finalized))
