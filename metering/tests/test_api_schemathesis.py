"""Schemathesis against the live API with a tenant token: no server error, no response outside the schema.

Runs the `st` CLI in a subprocess against pytest-django's live server (seeded with two tenants), with a
bounded number of examples per operation and a time budget, so it fits in CI (about a minute for JSON,
less for each other `Accept`). JSON responses must also match the schema; asked for CSV or HTML (a
browser), every endpoint answers in it or says 406, and never fails.
"""

import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from metering.tests.api_fixtures import *  # noqa: F403

pytestmark = pytest.mark.slow

ST = Path(sys.executable).with_name("st")


ACCEPT_VARIATIONS = {
    # Accept header: (checks, examples per operation, time budget in seconds)
    "application/json": ("not_a_server_error,response_schema_conformance", "15", "60"),
    "text/csv": ("not_a_server_error,content_type_conformance", "5", "30"),
    "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8": ("not_a_server_error", "5", "30"),
}


@pytest.mark.parametrize("accept", list(ACCEPT_VARIATIONS), ids=["json", "csv", "browser"])
def test_schemathesis_finds_no_server_error_and_no_schema_violation(live_server, transactional_db, world, settings,
                                                                    tmp_path, accept):
    settings.API_THROTTLE_RATE = "100000/minute"  # the fuzzer's volume is not what is under test here
    token = world.tokens["acme"]
    checks, examples, budget = ACCEPT_VARIATIONS[accept]
    # The schema is read once as JSON (the Accept under test would ask the schema view for CSV too).
    schema = tmp_path / "schema.json"
    request = urllib.request.Request(f"{live_server.url}/api/schema/?format=json", headers={"Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as answer:
        schema.write_bytes(answer.read())
    command = [
        str(ST), "run", str(schema), "--url", live_server.url,
        "--header", f"Authorization: Bearer {token}",
        "--header", f"Accept: {accept}",
        "--checks", checks,
        "--max-examples", examples,
        "--max-time", budget,
        # Staff endpoints only answer a tenant token 403 (test_api_security checks that on every one of them).
        "--exclude-path-regex", "^/api/v1/admin/",
        "--workers", "1",  # the live server shares the test database
        "--seed", "7",
        "--generation-database", "none",
        "--request-timeout", "20",
        "--no-color",
        "--report", "junit", "--report-dir", str(tmp_path),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=180, cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-8000:]
    assert "No issues found" in output or "passed" in output.lower(), output[-4000:]
