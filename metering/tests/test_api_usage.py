"""The usage endpoints: buckets by granularity, divisors, filters, parameter errors, current totals."""

from datetime import UTC, datetime

import pytest

from metering.tests.api_fixtures import *  # noqa: F403
from metering.tests.api_fixtures import add_hourly

pytestmark = pytest.mark.django_db


def test_daily_usage_of_a_month(world):
    response = world.client("acme").get(
        "/api/v1/usage/", {"metric": "api_calls", "start": "2026-10-01", "end": "2026-11-01", "granularity": "day"}
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["count"] == 31
    first = body["results"][0]
    assert first == {"metric": "api_calls", "unit": "", "start": "2026-10-01T00:00:00Z", "value": "240"}
    assert body["results"][-1]["start"] == "2026-10-31T00:00:00Z"


def test_hourly_and_monthly_buckets_and_the_divisor(world):
    client = world.client("acme")
    hourly = client.get("/api/v1/usage/", {"metric": "data_out_mb", "start": "2026-10-01T00:00:00Z",
                                           "end": "2026-10-01T03:00:00Z", "granularity": "hour"}).json()
    # 1,500,000 bytes an hour at a divisor of 1,000,000 bytes per MB: a decimal string, never a float.
    assert [(r["start"], r["value"], r["unit"]) for r in hourly["results"]] == [
        ("2026-10-01T00:00:00Z", "1.5", "MB"), ("2026-10-01T01:00:00Z", "1.5", "MB"), ("2026-10-01T02:00:00Z", "1.5", "MB"),
    ]
    monthly = client.get("/api/v1/usage/", {"start": "2026-10-01", "end": "2026-12-01", "granularity": "month"}).json()
    assert {(r["metric"], r["start"], r["value"]) for r in monthly["results"]} == {
        ("api_calls", "2026-10-01T00:00:00Z", "7440"), ("data_out_mb", "2026-10-01T00:00:00Z", "36"),
    }


def test_offsets_are_converted_to_utc(world):
    body = world.client("acme").get("/api/v1/usage/", {
        "metric": "api_calls", "granularity": "hour", "start": "2026-10-01T02:00:00+02:00", "end": "2026-10-01T01:00:00Z",
    }).json()
    assert [r["start"] for r in body["results"]] == ["2026-10-01T00:00:00Z"]


def test_only_the_callers_usage(world):
    body = world.client("globex").get("/api/v1/usage/", {"metric": "api_calls", "start": "2026-10-01",
                                                         "end": "2026-10-02"}).json()
    assert [r["value"] for r in body["results"]] == ["168"]  # 24 × 7, globex's own


def test_pagination(world):
    body = world.client("acme").get("/api/v1/usage/", {"metric": "api_calls", "granularity": "hour",
                                                       "start": "2026-10-01", "end": "2026-11-01"}).json()
    assert body["count"] == 744 and len(body["results"]) == 50 and "page=2" in body["next"]


@pytest.mark.parametrize(("params", "field", "words"), [
    ({"start": "2026-10-02", "end": "2026-10-01"}, "end", "must be after start"),
    ({"granularity": "week"}, "granularity", "not a valid choice"),
    ({"metric": "nope"}, "metric", "Unknown metric(s): nope"),
    ({"metric": "api_calls,nope2"}, "metric", "nope2"),
    ({"start": "2020-01-01", "end": "2026-01-01"}, "end", "the limit is 400 days"),
    ({"start": "yesterday"}, "start", "format"),
    ({"start": "0001-01-01T00:00:00+05:00"}, "start", "out of range"),
    ({"end": "9999-12-31T23:00:00-05:00"}, "end", "out of"),
])
def test_bad_parameters_are_400_with_a_message(world, params, field, words):
    response = world.client("acme").get("/api/v1/usage/", params)
    assert response.status_code == 400
    assert words in " ".join(response.json()[field])


def test_range_limit_is_a_setting(world, settings):
    settings.API_MAX_RANGE_DAYS = 7
    response = world.client("acme").get("/api/v1/usage/", {"start": "2026-10-01", "end": "2026-10-09"})
    assert response.status_code == 400 and "the limit is 7 days" in response.json()["end"][0]


def test_current_period_totals(world):
    acme = world.tenants["acme"]
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    month_start = now.replace(day=1, hour=0)
    add_hourly(acme, "api_calls", month_start, 2, "5")
    body = world.client("acme").get("/api/v1/usage/current/").json()
    assert body["period_start"] == month_start.strftime("%Y-%m-%dT%H:%M:%SZ")
    totals = {t["metric"]: t["quantity"] for t in body["totals"]}
    assert totals == {"api_calls": "10", "data_out_mb": "0"}


def test_no_token_is_401(world):
    from rest_framework.test import APIClient

    response = APIClient().get("/api/v1/usage/")
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
