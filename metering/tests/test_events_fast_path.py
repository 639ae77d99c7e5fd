"""The events' fast path (metering.services.events._ordinary, event_line, the receipts' JSON insert) says
what the exact path says: through HTTP, ordinary and unusual events side by side give the answers, the
receipts and the lake rows the reference code gives; and, function by function, on generated events,
the fast validation accepts only what ``_validated`` accepts, with the same result, and a spool line is
the JSON the spool wrote before."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from django.test import override_settings
from django.utils import timezone as django_timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from metering.event_sink import reset_event_sink
from metering.lake.events import (
    compact_json,
    event_line,
    event_record,
    iso_utc,
    properties_json,
)
from metering.lake.local import _naive_utc
from metering.models import EventReceipt
from metering.services import events as service
from metering.tests.api_fixtures import *  # noqa: F403

URL = "/api/v1/events/"


pytestmark = pytest.mark.usefixtures("events_lake")  # metering/tests/conftest.py


def at(delta: timedelta, offset: timedelta = timedelta(0), timespec: str = "microseconds") -> str:
    return (django_timezone.now() + delta).astimezone(timezone(offset)).isoformat(timespec=timespec)


def test_ordinary_and_unusual_events_are_answered_stored_and_received_as_the_exact_path_says(world, events_lake,
                                                                                                settings):
    settings.EVENTS_MAX_EVENT_BYTES = 1000
    base = {"code": "llm.completion", "timestamp": at(timedelta(minutes=-5)).replace("+00:00", "Z")}
    year, week, day = (django_timezone.now() - timedelta(days=1)).isocalendar()
    week_date = f"{year}-W{week:02d}-{day}T10:00:00.000000Z"
    padding = 1000 - len(json.dumps({"transaction_id": "edge", **base, "properties": {"p": ""}}, separators=(",", ":")))
    sent = [
        {"transaction_id": "plain", **base, "properties": {"tokens": 1200, "model": "large", "cached": True}},
        {"transaction_id": "offset", "code": "a", "timestamp": at(timedelta(hours=-1), timedelta(hours=2))},
        {"transaction_id": "millis", "code": "a", "timestamp": at(timedelta(hours=-2), timespec="milliseconds")},
        {"transaction_id": "lower-t", "code": "a", "timestamp": at(timedelta(hours=-3)).replace("T", "t")},
        {"transaction_id": "naïve-€", **base, "properties": {"qu\"ote": "back\\slash\n\u2028", "é": "ü"}},
        {"transaction_id": "numbers", **base, "properties": {"f": 1.5e300, "tiny": -2.2250738585072014e-308,
                                                            "big": 10 ** 30, "neg": -(10 ** 18), "zero": 0}},
        {"transaction_id": "edge", **base, "properties": {"p": "x" * padding}},  # exactly the limit: accepted
        {"transaction_id": "over", **base, "properties": {"p": "x" * (padding + 1)}},  # one byte over
        {"transaction_id": "control", **base, "properties": {"p": "\x01" * 40}},  # 6 bytes a character
        # 1,030 bytes, though 160 characters: the fast path's bound must count 6 bytes for each
        {"transaction_id": "control-over", **base, "properties": {"p": "\x01" * 160}},
        {"transaction_id": "week", "code": "a", "timestamp": week_date},  # 27 characters, not iso_utc's
        {"transaction_id": "old", "code": "a", "timestamp": at(timedelta(days=-40)).replace("+00:00", "Z")},
        {"transaction_id": "plain", **base},  # a duplicate in the batch
        {"transaction_id": "empty-props", **base, "properties": {}},
    ]
    answer = world.client("acme").post(URL, json.dumps({"events": sent}), content_type="application/json")
    assert answer.status_code == 202, answer.content
    body = answer.json()
    assert [r["index"] for r in body["rejected"]] == [7, 9, 11]
    assert "too large (1001 bytes of JSON; at most 1000)" in body["rejected"][0]["error"]
    assert "too large" in body["rejected"][1]["error"]
    assert "days in the past" in body["rejected"][2]["error"]
    assert body["accepted"] == 10 and body["duplicates"] == 1

    accepted = [e for i, e in enumerate(sent) if i not in (7, 9, 11, 12)]
    receipts = {r.transaction_id: r for r in EventReceipt.objects.filter(tenant=world.tenants["acme"])}
    assert sorted(receipts) == sorted(e["transaction_id"] for e in accepted)
    reset_event_sink()  # appends the spool
    rows = {r["transaction_id"]: r for r in events_lake.rows()}
    for e in accepted:
        when = datetime.fromisoformat(e["timestamp"])
        assert receipts[e["transaction_id"]].timestamp == when
        expected = event_record(tenant_slug="acme", transaction_id=e["transaction_id"], code=e["code"],
                                timestamp=when, properties=e.get("properties", {}),
                                received_at=receipts[e["transaction_id"]].received_at)
        row = rows[e["transaction_id"]]
        assert row["properties"] == expected["properties"]
        assert row["timestamp"] == _naive_utc(expected["timestamp"])
        assert row["received_at"] == _naive_utc(expected["received_at"])


# --- function by function --------------------------------------------------------------------------

class _Tenant:
    pk = 7
    slug = "acme"


def _tenant_for(slug):
    if slug not in (None, "acme"):
        raise service.EventRefused("an event may only name the caller's own tenant")
    return _Tenant


_NOW = datetime(2026, 9, 3, 12, 0, tzinfo=UTC)
_WINDOW = service._Window.around(_NOW)
_text = st.text(alphabet=st.sampled_from(["a", "Z", "0", ".", "_", "-", " ", '"', "\\", "\n", "\x00", "\x1f", "é",
                                          "€", "\u2028", "\ud800", "😀"]), max_size=12)
_timestamps = st.one_of(
    st.datetimes(min_value=datetime(2026, 7, 1), max_value=datetime(2026, 9, 6), timezones=st.sampled_from(
        [UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5, minutes=-30))])).flatmap(
        lambda d: st.sampled_from([d.isoformat(), d.isoformat().replace("+00:00", "Z"),
                                   d.isoformat(timespec="milliseconds"), d.replace(tzinfo=None).isoformat(),
                                   d.isoformat().replace("T", "t"), d.isoformat().replace("T", " ")])),
    _text, st.integers(), st.none())
_values = st.one_of(_text, st.booleans(), st.integers(min_value=-(10 ** 20), max_value=10 ** 20),
                    st.floats(allow_nan=True, allow_infinity=True), st.none(), st.lists(st.integers(), max_size=2),
                    st.dictionaries(_text, st.integers(), max_size=2))
_long_text = st.text(alphabet=st.sampled_from(["a", '"', "\\", "\x01", "\n", "é"]), min_size=0, max_size=300)
_near_valid = st.fixed_dictionaries(  # valid but for the size, so that the fast path's bound is what decides
    {"transaction_id": st.one_of(st.just("t-1"), _long_text.filter(bool)), "code": st.just("llm.completion"),
     "timestamp": st.sampled_from(["2026-09-03T10:00:00.123456Z", "2026-09-03T12:00:00+02:00"])},
    optional={"properties": st.dictionaries(st.one_of(st.just("k"), _long_text.filter(bool)), st.one_of(
        _long_text, st.integers(min_value=-(10 ** 19), max_value=10 ** 19), st.floats(allow_nan=False),
        st.booleans()), max_size=4), "tenant": st.just("acme")})
_events = st.one_of(
    _near_valid,
    st.fixed_dictionaries(
        {"transaction_id": st.one_of(_text, st.text(alphabet="ab", min_size=250, max_size=260), st.integers()),
         "code": st.one_of(st.sampled_from(["llm.completion", "a", "storage.gb", "Bad", "", "a" * 101]), _text),
         "timestamp": _timestamps},
        optional={"properties": st.one_of(st.dictionaries(st.one_of(_text, st.just("p" * 101)), _values, max_size=5),
                                          _values),
                  "tenant": st.one_of(st.sampled_from(["acme", "globex"]), st.none(), st.integers()),
                  "extra": _values}),
    _values)


def _judged(judge, event):
    try:
        return judge(event)
    except service.EventRefused as refused:
        return ("refused", str(refused))


# The module's lake fixture is not needed here (nothing is written): its reuse across examples is harmless.
@hypothesis_settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(event=_events, max_bytes=st.one_of(st.just(8192), st.integers(min_value=60, max_value=2500)))
def test_the_fast_validation_accepts_only_what_the_exact_one_accepts_with_the_same_result(event, max_bytes):
    with override_settings(EVENTS_MAX_EVENT_BYTES=max_bytes):
        exact = _judged(lambda e: service._validated(e, tenant_for=_tenant_for, window=_WINDOW), event)
    fast = _judged(lambda e: service._ordinary(e, tenant_for=_tenant_for, window=_WINDOW, max_bytes=max_bytes), event)
    assert fast is None or fast == exact
    if not isinstance(exact, tuple) or exact[0] != "refused":
        assert exact.timestamp_utc == iso_utc(exact.timestamp)


def test_ordinary_events_take_the_fast_path():
    event = {"transaction_id": "t-1", "code": "llm.completion", "timestamp": "2026-09-03T10:00:00.123456Z",
             "properties": {"tokens": 1200, "model": "large", "cached": False, "ratio": 0.5}}
    valid = service._ordinary(event, tenant_for=_tenant_for, window=_WINDOW, max_bytes=8192)
    assert valid == service._validated(event, tenant_for=_tenant_for, window=_WINDOW)
    assert valid.timestamp_utc == "2026-09-03T10:00:00.123456Z"


@hypothesis_settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(transaction_id=_text.filter(lambda t: "\ud800" not in t), properties=st.dictionaries(
    _text.filter(lambda t: "\ud800" not in t), st.one_of(_text, st.integers(), st.floats(), st.booleans()),
    max_size=4), when=st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=9))])))
def test_a_spool_line_is_the_json_of_the_events_record(transaction_id, properties, when):
    record = event_record(tenant_slug="acme", transaction_id=transaction_id, code="a.b", timestamp=when,
                          properties=properties, received_at=when)
    line = event_line(transaction_id=transaction_id, tenant_slug="acme", code="a.b", timestamp=iso_utc(when),
                      properties=properties_json(properties), received_at=iso_utc(when))
    assert line == json.dumps(record, separators=(",", ":"), ensure_ascii=False)
    assert iso_utc(when) == _naive_utc(when).isoformat(timespec="microseconds") + "Z"
    for sort_keys in (False, True):
        for ensure_ascii in (False, True):
            assert compact_json(sort_keys=sort_keys, ensure_ascii=ensure_ascii)(record) == json.dumps(
                record, separators=(",", ":"), sort_keys=sort_keys, ensure_ascii=ensure_ascii)
