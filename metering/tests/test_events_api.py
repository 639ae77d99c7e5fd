"""POST /api/v1/events/ and what arrived (GET /api/v1/events/, /api/v1/events/rejections/), through HTTP:
validation per event, exactly once (retries, a batch's own duplicates, two concurrent requests on
PostgreSQL), the accepted events in the local Iceberg events table exactly once, tenant isolation."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from metering.event_sink import reset_event_sink
from metering.models import EventReceipt, EventRejection
from metering.tests.api_fixtures import *  # noqa: F403
from metering.tests.processes import concurrently

URL = "/api/v1/events/"


pytestmark = pytest.mark.usefixtures("events_lake")  # metering/tests/conftest.py


def lake_rows(table) -> list[dict]:
    reset_event_sink()  # flush the buffered events into the table
    return sorted(table.rows(), key=lambda r: (r["tenant_id"], r["transaction_id"]))


def now_iso(**delta) -> str:
    return (timezone.now() + timedelta(**delta)).isoformat().replace("+00:00", "Z")


def event(tid, code="llm.completion", **extra):
    return {"transaction_id": tid, "code": code, "timestamp": now_iso(minutes=-5), **extra}


def post(client, events):
    # json.dumps escapes what the test client's renderer cannot encode (a lone surrogate), as a client's JSON may.
    return client.post(URL, json.dumps({"events": events}), content_type="application/json")


def test_accepts_valid_events_and_the_lake_holds_each_once(world, events_lake):
    client = world.client("acme")
    answer = post(client, [event("t-1", properties={"tokens": 1200, "model": "large", "cached": False}),
                           event("t-2", code="storage.gb", properties={"gb": 1.5})])
    assert answer.status_code == 202, answer.content
    assert answer.json() == {"accepted": 2, "duplicates": 0, "rejected": []}
    again = post(client, [event("t-1"), event("t-3")])  # a retry of t-1 (even with other content), and a new one
    assert again.json() == {"accepted": 1, "duplicates": 1, "rejected": []}
    rows = lake_rows(events_lake)
    assert [(r["tenant_id"], r["transaction_id"], r["code"]) for r in rows] == [
        ("acme", "t-1", "llm.completion"), ("acme", "t-2", "storage.gb"), ("acme", "t-3", "llm.completion")]
    assert rows[0]["properties"] == '{"cached":false,"model":"large","tokens":1200}'  # compact, keys sorted
    assert EventReceipt.objects.filter(tenant=world.tenants["acme"]).count() == 3


def test_a_duplicate_within_one_batch_counts_once(world, events_lake):
    answer = post(world.client("acme"), [event("same"), event("same"), event("other")])
    assert answer.json() == {"accepted": 2, "duplicates": 1, "rejected": []}
    assert [r["transaction_id"] for r in lake_rows(events_lake)] == ["other", "same"]


def test_transaction_ids_are_per_tenant(world, events_lake):
    assert post(world.client("acme"), [event("x")]).json()["accepted"] == 1
    assert post(world.client("globex"), [event("x")]).json()["accepted"] == 1
    assert [r["tenant_id"] for r in lake_rows(events_lake)] == ["acme", "globex"]


@pytest.mark.parametrize(("bad", "reason"), [
    ({"code": "a", "timestamp": "2026-01-01T00:00:00Z"}, "transaction_id is missing"),
    ({"transaction_id": "", "code": "a"}, "transaction_id must be a non-empty string"),
    ({"transaction_id": 7, "code": "a"}, "transaction_id must be a non-empty string"),
    ({"transaction_id": "x" * 256, "code": "a"}, "transaction_id is too long"),
    ({"transaction_id": "t", "code": "Bad Code"}, "code must be"),
    ({"transaction_id": "t"}, "code is missing"),
    ({"transaction_id": "t", "code": "a", "timestamp": "yesterday"}, "is not ISO 8601"),
    ({"transaction_id": "t", "code": "a", "timestamp": "2026-09-03T10:00:00"}, "timezone"),
    ({"transaction_id": "t", "code": "a", "timestamp": "<old>"}, "days in the past"),
    ({"transaction_id": "t", "code": "a", "timestamp": "<future>"}, "days in the future"),
    ({"transaction_id": "t", "code": "a", "properties": {"n": {"deep": 1}}}, "nested"),
    ({"transaction_id": "t", "code": "a", "properties": {"n": [1]}}, "nested"),
    ({"transaction_id": "t", "code": "a", "properties": {"n": None}}, "null"),
    ({"transaction_id": "t", "code": "a", "properties": [1]}, "properties must be an object"),
    ({"transaction_id": "t", "code": "a", "properties": {"big": "x" * 9000}}, "too large"),
    ({"transaction_id": "t", "code": "a", "colour": "red"}, "unknown field(s) 'colour'"),
    ({"transaction_id": "t", "code": "a", "tenant": "globex"}, "only name the caller's own tenant"),
    ({"transaction_id": "t", "code": "a", "tenant": "no-such"}, "only name the caller's own tenant"),
    ("not an object", "must be a JSON object"),
    ({"transaction_id": "t\x00", "code": "a"}, "NUL"),
    ({"transaction_id": "t\ud800", "code": "a"}, "not valid Unicode"),
    ({"transaction_id": "t", "code": "a", "properties": {"k": "\udfff"}}, "not valid Unicode"),
])
def test_each_invalid_event_is_rejected_with_its_reason_and_the_valid_ones_accepted(world, events_lake, bad, reason):
    if isinstance(bad, dict) and "code" in bad:
        bad.setdefault("timestamp", now_iso())
        bad["timestamp"] = {"<old>": now_iso(days=-36), "<future>": now_iso(days=2)}.get(bad["timestamp"], bad["timestamp"])
    answer = post(world.client("acme"), [event("good-1"), bad, event("good-2")])
    assert answer.status_code == 202
    body = answer.json()
    assert body["accepted"] == 2 and body["duplicates"] == 0
    assert len(body["rejected"]) == 1 and body["rejected"][0]["index"] == 1
    assert reason in body["rejected"][0]["error"]
    rejection = EventRejection.objects.get()
    assert rejection.tenant == world.tenants["acme"] and rejection.index == 1 and reason in rejection.error
    assert [r["transaction_id"] for r in lake_rows(events_lake)] == ["good-1", "good-2"]


def test_the_limits_come_from_the_settings(world, settings):
    settings.EVENTS_MAX_PAST_DAYS = 2
    settings.EVENTS_MAX_EVENT_BYTES = 200
    answer = post(world.client("acme"), [
        {**event("a"), "timestamp": now_iso(days=-3)},
        event("b", properties={"text": "x" * 150}),
        {**event("c"), "timestamp": now_iso(days=-1), "properties": {"ok": True}},
    ]).json()
    assert answer["accepted"] == 1
    assert ["days in the past" in answer["rejected"][0]["error"], "too large" in answer["rejected"][1]["error"]] == [True, True]


@pytest.mark.parametrize("body", [{"events": []}, {"events": "nope"}, {"evnts": [1]}, [1, 2],
                                  {"events": [{"transaction_id": "t"}], "extra": 1}])
def test_a_malformed_body_is_400_for_the_whole_request(world, body):
    answer = world.client("acme").post(URL, body, format="json")
    assert answer.status_code == 400
    assert not EventReceipt.objects.exists() and not EventRejection.objects.exists()


@pytest.mark.parametrize("body", [
    "[" * 100_000 + "]" * 100_000,  # deeper than Python's parser goes
    # A batch is checked by its shape; one deeper than 32 levels gets the generic check.
    '{"events": [{"transaction_id": "t", "code": "a", "properties": {"p": ' + "[" * 40 + "]" * 40 + "}}]}",
])
def test_a_body_nested_too_deep_is_400_without_a_500(world, body):
    answer = world.client("acme").post(URL, body, content_type="application/json")
    assert answer.status_code == 400
    assert "nested more than 32 levels deep" in answer.json()["detail"]
    assert not EventReceipt.objects.exists() and not EventRejection.objects.exists()


def test_more_than_the_batch_limit_is_400(world, settings):
    settings.EVENTS_MAX_BATCH = 3
    assert post(world.client("acme"), [event(f"t{i}") for i in range(4)]).status_code == 400
    assert post(world.client("acme"), [event(f"t{i}") for i in range(3)]).status_code == 202


def test_anonymous_is_refused(db):
    from rest_framework.test import APIClient

    assert APIClient().post(URL, {"events": [event("t")]}, format="json").status_code in (401, 403)
    assert APIClient().get(URL).status_code in (401, 403)


def test_staff_name_each_events_tenant(world, staff_client, events_lake):
    answer = post(staff_client, [event("s1", tenant="acme"), event("s2", tenant="globex"), event("s3"),
                                 event("s4", tenant="nope")]).json()
    assert answer["accepted"] == 2
    assert [(r["index"], r["error"]) for r in answer["rejected"]] == [
        (2, 'staff and provider keys name each event\'s tenant ("tenant": SLUG)'), (3, "no tenant 'nope'")]
    # Under the admin scope the URL's tenant is the default.
    scoped = staff_client.post("/api/v1/admin/tenants/globex/events/", {"events": [event("s5")]}, format="json")
    assert scoped.json()["accepted"] == 1
    assert [(r["tenant_id"], r["transaction_id"]) for r in lake_rows(events_lake)] == [
        ("acme", "s1"), ("globex", "s2"), ("globex", "s5")]


def test_a_tenant_may_name_itself(world):
    assert post(world.client("acme"), [event("t", tenant="acme")]).json()["accepted"] == 1


def test_when_the_sink_fails_nothing_is_accepted_and_a_retry_is(world, events_lake, monkeypatch):
    from metering import event_spool

    def full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(event_spool, "_sync", full)  # the events written but not durable: refused
    answer = post(world.client("acme"), [event("t-1")])
    assert answer.status_code == 503
    assert "retry" in answer.json()["detail"].lower() or "retry" in str(answer.json()).lower()
    assert not EventReceipt.objects.exists()
    monkeypatch.undo()
    assert post(world.client("acme"), [event("t-1")]).json()["accepted"] == 1
    assert [r["transaction_id"] for r in lake_rows(events_lake)] == ["t-1"]


# --- what arrived -------------------------------------------------------------------------------------

def test_listing_shows_the_tenants_own_events_with_filters(world):
    acme, globex = world.client("acme"), world.client("globex")
    post(acme, [event("a1"), event("a2", code="storage.gb"),
                {**event("a3"), "timestamp": "2026-11-30T10:00:00Z"} if False else event("a3")])
    post(globex, [event("g1")])
    listing = acme.get(URL).json()
    assert {e["transaction_id"] for e in listing["results"]} == {"a1", "a2", "a3"}
    assert all(e["tenant"] == "acme" for e in listing["results"])
    assert [e["transaction_id"] for e in acme.get(URL, {"code": "storage.gb"}).json()["results"]] == ["a2"]
    assert [e["transaction_id"] for e in acme.get(URL, {"transaction_id": "a1"}).json()["results"]] == ["a1"]
    assert acme.get(URL, {"transaction_id": "g1"}).json()["results"] == []  # another tenant's: never found
    assert acme.get(URL, {"since": now_iso(minutes=1)}).json()["results"] == []
    assert len(acme.get(URL, {"until": now_iso(minutes=1)}).json()["results"]) == 3
    assert acme.get(URL, {"since": "not a time"}).status_code == 400
    assert acme.get(URL, {"tenant": "globex"}).status_code == 404
    page = acme.get(URL, {"page_size": 2}).json()
    assert page["count"] == 3 and len(page["results"]) == 2 and page["next"]


def test_rejections_are_listed_for_their_tenant_and_pruned_after_the_configured_days(world, settings):
    from metering.tasks import prune_event_rejections

    acme = world.client("acme")
    post(acme, [{"transaction_id": "bad-1", "code": "NOPE", "timestamp": now_iso()}])
    post(world.client("globex"), [{"transaction_id": "bad-g"}])
    rows = acme.get(URL + "rejections/").json()["results"]
    assert [(r["transaction_id"], r["index"]) for r in rows] == [("bad-1", 0)]
    assert "code must be" in rows[0]["error"] and '"code":"NOPE"' in rows[0]["payload"]
    assert acme.get(URL + "rejections/", {"transaction_id": "bad-g"}).json()["results"] == []
    EventRejection.objects.update(received_at=timezone.now() - timedelta(days=settings.EVENTS_REJECTIONS_KEEP_DAYS + 1))
    assert acme.get(URL + "rejections/").json()["results"] == []
    assert prune_event_rejections() == {"deleted": 2}
    assert prune_event_rejections() == {"deleted": 0}


def test_staff_read_a_tenants_events_under_the_admin_scope(world, staff_client):
    post(world.client("acme"), [event("a1")])
    assert [e["transaction_id"] for e in staff_client.get("/api/v1/admin/tenants/acme/events/").json()["results"]] == ["a1"]
    assert staff_client.get("/api/v1/admin/tenants/globex/events/").json()["results"] == []
    assert staff_client.get(URL).status_code == 403  # staff read through the admin scope


def test_views_declare_their_scopes():
    from metering.api.events import EventRejectionsView, EventsView

    view = EventsView()
    view.request = type("R", (), {"method": "POST"})()
    assert view.required_scopes == ("events:write",)
    view.request = type("R", (), {"method": "GET"})()
    assert view.required_scopes == ("usage:read",)
    assert EventRejectionsView.required_scopes == ("usage:read",)


# --- exactly once under concurrency ---------------------------------------------------------------------

@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_concurrent_requests_with_the_same_ids_accept_each_event_once(local_identity, events_lake):
    from metering.tests.api_fixtures import World, make_tenant
    from tenants.tests.factories import import_sample_plans

    world = World()
    make_tenant(world, "acme", import_sample_plans()["pro"], email="ann@acme.example", usage="1")
    batch = [event(f"c-{i}") for i in range(200)]
    answers = [answer.json() for answer in concurrently(lambda: post(world.client("acme"), batch))]
    assert sum(a["accepted"] for a in answers) == 200  # each event accepted by one of the two requests
    assert sum(a["duplicates"] for a in answers) == 200  # and a duplicate for the other
    rows = lake_rows(events_lake)
    assert len(rows) == 200 and len({r["transaction_id"] for r in rows}) == 200


def test_timestamps_are_stored_in_utc(world, events_lake):
    post(world.client("acme"), [{**event("tz"), "timestamp": (timezone.now() - timedelta(hours=1)).astimezone(
        __import__("zoneinfo").ZoneInfo("Europe/Paris")).isoformat()}])
    receipt = EventReceipt.objects.get()
    row = lake_rows(events_lake)[0]
    assert row["timestamp"] == receipt.timestamp.astimezone(UTC).replace(tzinfo=None)
    assert isinstance(row["received_at"], datetime)


def test_staff_naming_a_tenant_with_a_nul_is_a_rejection_not_an_error(world, staff_client):
    answer = post(staff_client, [event("n1", tenant="ac\x00me")])
    assert answer.status_code == 202 and answer.json()["rejected"][0]["error"] == "no such tenant"


def test_an_api_key_with_events_write_sends_events_for_its_tenant_and_reads_them_with_usage_read(world, events_lake):
    from rest_framework.test import APIClient

    from tenants.services.api_keys import api_key_create, api_key_revoke

    def key_client(raw_key):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
        return client

    sender, raw = api_key_create(tenant=world.tenants["acme"], name="sender", scopes=["events:write"])
    answer = post(key_client(raw), [event("k-1"), event("k-2", tenant="globex")])
    assert answer.status_code == 202, answer.content
    body = answer.json()
    assert body["accepted"] == 1 and [r["index"] for r in body["rejected"]] == [1], body  # a key cannot name another tenant
    assert [(r["tenant_id"], r["transaction_id"]) for r in lake_rows(events_lake)] == [("acme", "k-1")]
    assert key_client(raw).get(URL).status_code == 403  # reading what arrived needs usage:read

    _, reader = api_key_create(tenant=world.tenants["acme"], name="reader", scopes=["usage:read"])
    assert post(key_client(reader), [event("k-3")]).status_code == 403  # sending needs events:write
    listed = key_client(reader).get(URL)
    assert listed.status_code == 200 and [e["transaction_id"] for e in listed.json()["results"]] == ["k-1"]

    api_key_revoke(api_key=sender)
    assert post(key_client(raw), [event("k-4")]).status_code == 401
    assert not EventReceipt.objects.filter(transaction_id__in=["k-3", "k-4"]).exists()


def test_a_provider_key_sends_events_for_any_tenant_and_reads_nothing(world, events_lake):
    """A provider key (api_key_create --provider): no tenant, events:write only; each event names its tenant,
    at /api/v1/events/ or under /api/v1/admin/tenants/<tenant>/events/; every reading endpoint refuses it."""
    from io import StringIO

    from django.core.management import call_command
    from rest_framework.test import APIClient

    out = StringIO()
    call_command("api_key_create", "--provider", "--name", "billing backend", stdout=out)
    assert "of the provider (events for any tenant) (scopes: events:write)" in out.getvalue()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {out.getvalue().splitlines()[-1]}")
    answer = post(client, [event("p-1", tenant="acme"), event("p-2", tenant="globex"), event("p-3"),
                           event("p-4", tenant="nope")])
    assert answer.status_code == 202, answer.content
    assert answer.json()["accepted"] == 2
    assert [(r["index"], r["error"]) for r in answer.json()["rejected"]] == [
        (2, 'staff and provider keys name each event\'s tenant ("tenant": SLUG)'), (3, "no tenant 'nope'")]
    under = client.post("/api/v1/admin/tenants/acme/events/", json.dumps({"events": [event("p-5")]}),
                        content_type="application/json")
    assert under.status_code == 202 and under.json()["accepted"] == 1, under.content
    assert [(r["tenant_id"], r["transaction_id"]) for r in lake_rows(events_lake)] == [
        ("acme", "p-1"), ("acme", "p-5"), ("globex", "p-2")]
    for path in (URL, "/api/v1/events/rejections/", "/api/v1/usage/", "/api/v1/invoices/",
                 "/api/v1/admin/tenants/", "/api/v1/admin/tenants/acme/events/", "/api/v1/admin/tenants/acme/usage/"):
        assert client.get(path).status_code in (401, 403), path
    with pytest.raises(Exception, match="only sends events"):
        call_command("api_key_create", "--provider", "--name", "x", "--scope", "usage:read", stdout=StringIO())
