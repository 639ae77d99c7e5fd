"""What production refuses: unsafe settings and the embedded parts, each named with its fix.

Pure functions of setting values, called by settings.py (which refuses to start on any problem) and by
the `portal.W001` system check (the embedded parts a production run was explicitly allowed to use).
"""

from __future__ import annotations

# The development default of settings.py: public, so it signs nothing in production.
DEVELOPMENT_SECRET_KEY = "insecure-embedded-default-key-do-not-use-in-production"
SECRET_KEY_MIN_LENGTH = 50  # Django's own deploy check (security.W009) asks for 50 characters ...
SECRET_KEY_MIN_UNIQUE = 5  # ... with at least 5 different ones, and not its "django-insecure-" prefix.
GENERATE_KEY = (
    "python -c 'from django.core.management.utils import get_random_secret_key; print(get_random_secret_key())'"
)

_EMBEDDED_BROKERS = ("filesystem://", "memory://")
_EMBEDDED_RESULT_BACKENDS = ("db+sqlite", "file://", "cache+memory")
_EMBEDDED_CACHES = ("django.core.cache.backends.locmem.", "django.core.cache.backends.dummy.")
_EMBEDDED_EMAIL = (
    "django.core.mail.backends.console.",
    "django.core.mail.backends.locmem.",
    "django.core.mail.backends.dummy.",
    "django.core.mail.backends.filebased.",
)


def unsafe_settings(*, secret_key: str, allowed_hosts: list[str], debug: bool) -> list[str]:
    """Problems that production never runs with (empty when there are none), each saying how to fix it."""
    problems = []
    if not secret_key:
        problems.append(
            f"PORTAL_ENV=production needs DJANGO_SECRET_KEY: at least {SECRET_KEY_MIN_LENGTH} random characters "
            f"(generate one with {GENERATE_KEY})"
        )
    elif secret_key == DEVELOPMENT_SECRET_KEY:
        problems.append(
            f"DJANGO_SECRET_KEY is the development default, which is public: set a key of your own ({GENERATE_KEY})"
        )
    elif len(secret_key) < SECRET_KEY_MIN_LENGTH:
        problems.append(
            f"DJANGO_SECRET_KEY is {len(secret_key)} characters long; production needs at least "
            f"{SECRET_KEY_MIN_LENGTH} random characters ({GENERATE_KEY})"
        )
    elif len(set(secret_key)) < SECRET_KEY_MIN_UNIQUE or secret_key.startswith("django-insecure-"):
        problems.append(
            "DJANGO_SECRET_KEY does not look random (fewer than 5 different characters, or Django's "
            f"'django-insecure-' prefix): generate one with {GENERATE_KEY}"
        )
    if not allowed_hosts:
        problems.append(
            "PORTAL_ENV=production needs DJANGO_ALLOWED_HOSTS: the portal's host names, comma-separated "
            "(portal.example.com)"
        )
    elif "*" in allowed_hosts:
        problems.append(
            "DJANGO_ALLOWED_HOSTS=* accepts any Host header, so a forged one would make the links the portal "
            "sends by email point elsewhere: list the portal's host names (portal.example.com)"
        )
    if debug:
        problems.append(
            "DJANGO_DEBUG=true shows stack traces and settings to anyone who meets an error: remove it "
            "(production runs with debug off)"
        )
    return problems


def embedded_parts(
    *, database_engine: str, broker_url: str, result_backend: str, cache_backend: str, email_backend: str
) -> list[str]:
    """The embedded (single-machine, development) parts in use, each with the variable that replaces it."""
    parts = []
    if database_engine.endswith("sqlite3"):
        parts.append("database: SQLite under PORTAL_VAR_DIR (set DATABASE_URL=postgres://user:pass@host:5432/db)")
    if broker_url.startswith(_EMBEDDED_BROKERS):
        parts.append("task broker: files under PORTAL_VAR_DIR (set CELERY_BROKER_URL=redis://host:6379/0)")
    if result_backend.startswith(_EMBEDDED_RESULT_BACKENDS):
        parts.append("task results: SQLite under PORTAL_VAR_DIR (set CELERY_RESULT_BACKEND=redis://host:6379/1)")
    if cache_backend.startswith(_EMBEDDED_CACHES):
        parts.append(
            "cache: each process's own memory, so the signup rate limit counts per process "
            "(set CACHE_URL=redis://host:6379/2)"
        )
    if email_backend.startswith(_EMBEDDED_EMAIL):
        parts.append(
            "email: printed or kept locally, never sent, so invoices and signup codes reach nobody "
            "(set EMAIL_URL=smtp://user:pass@host:587)"
        )
    return parts


def refusal_message(problems: list[str], embedded: list[str]) -> str:
    """One message listing everything to fix, so an operator fixes it in one go."""
    lines = ["PORTAL_ENV=production refuses to start:"]
    lines += [f"- {problem}" for problem in problems]
    if embedded:
        lines.append("- the portal would run on embedded parts meant for one laptop:")
        lines += [f"    {part}" for part in embedded]
        lines.append("  set those variables, or PORTAL_ALLOW_EMBEDDED=true to run on the embedded parts anyway")
    return "\n".join(lines)
