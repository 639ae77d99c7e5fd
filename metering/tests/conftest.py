"""Fixtures shared by the events tests."""

import pytest

from metering.event_sink import reset_event_sink
from metering.lake.events import LocalEventsTable


@pytest.fixture
def events_lake(settings, tmp_path):
    """A local events table in the test's own warehouse, the sink reset around the test."""
    settings.LAKE_WAREHOUSE_DIR = str(tmp_path / "lake")
    settings.EVENTS_BACKEND = "local"
    settings.API_THROTTLE_RATE = "100000/minute"
    reset_event_sink()
    yield LocalEventsTable.from_settings()
    reset_event_sink()
