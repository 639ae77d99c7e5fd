"""Throttling per token (API_THROTTLE_RATE): 429 with Retry-After, and one token's burst leaves others alone."""

import pytest
from django.core.cache import cache

from metering.tests.api_fixtures import *  # noqa: F403

pytestmark = pytest.mark.django_db


@pytest.fixture
def low_rate(settings):
    settings.API_THROTTLE_RATE = "3/minute"
    cache.clear()
    yield
    cache.clear()


def test_429_with_retry_after_per_token(world, low_rate):
    acme = world.client("acme")
    assert [acme.get("/api/v1/metrics/").status_code for _ in range(3)] == [200, 200, 200]
    refused = acme.get("/api/v1/usage/")
    assert refused.status_code == 429
    assert 0 < int(refused["Retry-After"]) <= 60
    assert "throttled" in refused.json()["detail"].lower()
    # A new token of the same user shares the budget (keyed on the token's sub), another tenant's does not.
    assert world.client("globex").get("/api/v1/metrics/").status_code == 200


def test_staff_are_throttled_per_user(world, staff_client, low_rate):
    codes = [staff_client.get("/api/v1/admin/metrics/").status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
