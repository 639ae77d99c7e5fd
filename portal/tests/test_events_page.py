"""The tenant area's Events page: the tenant's own accepted events and recent rejections, filtered; nobody else's."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from metering.event_sink import reset_event_sink
from metering.services.events import EventRefused, events_ingest
from tenants.models import TenantRole, TenantUser
from tenants.tests.factories import TenantFactory

URL = "/tenant/events/"


@pytest.fixture
def tenants(db, settings, tmp_path):
    settings.LAKE_WAREHOUSE_DIR = str(tmp_path / "lake")
    reset_event_sink()
    made = {}
    for slug in ("acme", "globex"):
        tenant = TenantFactory(slug=slug)
        user = get_user_model().objects.create_user(f"{slug}-owner", f"owner@{slug}.example", "Corr3ct-Horse-Battery!")
        TenantUser.objects.create(tenant=tenant, username=f"{slug}-sub", email=f"owner@{slug}.example",
                                  role=TenantRole.OWNER, user=user)
        made[slug] = (tenant, user)
    yield made
    reset_event_sink()


def send(tenant, events):
    def tenant_for(slug):
        if slug not in (None, tenant.slug):
            raise EventRefused("an event may only name the caller's own tenant")
        return tenant

    return events_ingest(tenant_for=tenant_for, events=events, received_at=timezone.now())


def ts():
    return (timezone.now() - timedelta(minutes=3)).isoformat()


def test_the_page_lists_the_tenants_events_and_rejections(client, tenants):
    acme, acme_user = tenants["acme"]
    globex, _ = tenants["globex"]
    send(acme, [{"transaction_id": "acme-1", "code": "llm.completion", "timestamp": ts()},
                {"transaction_id": "acme-2", "code": "storage.gb", "timestamp": ts()},
                {"transaction_id": "acme-bad", "code": "llm.completion", "timestamp": "soon"}])
    send(globex, [{"transaction_id": "globex-1", "code": "llm.completion", "timestamp": ts()},
                  {"transaction_id": "globex-bad", "code": "X"}])
    client.force_login(acme_user)
    html = client.get(URL).content.decode()
    assert "acme-1" in html and "acme-2" in html and "acme-bad" in html and "is not ISO 8601" in html
    assert "globex" not in html
    assert 'aria-current="page">Events' in html
    filtered = client.get(URL, {"code": "storage.gb"}).content.decode()
    assert "acme-2" in filtered and "acme-1" not in filtered


def test_the_page_needs_a_tenant_sign_in(client, tenants):
    assert client.get(URL).status_code == 302  # to the sign-in page
    staff = get_user_model().objects.create_user("staff", "s@example.com", "x", is_staff=True)
    client.force_login(staff)
    assert client.get(URL).status_code == 403
