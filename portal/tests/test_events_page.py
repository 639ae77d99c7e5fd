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


def test_the_page_filters_by_the_days_the_events_happened(client, tenants):
    acme, acme_user = tenants["acme"]
    now = timezone.now()
    days = {n: (now - timedelta(days=n)).replace(hour=12, minute=0, second=0, microsecond=0) for n in (1, 3, 5)}
    send(acme, [{"transaction_id": f"day-{n}", "code": "llm.completion", "timestamp": at.isoformat()}
                for n, at in days.items()])
    client.force_login(acme_user)

    def listed(**params):
        html = client.get(URL, params).content.decode()
        return {n for n in days if f"day-{n}<" in html}, html

    since, until = days[3].date().isoformat(), days[1].date().isoformat()
    assert listed(since=since)[0] == {1, 3}
    assert listed(until=since)[0] == {3, 5}  # "To" includes its day
    assert listed(since=since, until=since)[0] == {3}
    shown, html = listed(since=since, until=until)
    assert shown == {1, 3} and f'value="{since}"' in html and "Show all" in html
    # Unreadable or contradictory days: said on the page, never a server error; a bad day is not applied.
    response = client.get(URL, {"since": "yesterday", "until": "2026-13-40"})
    html = response.content.decode()
    assert response.status_code == 200 and "“From” is not a date" in html and "“To” is not a date" in html
    assert {n for n in days if f"day-{n}<" in html} == {1, 3, 5}
    shown, html = listed(since=until, until=since)
    assert "“To” is before “From”" in html and shown == set()
    # The ends of the calendar, a NUL, an overlong code: each said, none a server error.
    for params, said in (({"until": "9999-12-31"}, "Enter a date between"), ({"since": "0001-01-01"}, "Enter a date between"),
                         ({"transaction_id": "a\x00b"}, "Null characters are not allowed"),
                         ({"code": "x" * 101}, "at most 100 characters")):
        response = client.get(URL, params)
        assert response.status_code == 200 and said in response.content.decode(), params


def test_the_page_goes_back_fifty_events_at_a_time(client, tenants):
    acme, acme_user = tenants["acme"]
    for start in range(0, 120, 40):  # three requests: the later ones arrive last, so they are listed first
        send(acme, [{"transaction_id": f"ev-{i:03d}", "code": "llm.completion", "timestamp": ts()}
                    for i in range(start, start + 40)])
    client.force_login(acme_user)
    first = client.get(URL).content.decode()
    assert first.count("<code>ev-") == 50 and "ev-119<" in first and 'rel="next"' in first and 'rel="prev"' not in first
    second = client.get(URL, {"page": 2}).content.decode()
    assert second.count("<code>ev-") == 50 and "(page 2)" in second and 'href="?"' in second.split('rel="prev"')[0][-20:]
    third = client.get(URL, {"page": 3}).content.decode()
    assert third.count("<code>ev-") == 20 and 'rel="next"' not in third
    seen = [html.split("<code>ev-")[1:] for html in (first, second, third)]
    assert len({chunk[:3] for page in seen for chunk in page}) == 120  # every event once across the pages
    # A filter is kept from page to page; a page that is not a number is the first; past the end, none.
    assert 'href="?code=llm.completion&amp;page=2"' in client.get(URL, {"code": "llm.completion"}).content.decode()
    assert client.get(URL, {"page": "x"}).content.decode().count("<code>ev-") == 50
    assert "No older events." in client.get(URL, {"page": 9}).content.decode()
