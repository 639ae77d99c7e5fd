"""POST /api/v1/events/ by an API key takes the lean path (metering.api.events.EventsView._lean_post), past
DRF's per-request machinery. Through HTTP: its answers are DRF's for the same requests (status, body, the
headers), the events and receipts are the same; and every request it does not take (another caller, a
refused or throttled key, a body DRF refuses, another format) is answered by DRF, as before."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from metering.api.events import EventsView
from metering.event_sink import reset_event_sink
from metering.models import EventReceipt, EventRejection
from metering.tests.api_fixtures import *  # noqa: F403
from tenants.services.api_keys import api_key_create, api_key_revoke

URL = "/api/v1/events/"
HEADERS = ("Content-Type", "Allow", "Vary", "Retry-After", "WWW-Authenticate")

pytestmark = pytest.mark.usefixtures("events_lake")  # metering/tests/conftest.py


def minutes_ago(minutes: int = 5) -> str:
    return (timezone.now() - timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


def event(tid, code="llm.completion", **extra):
    return {"transaction_id": tid, "code": code, "timestamp": minutes_ago(), **extra}


def key_client(raw_key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    return client


def answer(response) -> tuple:
    body = response.json() if response["Content-Type"] == "application/json" else response.content
    return response.status_code, body, {h: response[h] for h in HEADERS if response.has_header(h)}


@pytest.fixture
def drf_calls(monkeypatch):
    """How many requests reached DRF's ``initial`` (authentication, permissions, throttling)."""
    calls = []
    initial = EventsView.initial

    def counted(self, request, *args, **kwargs):
        calls.append(request.method)
        return initial(self, request, *args, **kwargs)

    monkeypatch.setattr(EventsView, "initial", counted)
    return calls


def drf_only(monkeypatch):
    monkeypatch.setattr(EventsView, "_lean_post", lambda self, request: None)


@pytest.fixture
def keys(world):
    return {"acme": api_key_create(tenant=world.tenants["acme"], name="sender", scopes=["events:write"])[1],
            "provider": api_key_create(tenant=None, name="backend")[1]}


def batches(prefix: str, stamp: str) -> list[tuple[str, list[dict]]]:
    """Requests whose answers do not name their transaction ids: one set per path, compared answer by answer."""
    p = prefix

    def event(tid, code="llm.completion", **extra):
        return {"transaction_id": tid, "code": code, "timestamp": stamp, **extra}

    return [
        ("acme", [event(f"{p}1", properties={"tokens": 1200, "model": "large", "cached": True}),
                  event(f"{p}2", code="storage.gb", properties={"gb": 1.5})]),
        ("acme", [event(f"{p}1"), event(f"{p}3"), event(f"{p}3")]),  # a retry, a new one, its duplicate
        ("acme", [event(f"{p}4", code="Bad Code"), event(f"{p}5", tenant="globex"), {"transaction_id": f"{p}6"},
                  event(f"{p}7", properties={"null": None}), event(f"{p}8", timestamp="yesterday"),
                  "not an object", event(f"{p}9", extra=1), event(f"{p}10", properties={"u": "naïve \u2028"})]),
        ("provider", [event(f"{p}11", tenant="acme"), event(f"{p}12", tenant="globex"), event(f"{p}13"),
                      event(f"{p}14", tenant="nope"), event(f"{p}15", tenant="x\x00")]),
    ]


def test_the_lean_path_answers_and_stores_as_drf_does(world, keys, drf_calls, monkeypatch):
    stamp = minutes_ago()
    lean = [answer(key_client(keys[who]).post(URL, json.dumps({"events": events}), content_type="application/json"))
            for who, events in batches("L", stamp)]
    assert drf_calls == [], [s for s, _, _ in lean]  # none of them went through DRF
    assert [status for status, _, _ in lean] == [202] * 4
    assert lean[0][1] == {"accepted": 2, "duplicates": 0, "rejected": []}
    assert lean[1][1] == {"accepted": 1, "duplicates": 2, "rejected": []}
    assert lean[0][2] == {"Content-Type": "application/json", "Allow": "GET, POST, HEAD, OPTIONS", "Vary": "Accept"}

    drf_only(monkeypatch)
    drf = [answer(key_client(keys[who]).post(URL, json.dumps({"events": events}), content_type="application/json"))
           for who, events in batches("D", stamp)]
    assert len(drf_calls) == 4
    assert lean == drf

    def stored(prefix):
        receipts = sorted((r.tenant.slug, r.transaction_id[1:], r.code) for r in
                          EventReceipt.objects.filter(transaction_id__startswith=prefix).select_related("tenant"))
        rejections = sorted((r.tenant.slug if r.tenant else "", r.index, r.transaction_id[1:], r.error,
                             r.payload.replace(f'"{prefix}', '"')) for r in
                            EventRejection.objects.filter(transaction_id__startswith=prefix).select_related("tenant"))
        return receipts, rejections

    assert stored("L") == stored("D")
    assert len(stored("L")[0]) == 6
    reset_event_sink()  # the spooled events into the table


def test_the_lake_holds_what_the_lean_path_accepted_once(world, keys, events_lake, drf_calls):
    sender = key_client(keys["acme"])
    for _ in range(2):
        assert sender.post(URL, json.dumps({"events": [event("k-1"), event("k-2")]}),
                           content_type="application/json", HTTP_ACCEPT="application/json").status_code == 202
    assert drf_calls == []
    reset_event_sink()
    assert sorted((r["tenant_id"], r["transaction_id"]) for r in events_lake.rows()) == [("acme", "k-1"), ("acme", "k-2")]


NESTED_PROPERTY = {"data": json.dumps({"events": [{"transaction_id": "n", "code": "a", "timestamp": "2026-01-01T00:00:00Z",
                                                  "properties": {"deep": [[[1]]]}}]}),
                   "content_type": "application/json"}

EVENT_TOO_DEEP = {"data": json.dumps({"events": [{"p": json.loads("[" * 33 + "1" + "]" * 33)}]}),
                  "content_type": "application/json"}
THIRD_TOO_DEEP = {"data": json.dumps({"events": [event("ok"), "x", {"p": json.loads("[" * 31 + "]" * 31)}]}),
                  "content_type": "application/json"}
LEAN_TAKES = (NESTED_PROPERTY, EVENT_TOO_DEEP, THIRD_TOO_DEEP)


@pytest.mark.parametrize("request_kwargs", [
    {"data": "{not json", "content_type": "application/json"},
    {"data": json.dumps({"events": []}), "content_type": "application/json"},
    {"data": json.dumps({"events": {"a": 1}}), "content_type": "application/json"},
    {"data": json.dumps({"events": [{"transaction_id": "x"}], "more": 1}), "content_type": "application/json"},
    {"data": json.dumps([1, 2]), "content_type": "application/json"},
    {"data": "{" * 40 + "}" * 40, "content_type": "application/json"},
    EVENT_TOO_DEEP,
    NESTED_PROPERTY,
    THIRD_TOO_DEEP,
    {"data": b'{"events": [{"transaction_id": "\xff"}]}', "content_type": "application/json"},
    {"data": '{"events": [{"transaction_id": NaN}]}', "content_type": "application/json"},
    {"data": "", "content_type": "application/json"},
    {"data": {"events": "x"}, "format": "multipart"},
    {"data": json.dumps({"events": [event("h")]}), "content_type": "application/json", "HTTP_ACCEPT": "text/html"},
    {"data": json.dumps({"events": [event("i")]}), "content_type": "application/json; charset=latin-1"},
    {"path": URL + "?tenant=globex", "data": json.dumps({"events": [event("q")]}), "content_type": "application/json"},
    {"path": URL + "?format=csv", "data": json.dumps({"events": [event("f")]}), "content_type": "application/json"},
], ids=["malformed", "empty-list", "not-a-list", "other-keys", "not-an-object", "too-deep", "event-too-deep",
        "property-nested", "third-too-deep", "not-utf8", "nan", "no-body", "multipart", "html", "latin-1", "other-tenant", "csv"])
def test_what_the_lean_path_does_not_take_drf_answers_as_before(world, keys, drf_calls, monkeypatch, request_kwargs):
    kwargs = dict(request_kwargs)
    path = kwargs.pop("path", URL)
    first = key_client(keys["acme"]).post(path, **kwargs)
    # Nested properties are the events' rejections, and an event too deep the parser's 400: the lean path
    # answers both (it walks only the events that are not flat).
    assert drf_calls == ([] if request_kwargs in LEAN_TAKES else ["POST"])
    if first.status_code != 202:
        assert not EventReceipt.objects.exists() and not EventRejection.objects.exists()
    drf_only(monkeypatch)
    EventReceipt.objects.all().delete()
    EventRejection.objects.all().delete()
    second = key_client(keys["acme"]).post(path, **kwargs)
    assert first.status_code == second.status_code
    if kwargs.get("HTTP_ACCEPT") != "text/html":  # the browsable API's page holds a new CSRF token each time
        assert first.content == second.content


def test_refused_keys_and_other_callers_are_drfs(world, keys, drf_calls, settings):
    body = json.dumps({"events": [event("r-1")]})
    _, reader = api_key_create(tenant=world.tenants["acme"], name="reader", scopes=["usage:read"])
    refused = key_client(reader).post(URL, body, content_type="application/json")
    assert refused.status_code == 403 and "events:write" in refused.json()["detail"]
    revoked, raw = api_key_create(tenant=world.tenants["acme"], name="old", scopes=["events:write"])
    api_key_revoke(api_key=revoked)
    unknown = key_client(raw).post(URL, body, content_type="application/json")
    assert unknown.status_code == 401 and unknown["WWW-Authenticate"] == 'Bearer realm="api"'
    assert key_client("mk_notakey").post(URL, body, content_type="application/json").status_code == 401
    assert world.client("acme").post(URL, body, content_type="application/json").status_code == 202  # an ID token
    assert drf_calls == ["POST"] * 4

    settings.API_THROTTLE_RATE = "1/minute"
    sender = key_client(keys["acme"])
    assert sender.post(URL, json.dumps({"events": [event("r-2")]}), content_type="application/json").status_code == 202
    assert len(drf_calls) == 4  # the lean path, counted by the throttle
    throttled = sender.post(URL, json.dumps({"events": [event("r-3")]}), content_type="application/json")
    assert throttled.status_code == 429 and int(throttled["Retry-After"]) > 0
    assert len(drf_calls) == 5
    assert not EventReceipt.objects.filter(transaction_id="r-3").exists()


def test_when_the_sink_fails_the_lean_path_answers_drfs_503(world, keys, drf_calls, monkeypatch):
    from metering import event_spool

    def full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(event_spool, "_sync", full)
    body = json.dumps({"events": [event("s-1")]})
    lean = answer(key_client(keys["acme"]).post(URL, body, content_type="application/json"))
    assert drf_calls == []
    drf_only(monkeypatch)
    drf = answer(key_client(keys["acme"]).post(URL, body, content_type="application/json"))
    assert lean == drf
    assert lean[0] == 503 and lean[2]["Retry-After"] == "30"
    assert not EventReceipt.objects.exists()


def test_a_request_left_to_drf_counts_once_against_the_throttle(world, keys, drf_calls, settings):
    settings.API_THROTTLE_RATE = "2/minute"
    sender = key_client(keys["acme"])
    assert sender.post(URL, "{not json", content_type="application/json").status_code == 400  # DRF's: counted
    assert sender.post(URL, json.dumps({"events": [event("c-1")]}), content_type="application/json").status_code == 202
    assert drf_calls == ["POST"]
    assert sender.post(URL, json.dumps({"events": [event("c-2")]}), content_type="application/json").status_code == 429
