"""Schemathesis against the live API with a tenant token: no server error, no response outside the schema.

Runs the `st` CLI in a subprocess against pytest-django's live server (seeded with two tenants), with a
bounded number of examples per operation and a time budget, so it fits in CI (about a minute).
"""

import subprocess
import sys
from pathlib import Path

import pytest

from metering.tests.api_fixtures import *  # noqa: F403

pytestmark = pytest.mark.slow

ST = Path(sys.executable).with_name("st")


def test_schemathesis_finds_no_server_error_and_no_schema_violation(live_server, transactional_db, world, settings,
                                                                    tmp_path):
    settings.API_THROTTLE_RATE = "100000/minute"  # the fuzzer's volume is not what is under test here
    token = world.tokens["acme"]
    command = [
        str(ST), "run", f"{live_server.url}/api/schema/",
        "--header", f"Authorization: Bearer {token}",
        "--checks", "not_a_server_error,response_schema_conformance",
        "--max-examples", "15",
        "--max-time", "60",
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
