"""Writes on events: ``events_ingest`` (validation, exactly-once receipts, hand-over to the lake) and
``event_rejections_prune``.

An event is ``{"transaction_id", "code", "timestamp", "properties"?, "tenant"?}`` and nothing else:
- ``transaction_id``: a string of 1 to 255 characters, the client's id of the event;
- ``code``: what happened, ``[a-z0-9][a-z0-9._-]{0,99}`` (e.g. ``llm.completion``);
- ``timestamp``: ISO 8601 with a timezone (``Z`` or an offset), at most EVENTS_MAX_PAST_DAYS days in
  the past and EVENTS_MAX_FUTURE_DAYS days in the future;
- ``properties`` (optional, default ``{}``): a flat object whose keys are 1 to 100 characters and whose
  values are strings, numbers or booleans (no null, no object, no list);
- ``tenant`` (optional): the tenant's slug; only staff may name a tenant other than their own (a tenant
  caller naming another one gets that event rejected, without saying whether the tenant exists);
- the whole event, as compact JSON, at most EVENTS_MAX_EVENT_BYTES bytes.

Exactly once: the receipts are inserted with ``INSERT ... ON CONFLICT (tenant, transaction_id) DO NOTHING
RETURNING``, so of two concurrent requests carrying the same (tenant, transaction_id) the database lets
exactly one insert it (the other waits for that transaction, then finds the conflict), and only the
events this request inserted are accepted and handed to the lake; the rest are duplicates, as is a
second occurrence in one batch. The hand-over to the lake is the transaction's last step, so a receipt
is committed only for an event the sink has taken (metering.event_sink says why that is safe).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from json.encoder import encode_basestring as _json_string
from typing import NamedTuple

import psycopg
from django.conf import settings
from django.db import connection, transaction

from metering.event_sink import EventRow, get_event_sink
from metering.lake.events import iso_utc, properties_json
from metering.models import EventReceipt, EventRejection
from metering.models.events import PAYLOAD_KEPT_CHARS

CODE_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]{0,99}")
_ISO_UTC = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z")  # what iso_utc writes
EVENT_KEYS = frozenset({"transaction_id", "code", "timestamp", "properties", "tenant"})
MAX_TRANSACTION_ID = 255
MAX_PROPERTY_NAME = 100
INSERT_CHUNK = 500
_COMPACT_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)  # an event's size; made once
# The fast path's size bound: {} and, for each of the five keys, its quotes, colon, comma and 2 quotes of a value.
_EVENT_KEYS_BYTES = 2 + sum(len(key) + 6 for key in ("transaction_id", "code", "timestamp", "properties", "tenant"))
_INT_BOUND = 10 ** 18  # an integer property the fast path takes: at most 19 digits and a sign
_NO_PROPERTIES = object()
_tuple = tuple.__new__  # a named tuple made from a tuple: no Python-level __new__ per event
_codes_seen: set[str] = set()  # codes that matched CODE_PATTERN (the fast path's cache; cleared when full)
_CODES_SEEN_MAX = 10_000


class EventRefused(Exception):
    """One event refused, with the reason shown to the client (``tenant_for`` raises it too)."""


@dataclass
class IngestResult:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[dict] = field(default_factory=list)  # [{"index": i, "error": "..."}], in index order

    def as_dict(self) -> dict:
        return {"accepted": self.accepted, "duplicates": self.duplicates, "rejected": self.rejected}


class _Valid(NamedTuple):
    """An event that passed validation (a tuple: one is made per event)."""

    tenant: object
    transaction_id: str
    code: str
    timestamp: datetime
    properties: dict
    timestamp_utc: str  # iso_utc(timestamp): what the lake and the receipts' insert are given


def events_ingest(*, tenant_for: Callable[[str | None], object], events: Sequence, received_at: datetime,
                  indexes: Sequence[int] | None = None, screen: Callable[[object], None] | None = None) -> IngestResult:
    """Validate ``events``, accept each new (tenant, transaction_id) exactly once, hand the accepted ones to
    the lake, record the rejections. ``tenant_for(slug_or_None)`` returns the event's tenant or raises
    EventRefused; ``indexes`` are the positions reported for the events (default 0, 1, ...). ``screen``, when
    given, is called with each event the fast path (``_ordinary``, which takes only flat objects: scalars, and
    scalars in ``properties``) does not take, before it is judged: what it raises stops the call before
    anything is stored (EventsView's lean path checks the depth of those events only).

    Raises EventDeliveryError (nothing accepted, nothing recorded) when the sink cannot take the events."""
    indexes = list(indexes) if indexes is not None else list(range(len(events)))
    result = IngestResult()
    valid: list[_Valid] = []
    rejections: list[EventRejection] = []
    window = _Window.around(received_at)
    max_bytes = settings.EVENTS_MAX_EVENT_BYTES
    for index, event in zip(indexes, events, strict=True):
        try:
            judged = _ordinary(event, tenant_for=tenant_for, window=window, max_bytes=max_bytes)
            if judged is None:
                if screen is not None:
                    screen(event)
                judged = _validated(event, tenant_for=tenant_for, window=window)
            valid.append(judged)
        except EventRefused as refused:
            error = str(refused)
            result.rejected.append({"index": index, "error": error})
            rejections.append(_rejection(event, index=index, error=error, tenant_for=tenant_for,
                                         received_at=received_at))
    # A transaction id twice in one batch: the first one counts, the others are duplicates. (A batch's events
    # share one tenant object or a few: its pk is read once per run of events of the same tenant.)
    unique: dict[tuple[int, str], _Valid] = {}
    tenant = tenant_pk = None
    for event in valid:
        if event.tenant is not tenant:
            tenant = event.tenant
            tenant_pk = tenant.pk
        key = (tenant_pk, event.transaction_id)
        if key not in unique:
            unique[key] = event
    with transaction.atomic():
        inserted = _insert_receipts(unique, received_at=received_at)
        accepted = [event for key, event in unique.items() if key in inserted]
        if rejections:
            EventRejection.objects.bulk_create(rejections)
        # Last: the receipts commit only if the sink took the events (it raises otherwise).
        received = iso_utc(received_at)
        get_event_sink().put_events([
            _tuple(EventRow, (e.transaction_id, e.tenant.slug, e.code, e.timestamp_utc, properties_json(e.properties)))
            for e in accepted], received_at=received)
    result.accepted = len(accepted)
    result.duplicates = len(valid) - len(accepted)
    return result


def _insert_receipts(events: dict[tuple[int, str], _Valid], *, received_at: datetime) -> set[tuple[int, str]]:
    """Insert the receipts of ``events`` ((tenant id, transaction id) -> event) that are new; returns the
    (tenant id, transaction id) pairs this call inserted."""
    if not events:
        return set()
    table = connection.ops.quote_name(EventReceipt._meta.db_table)
    columns = "tenant_id, transaction_id, code, timestamp, received_at"
    conflict = "ON CONFLICT (tenant_id, transaction_id) DO NOTHING RETURNING tenant_id, transaction_id"
    if connection.vendor == "postgresql":
        # One statement whatever the batch size, its rows in one JSON parameter: psycopg renders one string
        # (rendering arrays, or 5 parameters per event, was the largest cost of the insert). Its text is written
        # directly, as json.dumps(..., ensure_ascii=False) would: tenant ids are ints, codes and timestamps need
        # no escaping (CODE_PATTERN, iso_utc), transaction ids are escaped by the function json's encoder uses.
        rows = "[" + ",".join([f'{{"t":{pk},"x":{_json_string(x)},"c":"{e.code}","s":"{e.timestamp_utc}"}}'
                               for (pk, x), e in events.items()]) + "]"
        connection.ensure_connection()
        # Django's cursor wrapper (its errors, the query log) around a cursor that prepares the statement.
        with connection._prepare_cursor(_PreparedCursor(connection.connection)) as cursor:
            cursor.execute(
                f"INSERT INTO {table} ({columns}) SELECT e.t, e.x, e.c, e.s, %s "
                f"FROM json_to_recordset(%s::json) AS e(t bigint, x text, c text, s timestamptz) {conflict}",
                [received_at, rows])
            return set(cursor.fetchall())
    inserted: set[tuple[int, str]] = set()
    with connection.cursor() as cursor:
        adapt = connection.ops.adapt_datetimefield_value
        items = list(events.items())
        for start in range(0, len(items), INSERT_CHUNK):
            chunk = items[start:start + INSERT_CHUNK]
            params: list = []
            for (pk, transaction_id), e in chunk:
                params += [pk, transaction_id, e.code, adapt(e.timestamp), adapt(received_at)]
            values = ", ".join(["(%s, %s, %s, %s, %s)"] * len(chunk))
            cursor.execute(f"INSERT INTO {table} ({columns}) VALUES {values} {conflict}", params)
            inserted.update(cursor.fetchall())
    return inserted


class _PreparedCursor(psycopg.Cursor):
    """A psycopg cursor with server-side binding whose statements are prepared: the receipts' insert, the same
    text for every batch, is parsed and planned once per connection instead of once a request."""

    def execute(self, query, params=None, *, prepare=None, binary=None):
        return super().execute(query, params, prepare=True, binary=binary)


@dataclass(frozen=True, slots=True)
class _Window:
    """The timestamps a batch accepts (EVENTS_MAX_PAST_DAYS / EVENTS_MAX_FUTURE_DAYS around its arrival)."""

    past: int
    future: int
    earliest: datetime
    latest: datetime

    @classmethod
    def around(cls, now: datetime) -> _Window:
        past, future = settings.EVENTS_MAX_PAST_DAYS, settings.EVENTS_MAX_FUTURE_DAYS
        return cls(past=past, future=future, earliest=now - timedelta(days=past), latest=now + timedelta(days=future))


def _ordinary(event, *, tenant_for, window: _Window, max_bytes: int) -> _Valid | None:
    """The _Valid of an ordinary event, judged with less work than ``_validated``; None for anything out of
    the ordinary (a non-ASCII string, an unusual type, a timestamp to look at twice, a possibly large event),
    which ``_validated`` then judges with its exact messages. It accepts only what ``_validated`` accepts:
    ASCII strings hold no lone surrogate; and instead of encoding the event to measure it, it adds up a
    bound of its compact JSON (each ASCII character at most 6 bytes, \\u00XX; each key with its quotes,
    colon and comma), so an event under the bound is under EVENTS_MAX_EVENT_BYTES."""
    if type(event) is not dict or not EVENT_KEYS.issuperset(event):
        return None
    transaction_id = event.get("transaction_id")
    code = event.get("code")
    value = event.get("timestamp")
    if type(transaction_id) is not str or type(code) is not str or type(value) is not str:
        return None
    if (not 0 < len(transaction_id) <= MAX_TRANSACTION_ID or not transaction_id.isascii()
            or "\x00" in transaction_id or not value.isascii()):
        return None
    if code not in _codes_seen:
        if not CODE_PATTERN.fullmatch(code):
            return None
        if len(_codes_seen) >= _CODES_SEEN_MAX:
            _codes_seen.clear()
        _codes_seen.add(code)
    try:
        timestamp = datetime.fromisoformat(value)
    except ValueError:
        return None
    if (timestamp.tzinfo is None or ("T" not in value and "t" not in value)
            or not window.earliest <= timestamp <= window.latest):
        return None
    size = _EVENT_KEYS_BYTES + 6 * (len(transaction_id) + len(code) + len(value))
    properties = event.get("properties", _NO_PROPERTIES)
    if properties is not _NO_PROPERTIES:
        if type(properties) is not dict:
            return None
        size += 2
        for name, item in properties.items():
            if type(name) is not str or not 0 < len(name) <= MAX_PROPERTY_NAME or not name.isascii():
                return None
            kind = type(item)
            if kind is str:
                if not item.isascii():
                    return None
                size += 6 * (len(name) + len(item)) + 8
            elif kind is bool:
                size += 6 * len(name) + 10
            elif kind is int:
                if not -_INT_BOUND < item < _INT_BOUND:
                    return None
                size += 6 * len(name) + 26
            elif kind is float:
                if not math.isfinite(item):
                    return None
                size += 6 * len(name) + 30  # a float's repr: at most 24 characters
            else:
                return None
    else:
        properties = {}
    tenant_name = event.get("tenant")
    if tenant_name is not None:
        if type(tenant_name) is not str or not tenant_name.isascii():
            return None
        size += 6 * len(tenant_name)
    if size > max_bytes:
        return None
    # A timestamp sent as iso_utc writes it (UTC, microseconds, Z) is its own formatting: fromisoformat took it,
    # so its digits are the parsed fields.
    formatted = value if len(value) == 27 and _ISO_UTC.fullmatch(value) else iso_utc(timestamp)
    return _tuple(_Valid, (tenant_for(tenant_name), transaction_id, code, timestamp, properties, formatted))


def _validated(event, *, tenant_for, window: _Window) -> _Valid:
    if not isinstance(event, dict):
        raise EventRefused("an event must be a JSON object")
    try:
        size = len(_COMPACT_JSON.encode(event).encode())
    except UnicodeEncodeError:
        raise EventRefused("the event holds text that is not valid Unicode (a lone surrogate)") from None
    if not EVENT_KEYS.issuperset(event):
        unknown = sorted(set(event) - EVENT_KEYS)
        raise EventRefused(f"unknown field(s) {', '.join(map(repr, unknown))}; an event has transaction_id, "
                           f"code, timestamp, properties and (staff only) tenant")
    transaction_id = event.get("transaction_id")
    if transaction_id is None:
        raise EventRefused("transaction_id is missing")
    if not isinstance(transaction_id, str) or not transaction_id:
        raise EventRefused("transaction_id must be a non-empty string")
    if len(transaction_id) > MAX_TRANSACTION_ID:
        raise EventRefused(f"transaction_id is too long ({len(transaction_id)} characters; at most {MAX_TRANSACTION_ID})")
    if "\x00" in transaction_id:
        raise EventRefused("transaction_id must not contain a NUL character")
    code = event.get("code")
    if code is None:
        raise EventRefused("code is missing")
    if not isinstance(code, str) or not CODE_PATTERN.fullmatch(code):
        raise EventRefused("code must be 1 to 100 characters of a-z, 0-9, '.', '_' or '-', starting with a letter "
                           "or digit (e.g. llm.completion)")
    timestamp = _timestamp(event.get("timestamp"), window=window)
    properties = event.get("properties", {})
    _check_properties(properties)
    if size > settings.EVENTS_MAX_EVENT_BYTES:
        raise EventRefused(f"the event is too large ({size} bytes of JSON; at most {settings.EVENTS_MAX_EVENT_BYTES})")
    tenant_name = event.get("tenant")
    if tenant_name is not None and not isinstance(tenant_name, str):
        raise EventRefused("tenant must be a tenant's slug (a string)")
    tenant = tenant_for(tenant_name)
    return _Valid(tenant, transaction_id, code, timestamp, properties, iso_utc(timestamp))


def _timestamp(value, *, window: _Window) -> datetime:
    if value is None:
        raise EventRefused("timestamp is missing")
    if not isinstance(value, str):
        raise EventRefused("timestamp must be an ISO 8601 string with a timezone, e.g. 2026-09-03T10:00:00Z")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise EventRefused(f"timestamp {value[:40]!r} is not ISO 8601 (e.g. 2026-09-03T10:00:00Z)") from None
    if parsed.tzinfo is None or ("T" not in value and "t" not in value):
        raise EventRefused(f"timestamp {value[:40]!r} needs a date, a time and a timezone (Z or an offset such as +02:00)")
    if parsed < window.earliest:
        raise EventRefused(f"timestamp {value} is more than {window.past} days in the past (EVENTS_MAX_PAST_DAYS)")
    if parsed > window.latest:
        raise EventRefused(f"timestamp {value} is more than {window.future} days in the future (EVENTS_MAX_FUTURE_DAYS)")
    return parsed


def _check_properties(properties) -> None:
    if not isinstance(properties, dict):
        raise EventRefused("properties must be an object of strings, numbers and booleans")
    for name, value in properties.items():
        if not name or len(name) > MAX_PROPERTY_NAME:
            raise EventRefused(f"property names must be 1 to {MAX_PROPERTY_NAME} characters")
        kind = type(value)
        if kind is str or kind is int or kind is bool:  # the common case, without the checks below
            continue
        if value is None:
            raise EventRefused(f"property {name[:100]!r} is null: leave it out instead")
        if isinstance(value, dict | list):
            raise EventRefused(f"property {name[:100]!r} is nested: properties must be a flat object of strings, "
                               f"numbers and booleans")
        if not isinstance(value, str | int | float | bool):
            raise EventRefused(f"property {name[:100]!r} must be a string, a number or a boolean")
        if isinstance(value, float) and not math.isfinite(value):
            raise EventRefused(f"property {name[:100]!r} must be a finite number")


def _rejection(event, *, index: int, error: str, tenant_for, received_at: datetime) -> EventRejection:
    tenant = None
    transaction_id = ""
    name = event.get("tenant") if isinstance(event, dict) else None
    # The event's tenant, else the caller's own (a tenant naming another one sees its rejection), else none.
    for asked in ((name if isinstance(name, str) else None), None):
        try:
            tenant = tenant_for(asked)
            break
        except EventRefused:
            continue
    if isinstance(event, dict) and isinstance(event.get("transaction_id"), str):
        transaction_id = _storable(event["transaction_id"])[:MAX_TRANSACTION_ID]
    try:
        payload = json.dumps(event, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError):
        payload = repr(event)
    return EventRejection(tenant=tenant, index=index, transaction_id=transaction_id, error=_storable(error),
                          payload=_storable(payload[:PAYLOAD_KEPT_CHARS]), received_at=received_at)


def _storable(text: str) -> str:
    """``text`` as any database stores it: no NUL, no lone surrogate (what a client sent is shown, not trusted)."""
    return text.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")


def event_rejections_prune(*, now: datetime, keep_days: int | None = None) -> int:
    """Delete the rejections older than EVENTS_REJECTIONS_KEEP_DAYS days; returns how many (safe to run twice)."""
    days = settings.EVENTS_REJECTIONS_KEEP_DAYS if keep_days is None else keep_days
    deleted, _ = EventRejection.objects.filter(received_at__lt=now - timedelta(days=days)).delete()
    return deleted
