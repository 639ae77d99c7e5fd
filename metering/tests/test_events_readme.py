"""The README's "Sending events" examples work as a provider copies them: its curl line and its Python
(`requests`) snippet, run as written against a live portal with a key from ``manage.py api_key_create``,
each get their event accepted, today (the examples must not carry a date that ages out of the window)."""

from __future__ import annotations

import contextlib
import io
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from django.core.management import call_command

from metering.models import EventReceipt
from tenants.tests.factories import TenantFactory

README = Path(__file__).resolve().parents[2] / "README.md"
PLACEHOLDERS = {
    "sh": 'PORTAL=http://127.0.0.1:8000 KEY=mk_...',
    "python": 'PORTAL, KEY = "http://127.0.0.1:8000", "mk_..."',
}


def example(language: str) -> str:
    """The first ``language`` block of the README's "Sending events" section."""
    section = README.read_text().split("\n## Sending events\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(rf"```{language}\n(.*?)\n```", section, re.S)
    assert block, f"no {language} example under Sending events"
    assert PLACEHOLDERS[language] in block.group(1), "the example names the portal and the key on a line of its own"
    return block.group(1)


@pytest.fixture
def portal_and_key(live_server, events_lake, transactional_db):
    TenantFactory(slug="acme")
    out = io.StringIO()
    call_command("api_key_create", "--tenant", "acme", "--name", "readme", "--scope", "events:write", stdout=out)
    return live_server.url, out.getvalue().strip().splitlines()[-1]


def test_the_python_example_sends_an_event_that_is_accepted(portal_and_key):
    portal, key = portal_and_key
    code = example("python").replace(PLACEHOLDERS["python"], f"PORTAL, KEY = {portal!r}, {key!r}")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, "README.md (Sending events, Python)", "exec"), {})  # noqa: S102 (our own README)
    assert printed.getvalue().strip() == "{'accepted': 1, 'duplicates': 0, 'rejected': []}"
    receipt = EventReceipt.objects.get()
    assert receipt.tenant.slug == "acme" and receipt.code == "llm.completion"


def test_the_curl_example_sends_an_event_that_is_accepted(portal_and_key):
    if shutil.which("curl") is None:
        pytest.skip("needs curl (CI installs it)")
    portal, key = portal_and_key
    script = example("sh").replace(PLACEHOLDERS["sh"], f"PORTAL={portal} KEY={key}")
    done = subprocess.run(["bash", "-c", script + " -sS --fail-with-body"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr + done.stdout
    assert '"accepted":1' in done.stdout and '"rejected":[]' in done.stdout
    # Sent again unchanged, as the README says to after a timeout: a duplicate, never counted twice.
    again = subprocess.run(["bash", "-c", script + " -sS"], capture_output=True, text=True, timeout=60)
    assert '"accepted":0,"duplicates":1' in again.stdout
    assert EventReceipt.objects.count() == 1
