"""Settings come from the environment: production refuses to start without secrets; URLs switch backends."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROBE = (
    "import json, django; from django.conf import settings; django.setup(); "
    "print(json.dumps({'engine': settings.DATABASES['default']['ENGINE'], 'broker': settings.CELERY_BROKER_URL,"
    " 'debug': settings.DEBUG}))"
)


def _run(tmp_path, **env_vars):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_", "CELERY_", "PORTAL_"))}
    env.update({"DJANGO_SETTINGS_MODULE": "portal.settings", "PORTAL_VAR_DIR": str(tmp_path), **env_vars})
    return subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def test_embedded_default_needs_nothing(tmp_path):
    result = _run(tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"engine": "django.db.backends.sqlite3", "broker": "filesystem://", "debug": True}


def test_urls_switch_to_postgres_and_redis_with_no_code_change(tmp_path):
    result = _run(tmp_path, DATABASE_URL="postgres://u@db.example:5432/portal", CELERY_BROKER_URL="redis://cache:6379/0")
    assert result.returncode == 0, result.stderr
    probe = json.loads(result.stdout)
    assert probe["engine"] == "django.db.backends.postgresql" and probe["broker"] == "redis://cache:6379/0"


@pytest.mark.parametrize(
    "env_vars,missing",
    [({}, "DJANGO_SECRET_KEY"), ({"DJANGO_SECRET_KEY": "s" * 50}, "DJANGO_ALLOWED_HOSTS")],
)
def test_production_refuses_to_start_without_secrets(tmp_path, env_vars, missing):
    result = _run(tmp_path, PORTAL_ENV="production", **env_vars)
    assert result.returncode != 0
    assert f"PORTAL_ENV=production needs {missing}" in result.stderr


def test_production_starts_with_secrets(tmp_path):
    result = _run(tmp_path, PORTAL_ENV="production", DJANGO_SECRET_KEY="s" * 50, DJANGO_ALLOWED_HOSTS="portal.example.com")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["debug"] is False


def test_every_setting_read_from_the_environment_is_in_the_readme():
    """The README's configuration table lists every variable settings.py reads."""
    import re

    source = (ROOT / "portal" / "settings.py").read_text()
    names = set(re.findall(r'env(?:\.\w+)?\(\s*"([A-Z][A-Z0-9_]+)"', source))
    readme = (ROOT / "README.md").read_text()
    missing = sorted(name for name in names if f"`{name}`" not in readme)
    assert not missing, f"settings read but not in the README table: {missing}"
