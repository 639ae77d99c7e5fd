"""What a Celery worker process does once it is up (portal.celery): the real workers of test_billing_workers and
test_beat run it too."""

import gc
import sys

from portal.celery import settle_worker


def test_a_worker_once_up_has_its_urls_loaded_and_its_start_up_heap_frozen():
    try:
        settle_worker(sender=None)
        assert gc.get_freeze_count() > 0
        assert "portal.urls" in sys.modules
    finally:
        gc.unfreeze()
