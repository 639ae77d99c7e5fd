"""The local event sink's spool (metering.event_spool): a request writes and fsyncs its events and never appends
to the Iceberg table; the background appender puts them in the table with no further request; a process killed
with its events spooled loses none (the usage sync appends them); a process that exits normally (a gunicorn
worker stopped gracefully, a shell) appends its own before its interpreter stops."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.utils import timezone

from metering.event_sink import events_spool_dir, reset_event_sink
from metering.lake import LakeError, get_lake
from metering.models import EventReceipt
from metering.tests.api_fixtures import *  # noqa: F403
from metering.tests.processes import ROOT, portal_env, start_paused
from tenants.services.api_keys import api_key_create
from tenants.tests.factories import TenantFactory

URL = "/api/v1/events/"



def event(tid: str) -> dict:
    stamp = (timezone.now() - timedelta(minutes=5)).isoformat().replace("+00:00", "Z")
    return {"transaction_id": tid, "code": "llm.completion", "timestamp": stamp, "properties": {"tokens": 3}}


def post(client, events):
    return client.post(URL, json.dumps({"events": events}), content_type="application/json")


def table_ids(table) -> list[str]:
    """The transaction ids in the events table, sorted ([] while it was never written)."""
    try:
        return sorted(r["transaction_id"] for r in table.rows())
    except LakeError:
        return []


def segments() -> list[str]:
    """What is left in the spool besides its lock file."""
    folder = events_spool_dir()
    return sorted(p.name for p in folder.iterdir() if p.name != "append.lock") if folder.is_dir() else []


def spooled_ids() -> list[str]:
    return sorted(json.loads(line)["transaction_id"] for name in segments()
                  for line in (events_spool_dir() / name).read_text().splitlines() if line.strip())


def test_a_request_only_spools_and_the_appender_fills_the_table_with_no_further_request(world, events_lake,
                                                                                          settings):
    settings.EVENTS_APPEND_SECONDS = 0.5
    reset_event_sink()
    client = world.client("acme")
    assert post(client, [event("t-1"), event("t-2")]).json()["accepted"] == 2
    assert post(client, [event("t-3")]).json()["accepted"] == 1
    deadline = time.monotonic() + 15  # a tick (0.5 s), the append after it, and slack for a loaded machine
    while table_ids(events_lake) != ["t-1", "t-2", "t-3"]:
        assert time.monotonic() < deadline, f"not appended in time: table {table_ids(events_lake)}, spool {segments()}"
        time.sleep(0.1)
    assert segments() == []  # appended segments are deleted
    assert len(events_lake.table().metadata.snapshots) == 1  # both requests' events in one commit


def test_the_request_never_appends_to_the_table(world, events_lake, settings):
    settings.EVENTS_APPEND_SECONDS = 3600
    reset_event_sink()
    client = world.client("acme")
    for i in range(3):
        assert post(client, [event(f"t-{i}")]).status_code == 202
    assert table_ids(events_lake) == []  # the table is not even made by a request
    assert spooled_ids() == ["t-0", "t-1", "t-2"]  # fsynced in this process's segment
    assert [name.split(".")[0] for name in segments()] == [str(os.getpid())]
    reset_event_sink()  # what a normal exit does
    assert table_ids(events_lake) == ["t-0", "t-1", "t-2"] and segments() == []


@pytest.mark.slow
def test_a_killed_process_spool_is_appended_by_the_usage_sync(transactional_db, events_lake, tmp_path, settings):
    """send_events accepts and spools three events, then is killed (-9) before it appends them; the next usage
    sync (here the command) appends them before it reads, once."""
    TenantFactory(slug="acme")
    source = tmp_path / "events.jsonl"
    source.write_text("".join(json.dumps(event(f"k-{i}")) + "\n" for i in range(3)))
    env = portal_env(LAKE_WAREHOUSE_DIR=settings.LAKE_WAREHOUSE_DIR, EVENTS_BACKEND="local",
                     EVENTS_APPEND_SECONDS="3600")
    proc = start_paused("send_events", str(source), "--tenant", "acme", pause_at="metering.event_sink.reset_event_sink",
                        call=1, flag=tmp_path / "paused", env=env)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert EventReceipt.objects.count() == 3  # accepted: their receipts committed
    assert spooled_ids() == ["k-0", "k-1", "k-2"] and table_ids(events_lake) == []
    get_lake().ensure_table()  # the access-log table exists, as on any portal with traffic
    call_command("sync_usage", stdout=StringIO())
    assert table_ids(events_lake) == ["k-0", "k-1", "k-2"]
    assert segments() == []
    call_command("sync_usage", stdout=StringIO())  # safe to run twice: nothing appended again
    assert table_ids(events_lake) == ["k-0", "k-1", "k-2"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_a_gunicorn_worker_stopped_gracefully_appends_its_events_as_it_exits(transactional_db, events_lake,
                                                                             tmp_path, settings):
    _, raw_key = api_key_create(tenant=TenantFactory(slug="acme"), name="exit", scopes=["events:write"])
    port = _free_port()
    env = portal_env(LAKE_WAREHOUSE_DIR=settings.LAKE_WAREHOUSE_DIR, EVENTS_BACKEND="local",
                     EVENTS_APPEND_SECONDS="3600", DJANGO_DEBUG="false", LOG_LEVEL="WARNING")
    log = tmp_path / "gunicorn.log"
    server = subprocess.Popen([sys.executable, "-m", "gunicorn", "portal.wsgi:application", "--bind",
                               f"127.0.0.1:{port}", "--workers", "1", "--log-level", "warning"],
                              cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    try:
        answers = []
        deadline = time.monotonic() + 60
        for batch in (["g-1", "g-2"], ["g-3"]):
            while True:
                try:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                    conn.request("POST", URL, body=json.dumps({"events": [event(t) for t in batch]}),
                                 headers={"Authorization": f"Bearer {raw_key}", "Content-Type": "application/json"})
                    response = conn.getresponse()
                    answers.append((response.status, json.loads(response.read())["accepted"]))
                    break
                except ConnectionError:
                    assert server.poll() is None and time.monotonic() < deadline, log.read_text()
                    time.sleep(0.2)
        assert answers == [(202, 2), (202, 1)]
        assert spooled_ids() == ["g-1", "g-2", "g-3"] and table_ids(events_lake) == []
    finally:
        server.send_signal(signal.SIGTERM)  # graceful: the worker finishes and exits normally
        server.wait(timeout=60)
    assert "cannot schedule new futures" not in log.read_text()
    assert table_ids(events_lake) == ["g-1", "g-2", "g-3"], log.read_text()
    assert segments() == []


@pytest.mark.slow
def test_a_process_that_exits_normally_appends_its_events(transactional_db, events_lake, settings):
    """A shell (or any command) that ingests and exits without flushing: the exit appends (no atexit failure)."""
    TenantFactory(slug="acme")
    env = portal_env(LAKE_WAREHOUSE_DIR=settings.LAKE_WAREHOUSE_DIR, EVENTS_BACKEND="local",
                     EVENTS_APPEND_SECONDS="3600")
    script = ("from django.utils import timezone\n"
              "from metering.services.events import events_ingest\n"
              "from tenants.models import Tenant\n"
              "acme = Tenant.objects.get(slug='acme')\n"
              f"events = {[event('x-1'), event('x-2')]!r}\n"
              "print(events_ingest(tenant_for=lambda slug: acme, events=events, received_at=timezone.now()).accepted)\n")
    done = subprocess.run([sys.executable, "manage.py", "shell", "-c", script], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.split()[-1] == "2", done.stderr
    assert "cannot schedule new futures" not in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert table_ids(events_lake) == ["x-1", "x-2"]
    assert segments() == []


def test_a_torn_line_of_a_failed_write_is_skipped_and_the_rest_appended(world, events_lake, settings):
    """A write that failed half way (its request got a 503, nothing accepted) and could not be truncated leaves a
    torn last line: the appender skips it and appends the whole lines."""
    settings.EVENTS_APPEND_SECONDS = 3600
    reset_event_sink()
    assert post(world.client("acme"), [event("w-1")]).json()["accepted"] == 1
    (name,) = segments()
    with (events_spool_dir() / name).open("a") as fh:
        fh.write('{"transaction_id": "torn", "tenant_id": "ac')
    reset_event_sink()
    assert table_ids(events_lake) == ["w-1"] and segments() == []


def test_segments_of_the_earlier_single_file_spool_are_appended_once_their_process_is_gone(events_lake):
    """<pid>.jsonl is what the buffered sink before segments left: appended when that pid is not running."""
    folder = events_spool_dir()
    folder.mkdir(parents=True, exist_ok=True)
    record = {"transaction_id": "old-1", "tenant_id": "acme", "code": "llm.completion",
              "timestamp": "2026-11-30T10:00:00.000000Z", "properties": "{}", "received_at": "2026-11-30T10:00:01.000000Z"}
    Path(folder / "999999999.jsonl").write_text(json.dumps(record) + "\n")
    from metering.event_sink import recover_event_spools

    assert recover_event_spools() == 1
    assert table_ids(events_lake) == ["old-1"] and segments() == []


def test_old_snapshots_are_expired_and_every_event_stays(world, events_lake, settings, monkeypatch):
    """Each append is a commit, and a commit copies every snapshot's metadata: the appender keeps the newest
    KEEP_SNAPSHOTS (here 2) once there are twice as many, and no event goes."""
    from metering import event_spool
    from metering.event_sink import recover_event_spools

    monkeypatch.setattr(event_spool, "KEEP_SNAPSHOTS", 2)
    settings.EVENTS_APPEND_SECONDS = 3600
    reset_event_sink()
    client = world.client("acme")
    for i in range(7):
        assert post(client, [event(f"s-{i}")]).json()["accepted"] == 1
        assert recover_event_spools() == 1  # one commit each
        assert len(events_lake.table().metadata.snapshots) <= 4
    assert table_ids(events_lake) == [f"s-{i}" for i in range(7)]
