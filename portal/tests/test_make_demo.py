"""`make demo HOST=... PORT=...`: the address the demo serves on reaches every process it starts as
PORTAL_BASE_URL and METERED_API_BASE_URL (links in email, the tenant's curl line), unless the user set them.

The real Makefile runs with a stand-in Python that records what each command was given, so the test needs
no virtualenv and starts no server.
"""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FAKE_PYTHON = """#!/bin/sh
log="$(dirname "$0")/calls.log"
echo "${PORTAL_BASE_URL-unset}|${METERED_API_BASE_URL-unset}|$*" >> "$log"
# The server's end stops the demo (and the worker beside it): give the worker the time to be recorded.
if [ "$2" = runserver ]; then
  for _ in $(seq 50); do grep -q -- "-m celery" "$log" && break; sleep 0.1; done
fi
"""

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")


def make_demo(tmp_path: Path, *args: str, env_vars: dict | None = None, dotenv: str | None = None):
    """Run `make demo ARGS` on a copy of the Makefile; returns (stdout, [(base url, api url, command)])."""
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    (tmp_path / "requirements.txt").write_text("")
    os.utime(tmp_path / "requirements.txt", (0, 0))
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / ".installed").touch()  # up to date: nothing is installed
    python = venv / "bin" / "python"
    python.write_text(FAKE_PYTHON)
    python.chmod(0o755)
    if dotenv is not None:
        (tmp_path / ".env").write_text(dotenv)
    env = {k: v for k, v in os.environ.items() if k not in ("PORTAL_BASE_URL", "METERED_API_BASE_URL", "MAKEFLAGS")}
    env.update(env_vars or {})
    # The demo's recipe ends with `kill 0` (its process group): a session of its own keeps pytest out of it.
    done = subprocess.run(["make", "--no-print-directory", "demo", f"VENV={venv}", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60, start_new_session=True)
    calls = [tuple(line.split("|", 2)) for line in (venv / "bin" / "calls.log").read_text().splitlines()]
    # The worker and the server start side by side: their order varies.
    assert sorted(c[2].split()[1] for c in calls) == ["celery", "load_demo", "migrate", "runserver"], done.stderr
    return done.stdout, calls


def test_host_and_port_flow_into_the_portal_and_api_urls(tmp_path):
    out, calls = make_demo(tmp_path, "HOST=127.0.0.1", "PORT=8123")
    assert {(base, api) for base, api, _ in calls} == {("http://127.0.0.1:8123", "http://127.0.0.1:8123/demo-api")}
    assert any(command.endswith("runserver 127.0.0.1:8123") for _, _, command in calls)
    assert "Serving http://127.0.0.1:8123/" in out and "http://127.0.0.1:8123/tenant/" in out


def test_the_defaults_are_the_default_address(tmp_path):
    _, calls = make_demo(tmp_path)
    assert {(base, api) for base, api, _ in calls} == {("http://127.0.0.1:8000", "http://127.0.0.1:8000/demo-api")}


def test_urls_the_user_set_are_kept(tmp_path):
    _, calls = make_demo(tmp_path, "PORT=9000", env_vars={"PORTAL_BASE_URL": "https://portal.example.com"},
                         dotenv="# the deployed API\nexport METERED_API_BASE_URL=https://api.example.com/prod\n")
    # The environment's value passes through; the .env file's is left for the settings to read.
    assert {(base, api) for base, api, _ in calls} == {("https://portal.example.com", "unset")}
