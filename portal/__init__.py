"""The portal's Django project; the Celery app is loaded with it so shared_task binds to it."""

from portal.celery import app as celery_app

__all__ = ["celery_app"]
