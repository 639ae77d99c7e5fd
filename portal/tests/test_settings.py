"""Settings come from the environment: production refuses what is unsafe; URLs switch backends.

Production is tried the way an operator meets it: a subprocess (`manage.py check --deploy`, a probe
script) with the environment it would have; the test process itself runs in development.
"""

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


# A key as `get_random_secret_key()` makes them (fixed, so a failure reproduces).
GOOD_KEY = "k2#v9@q!x7$w^m1&z8*r3(t5)y0_u4-i6=o+p" + "aSdFgHjKlZxCv"
# A correct production environment: real database, broker, result backend, cache and email.
PRODUCTION_ENV = {
    "PORTAL_ENV": "production",
    "DJANGO_SECRET_KEY": GOOD_KEY,
    "DJANGO_ALLOWED_HOSTS": "portal.example.com",
    "DATABASE_URL": "postgres://portal@db.example:5432/portal",
    "CELERY_BROKER_URL": "redis://cache.example:6379/0",
    "CELERY_RESULT_BACKEND": "redis://cache.example:6379/1",
    "CACHE_URL": "redis://cache.example:6379/2",
    "EMAIL_URL": "smtp://billing:secret@mail.example:587",
}


def _env(tmp_path, **env_vars):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DJANGO_", "DATABASE_", "CELERY_", "PORTAL_", "CACHE_URL", "EMAIL_URL"))}
    env.update({"DJANGO_SETTINGS_MODULE": "portal.settings", "PORTAL_VAR_DIR": str(tmp_path), **env_vars})
    return env


def _run(tmp_path, **env_vars):
    return subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=_env(tmp_path, **env_vars),
                          capture_output=True, text=True, timeout=60)


def _manage(tmp_path, *args, **env_vars):
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=_env(tmp_path, **env_vars),
                          capture_output=True, text=True, timeout=120)


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
    result = _run(tmp_path, **PRODUCTION_ENV)
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


def test_check_deploy_with_a_correct_production_environment_prints_no_warning(tmp_path):
    result = _manage(tmp_path, "check", "--deploy", **PRODUCTION_ENV)
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout, result.stdout + result.stderr
    assert "WARNING" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("changes", "refusal"),
    [
        ({"DJANGO_SECRET_KEY": "insecure-embedded-default-key-do-not-use-in-production"},
         "DJANGO_SECRET_KEY is the development default, which is public"),
        ({"DJANGO_SECRET_KEY": GOOD_KEY[:49]}, "DJANGO_SECRET_KEY is 49 characters long; production needs at least 50"),
        ({"DJANGO_SECRET_KEY": "s" * 50}, "DJANGO_SECRET_KEY does not look random"),
        ({"DJANGO_SECRET_KEY": "django-insecure-" + GOOD_KEY}, "DJANGO_SECRET_KEY does not look random"),
        ({"DJANGO_DEBUG": "true"}, "DJANGO_DEBUG=true shows stack traces"),
        ({"DJANGO_ALLOWED_HOSTS": "*"}, "DJANGO_ALLOWED_HOSTS=* accepts any Host header"),
        ({"DJANGO_ALLOWED_HOSTS": "portal.example.com,*"}, "DJANGO_ALLOWED_HOSTS=* accepts any Host header"),
    ],
)
def test_production_refuses_unsafe_settings(tmp_path, changes, refusal):
    result = _manage(tmp_path, "check", "--deploy", **{**PRODUCTION_ENV, **changes})
    assert result.returncode != 0
    assert "PORTAL_ENV=production refuses to start:" in result.stderr
    assert refusal in result.stderr


def test_production_lists_every_problem_at_once(tmp_path):
    result = _manage(tmp_path, "check", PORTAL_ENV="production", DJANGO_DEBUG="true", DJANGO_ALLOWED_HOSTS="*")
    assert result.returncode != 0
    for problem in ("needs DJANGO_SECRET_KEY", "DJANGO_ALLOWED_HOSTS=*", "DJANGO_DEBUG=true", "DATABASE_URL=postgres://",
                    "CELERY_BROKER_URL=redis://", "CELERY_RESULT_BACKEND=redis://", "CACHE_URL=redis://",
                    "EMAIL_URL=smtp://"):
        assert problem in result.stderr, problem


@pytest.mark.parametrize(
    ("variable", "named"),
    [
        ("DATABASE_URL", "database: SQLite"),
        ("CELERY_BROKER_URL", "task broker: files"),
        ("CELERY_RESULT_BACKEND", "task results: SQLite"),
        ("CACHE_URL", "the signup rate limit counts per process"),
        ("EMAIL_URL", "email: printed or kept locally, never sent"),
    ],
)
def test_production_refuses_each_embedded_part_and_names_its_fix(tmp_path, variable, named):
    env = {k: v for k, v in PRODUCTION_ENV.items() if k != variable}
    result = _manage(tmp_path, "check", **env)
    assert result.returncode != 0
    assert "the portal would run on embedded parts meant for one laptop:" in result.stderr
    assert named in result.stderr and f"set {variable}=" in result.stderr
    assert "PORTAL_ALLOW_EMBEDDED=true" in result.stderr
    others = [v for v in ("DATABASE_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "CACHE_URL", "EMAIL_URL")
              if v != variable]
    assert not any(f"set {other}=" in result.stderr for other in others)


def test_production_on_embedded_parts_only_when_allowed_and_then_says_so(tmp_path):
    allowed = _manage(tmp_path, "check", PORTAL_ENV="production", DJANGO_SECRET_KEY=GOOD_KEY,
                      DJANGO_ALLOWED_HOSTS="portal.example.com", PORTAL_ALLOW_EMBEDDED="true")
    assert allowed.returncode == 0, allowed.stderr
    output = allowed.stdout + allowed.stderr
    assert "(portal.W001) Production is running on embedded parts" in output
    assert "database: SQLite" in output and "email: printed or kept locally" in output
    # The unsafe settings stay refused: the switch allows the embedded parts, nothing else.
    unsafe = _manage(tmp_path, "check", PORTAL_ENV="production", DJANGO_SECRET_KEY="short",
                     DJANGO_ALLOWED_HOSTS="portal.example.com", PORTAL_ALLOW_EMBEDDED="true")
    assert unsafe.returncode != 0 and "DJANGO_SECRET_KEY is 5 characters long" in unsafe.stderr


def test_development_is_not_refused_and_has_no_embedded_warning(tmp_path):
    result = _manage(tmp_path, "check")
    assert result.returncode == 0, result.stderr
    assert "portal.W001" not in result.stdout + result.stderr


def test_the_transport_security_settings_can_be_turned_off_and_check_deploy_then_says_so(tmp_path):
    result = _manage(tmp_path, "check", "--deploy", **PRODUCTION_ENV, DJANGO_SECURE_SSL_REDIRECT="false",
                     DJANGO_SECURE_HSTS_SECONDS="0", DJANGO_SECURE_COOKIES="false")
    assert result.returncode == 0, result.stderr
    for warning in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert warning in result.stderr, warning


HTTP_PROBE = """
import json, django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from django.test import Client
client = Client()
plain = client.get("/tenant/", HTTP_HOST="portal.example.com")
health = client.get("/healthz", HTTP_HOST="portal.example.com")
proxied = client.get("/account/login/", HTTP_HOST="portal.example.com", HTTP_X_FORWARDED_PROTO="https")
print(json.dumps({
    "plain": [plain.status_code, plain.get("Location")],
    "health": health.status_code,
    "proxied": [proxied.status_code, proxied.get("Strict-Transport-Security")],
    "cookie_secure": bool(proxied.cookies["csrftoken"]["secure"]),
}))
"""


def test_production_over_http_redirects_to_https_except_the_health_check(tmp_path):
    # SQLite here (allowed explicitly) so the pages answer without a database server.
    env = _env(tmp_path, PORTAL_ENV="production", DJANGO_SECRET_KEY=GOOD_KEY, DJANGO_ALLOWED_HOSTS="portal.example.com",
               PORTAL_ALLOW_EMBEDDED="true")
    result = subprocess.run([sys.executable, "-c", HTTP_PROBE], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["plain"] == [301, "https://portal.example.com/tenant/"]
    assert seen["health"] == 200
    assert seen["proxied"] == [200, "max-age=31536000; includeSubDomains; preload"]
    assert seen["cookie_secure"] is True


WEBHOOKS_PROBE = (
    "import json, django; from django.conf import settings; django.setup(); "
    "print(json.dumps(settings.WEBHOOKS_ALLOW_PRIVATE))"
)


def test_webhooks_refuse_private_addresses_in_production_by_default(tmp_path):
    """Production refuses private receivers unless told otherwise; development (make demo) allows them."""

    def allow_private(**env_vars):
        result = subprocess.run([sys.executable, "-c", WEBHOOKS_PROBE], cwd=ROOT, env=_env(tmp_path, **env_vars),
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    assert allow_private(**PRODUCTION_ENV) is False
    assert allow_private(**PRODUCTION_ENV, WEBHOOKS_ALLOW_PRIVATE="true") is True
    assert allow_private() is True
    refused = _run(tmp_path, WEBHOOKS_LEASE_SECONDS="5")  # shorter than the timeouts: refused at start
    assert refused.returncode != 0 and "WEBHOOKS_LEASE_SECONDS" in refused.stderr
