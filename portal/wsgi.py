"""WSGI entry point (gunicorn portal.wsgi)."""

import gc
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
application = get_wsgi_application()

from django.urls import get_resolver  # noqa: E402

from metering.event_sink import preload_appender  # noqa: E402  (after Django is set up)

# What a process's first request would otherwise do, 0.15 to 0.3 s of CPU while its client and the requests queued
# behind it wait: import the URLconf and every view (Django does it lazily), and the event appender's libraries.
get_resolver().url_patterns  # noqa: B018
preload_appender()
# The objects loaded so far (Django, the apps, the lake's libraries: some 220,000) live as long as the process:
# out of the collector's sight, a full collection walks only what requests made since, not all of them (a pause of
# tens of milliseconds in the middle of a request otherwise). They are never freed, as they would not be anyway.
gc.freeze()
