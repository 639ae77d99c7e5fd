"""manage.py send_events: a JSON Lines or CSV file through the same validation and exactly-once receipts,
with a summary that names the rejected lines; a second run accepts nothing new; the events reach the table once."""

from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from metering.event_sink import reset_event_sink
from metering.lake.events import LocalEventsTable
from metering.models import EventReceipt
from tenants.tests.factories import TenantFactory


@pytest.fixture
def table(settings, tmp_path):
    settings.LAKE_WAREHOUSE_DIR = str(tmp_path / "lake")
    settings.EVENTS_BACKEND = "local"
    reset_event_sink()
    yield LocalEventsTable.from_settings()
    reset_event_sink()


def ts(minutes=5) -> str:
    return (timezone.now() - timedelta(minutes=minutes)).isoformat()


def run(*args) -> str:
    out = StringIO()
    call_command("send_events", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def test_jsonl_file_is_sent_once(db, table, tmp_path, settings):
    settings.EVENTS_MAX_BATCH = 2  # several batches
    TenantFactory(slug="acme")
    TenantFactory(slug="globex")
    lines = [
        json.dumps({"transaction_id": "j1", "code": "llm.completion", "timestamp": ts(), "properties": {"tokens": 3}}),
        json.dumps({"transaction_id": "j2", "code": "llm.completion", "timestamp": ts(), "tenant": "globex"}),
        "",
        "{not json",
        json.dumps({"transaction_id": "j3", "code": "BAD", "timestamp": ts()}),
        json.dumps({"transaction_id": "j1", "code": "llm.completion", "timestamp": ts()}),  # a duplicate
        json.dumps({"transaction_id": "j4", "code": "seats", "timestamp": ts(), "properties": {"seats": 12}}),
    ]
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(lines) + "\n")
    out = run(str(path), "--tenant", "acme")
    assert out.splitlines()[0] == "accepted 3, duplicates 1, rejected 2"
    assert "line 4: not JSON" in out and "line 5: code must be" in out
    rows = sorted((r["tenant_id"], r["transaction_id"]) for r in table.rows())
    assert rows == [("acme", "j1"), ("acme", "j4"), ("globex", "j2")]
    again = run(str(path), "--tenant", "acme")
    assert again.splitlines()[0] == "accepted 0, duplicates 4, rejected 2"
    assert len(table.rows()) == 3
    assert EventReceipt.objects.count() == 3


def test_csv_with_property_columns(db, table, tmp_path):
    TenantFactory(slug="acme")
    path = tmp_path / "events.csv"
    path.write_text(
        "transaction_id,code,timestamp,properties.tokens,properties.model,properties.cached\n"
        f"c1,llm.completion,{ts()},1200,large,false\n"
        f"c2,llm.completion,{ts()},,small,\n"
        f"c3,llm.completion,yesterday,1,x,true\n")
    out = run(str(path), "--tenant", "acme")
    assert out.splitlines()[0] == "accepted 2, duplicates 0, rejected 1"
    assert "line 4: timestamp 'yesterday' is not ISO 8601" in out
    rows = {r["transaction_id"]: r for r in table.rows()}
    assert json.loads(rows["c1"]["properties"]) == {"cached": False, "model": "large", "tokens": 1200}
    assert json.loads(rows["c2"]["properties"]) == {"model": "small"}


def test_events_without_a_tenant_need_one(db, table, tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text(json.dumps({"transaction_id": "x", "code": "a", "timestamp": ts()}) + "\n")
    assert "line 1: the event names no tenant" in run(str(path))
    with pytest.raises(CommandError, match="no tenant 'nope'"):
        run(str(path), "--tenant", "nope")


def test_an_unreadable_file_fails(db, table, tmp_path):
    with pytest.raises(CommandError, match="cannot read"):
        run(str(tmp_path / "missing.jsonl"))
    binary = tmp_path / "binary.jsonl"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(CommandError, match="cannot read"):
        run(str(binary))
