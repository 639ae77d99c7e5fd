"""The admin pages of usage, unattributed usage and sync runs: visible, read-only, and the sync-now action."""

from datetime import UTC, datetime

import pytest
from django.urls import reverse

from metering.models import HourlyUsage, SyncRun, UnattributedUsage
from metering.services.sync import usage_sync
from tenants.tests.factories import TenantFactory, import_sample_plans

from .test_sync import sample_records


@pytest.fixture
def synced(db, settings, tmp_path):
    from metering.lake.local import LocalLake

    settings.LAKE_BACKEND = "local"
    settings.LAKE_WAREHOUSE_DIR = str(tmp_path / "lake")
    lake = LocalLake(warehouse=settings.LAKE_WAREHOUSE_DIR, database=settings.LAKE_DATABASE, table=settings.LAKE_TABLE)
    lake.append(sample_records())
    import_sample_plans()
    TenantFactory(slug="t-acme")
    return usage_sync(start=datetime(2026, 11, 1, tzinfo=UTC), end=datetime(2026, 11, 2, tzinfo=UTC))


@pytest.mark.parametrize("model", [HourlyUsage, UnattributedUsage, SyncRun])
def test_changelists_show_the_rows_and_offer_no_add(admin_client, synced, model):
    url = reverse(f"admin:metering_{model._meta.model_name}_changelist")
    response = admin_client.get(url)
    assert response.status_code == 200
    assert model.objects.exists()
    assert admin_client.get(reverse(f"admin:metering_{model._meta.model_name}_add")).status_code == 403


def test_sync_run_detail_is_readable_not_editable(admin_client, synced):
    url = reverse("admin:metering_syncrun_change", args=[synced.pk])
    assert admin_client.get(url).status_code == 200
    assert admin_client.post(url, {"outcome": "failed"}).status_code == 403
    synced.refresh_from_db()
    assert synced.outcome == "succeeded"


def test_unattributed_usage_is_listed_with_its_keys(admin_client, synced):
    response = admin_client.get(reverse("admin:metering_unattributedusage_changelist"))
    assert b"5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a809" in response.content


def test_sync_now_button(admin_client, synced):
    changelist = admin_client.get(reverse("admin:metering_syncrun_changelist"))
    assert reverse("admin:metering_syncrun_sync_now").encode() in changelist.content
    response = admin_client.post(reverse("admin:metering_syncrun_sync_now"), follow=True)
    assert response.status_code == 200 and b"Usage sync done" in response.content
    assert SyncRun.objects.count() == 2 and SyncRun.objects.filter(triggered_by="admin").exists()
    assert admin_client.get(reverse("admin:metering_syncrun_sync_now")).status_code == 405


@pytest.mark.parametrize("model", ["hourlyusage", "dailyusage"])
def test_usage_is_shown_in_the_metric_unit_beside_the_raw_figure(admin_client, db, model):
    from metering.services.sync import daily_usage_refresh
    from metering.tests.test_billing import add_usage

    import_sample_plans()
    tenant = TenantFactory(slug="t-acme")
    hour = datetime(2026, 11, 1, 5, tzinfo=UTC)
    add_usage(tenant, "data_out_mb", hour, 2_500_000)  # bytes; the metric is counted in MB
    daily_usage_refresh(start=datetime(2026, 11, 1, tzinfo=UTC), end=datetime(2026, 11, 2, tzinfo=UTC))
    html = admin_client.get(reverse(f"admin:metering_{model}_changelist")).content.decode().lower()
    assert "usage (in the metric" in html and "2.5 mb" in html
    assert "raw value (before the divisor)" in html and "2500000" in html
    assert "2500000.000000" not in html
