"""The Celery app: configured from Django settings (CELERY_*), tasks found in every app."""

import gc
import os

from celery import Celery
from celery.signals import worker_process_init, worker_ready

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

app = Celery("portal")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_ready.connect
@worker_process_init.connect
def settle_worker(**_kwargs) -> None:
    """Once a worker process is up (the main one, which runs the tasks with the solo and threads pools, or a
    prefork child): load the URL configuration now, not in the first task that needs an address (an invoice's
    email: half a second of imports), then move what start-up allocated, which lives as long as the process,
    out of the collector's reach (gc.freeze): its full collections then traverse only what the tasks allocate."""
    from django.urls import get_resolver

    get_resolver().url_patterns  # noqa: B018 - imports the URL modules
    gc.collect()
    gc.freeze()
