"""Portal test fixtures: the dashboard's usage cache is off unless a test turns it on (ids repeat across tests)."""

import pytest


@pytest.fixture(autouse=True)
def no_dashboard_cache(settings):
    settings.DASHBOARD_CACHE_SECONDS = 0
