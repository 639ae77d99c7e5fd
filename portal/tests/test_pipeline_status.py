"""The provider dashboard's pipeline status after a sync from the command: "Synced up to" is never later than
now (the current hour's window ends in the future), and a sync that just ran reads "ok"."""

import re
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from metering.lake.local import LocalLake
from metering.models import SyncCursor
from tenants.tests.factories import TenantFactory, import_sample_plans


@pytest.fixture
def staff_client(client, django_user_model, settings, tmp_path):
    settings.LAKE_BACKEND = "local"
    settings.LAKE_WAREHOUSE_DIR = str(tmp_path / "lake")
    user = django_user_model.objects.create_superuser("boss", "boss@example.com", "Corr3ct-Horse-Battery!")
    client.force_login(user)
    return client


def synced_up_to(html: str) -> datetime:
    match = re.search(r"Synced up to<strong>(\d{4}-\d\d-\d\d \d\d:\d\d) UTC", html)
    assert match, "no 'Synced up to' time on the dashboard"
    return datetime.strptime(match.group(1), "%Y-%m-%d %H:%M").replace(tzinfo=UTC)


@pytest.mark.parametrize("args", [(), ("--end", "2999-01-01T00:00:00Z")], ids=["default window", "future end"])
def test_synced_up_to_is_never_later_than_now(staff_client, settings, args):
    import_sample_plans()
    TenantFactory(slug="t-acme")
    now = timezone.now()
    lake = LocalLake(warehouse=settings.LAKE_WAREHOUSE_DIR, database=settings.LAKE_DATABASE, table=settings.LAKE_TABLE)
    lake.append([{"request_id": "r-1", "ip": "10.0.0.1", "user": None, "request_time": now - timedelta(minutes=1),
                  "http_method": "GET", "resource_path": "/random/strings", "status": 200, "protocol": "HTTP/1.1",
                  "response_length": 10, "tenant_id": "t-acme"}])
    call_command("sync_usage", *args, stdout=StringIO())
    assert SyncCursor.objects.get(name="local").synced_until <= timezone.now()
    html = staff_client.get("/admin/dashboard/").content.decode()
    shown = synced_up_to(html)
    assert now.replace(second=0, microsecond=0) <= shown <= timezone.now()
    assert "dash-state-ok" in html
