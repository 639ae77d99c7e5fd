"""The WSGI entry point (what gunicorn loads) does a process's one-time work before it serves: the URLconf with every
view, and the local event appender's libraries, imported; what it loaded frozen out of the garbage collector's sight.
Without it a worker's first request paid 0.15 to 0.3 s of imports (the bench_events tail)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHECK = """
import gc, sys
import portal.wsgi
assert "metering.api.events" in sys.modules and "portal.urls" in sys.modules
assert "pyiceberg.io.pyarrow" in sys.modules and "pyarrow.json" in sys.modules
assert gc.get_freeze_count() > 50_000, gc.get_freeze_count()
print("ok")
"""


def test_the_wsgi_application_loads_urls_views_and_the_appender_before_serving(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "portal.settings", "PORTAL_VAR_DIR": str(tmp_path),
           "EVENTS_BACKEND": "local", "LAKE_WAREHOUSE_DIR": str(tmp_path / "lake")}
    done = subprocess.run([sys.executable, "-c", CHECK], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
