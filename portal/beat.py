"""The beat scheduler: django-celery-beat's DatabaseScheduler (the schedule lives in the admin), with every
enabled periodic task run each BEAT_EVERY_SECONDS seconds instead of on its own schedule when that setting is
set, so that a test or a demo can watch beat do its work without waiting for the clock."""

from datetime import timedelta

from celery import schedules
from django.conf import settings
from django_celery_beat.schedulers import DatabaseScheduler, ModelEntry


class Entry(ModelEntry):
    def __init__(self, model, app=None):
        super().__init__(model, app=app)
        if settings.BEAT_EVERY_SECONDS > 0:
            self.schedule = schedules.schedule(timedelta(seconds=settings.BEAT_EVERY_SECONDS), app=self.app)


class Scheduler(DatabaseScheduler):
    Entry = Entry

    def install_default_entries(self, data):
        if settings.BEAT_EVERY_SECONDS > 0:
            return  # Celery's nightly result cleanup is none of the portal's schedules: not every few seconds
        super().install_default_entries(data)

    def enabled_models_qs(self):
        if settings.BEAT_EVERY_SECONDS > 0:
            # The parent leaves out crontabs whose hour is far from now; shortened, every task is due soon.
            return self.Model.objects.enabled()
        return super().enabled_models_qs()
