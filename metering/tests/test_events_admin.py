"""The admin lists event receipts and rejections read-only, searchable by transaction id, filtered by tenant/code."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from metering.models import EventReceipt, EventRejection
from tenants.tests.factories import TenantFactory


@pytest.fixture
def rows(db):
    now = timezone.now()
    acme, globex = TenantFactory(slug="acme"), TenantFactory(slug="globex")
    EventReceipt.objects.create(tenant=acme, transaction_id="tx-acme-1", code="llm.completion", timestamp=now,
                                received_at=now)
    EventReceipt.objects.create(tenant=globex, transaction_id="tx-globex-1", code="storage.gb",
                                timestamp=now - timedelta(hours=1), received_at=now)
    EventRejection.objects.create(tenant=acme, index=3, transaction_id="tx-bad", error="code must be …",
                                  payload='{"code":"X"}', received_at=now)
    return acme, globex


@pytest.mark.parametrize("model", [EventReceipt, EventRejection])
def test_lists_are_read_only(admin_client, rows, model):
    name = model._meta.model_name
    assert admin_client.get(reverse(f"admin:metering_{name}_changelist")).status_code == 200
    assert admin_client.get(reverse(f"admin:metering_{name}_add")).status_code == 403
    row = model.objects.first()
    assert admin_client.get(reverse(f"admin:metering_{name}_change", args=[row.pk])).status_code == 200
    assert admin_client.post(reverse(f"admin:metering_{name}_delete", args=[row.pk])).status_code == 403


def test_receipts_search_by_transaction_id_and_filter_by_tenant_and_code(admin_client, rows):
    acme, _ = rows
    url = reverse("admin:metering_eventreceipt_changelist")
    html = admin_client.get(url, {"q": "tx-globex"}).content.decode()
    assert "tx-globex-1" in html and "tx-acme-1" not in html
    html = admin_client.get(url, {"tenant__id__exact": acme.pk}).content.decode()
    assert "tx-acme-1" in html and "tx-globex-1" not in html
    html = admin_client.get(url, {"code": "storage.gb"}).content.decode()
    assert "tx-globex-1" in html and "tx-acme-1" not in html
    rejections = admin_client.get(reverse("admin:metering_eventrejection_changelist"), {"q": "tx-bad"}).content.decode()
    assert "tx-bad" in rejections and "code must be" in rejections
