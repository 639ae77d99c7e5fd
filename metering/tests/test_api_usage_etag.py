"""The usage API's ETag: a repeat answered 304 without reading usage until a sync changes the usage; the tag
depends on the tenant, the query and the format, and a failed sync leaves it as it was."""

from datetime import UTC, datetime, timedelta

import pytest

from metering.lake import LakeError
from metering.lake.local import LocalLake
from metering.services.sync import usage_sync
from metering.tests.api_fixtures import *  # noqa: F403
from metering.tests.api_fixtures import OCT

pytestmark = pytest.mark.django_db
QUERY = {"metric": "api_calls", "start": "2026-10-01", "end": "2026-11-01", "granularity": "day"}


@pytest.fixture
def lake(settings, tmp_path):
    settings.LAKE_BACKEND = "local"
    settings.LAKE_WAREHOUSE_DIR = str(tmp_path / "lake")
    settings.USAGE_SYNC_RETRY_DELAY = 0
    return LocalLake(warehouse=settings.LAKE_WAREHOUSE_DIR, database=settings.LAKE_DATABASE, table=settings.LAKE_TABLE)


def record(n: int, tenant: str, when: datetime) -> dict:
    return {"request_id": f"req-{n}", "ip": "198.51.100.7", "user": None, "request_time": when, "http_method": "GET",
            "resource_path": "/random/strings", "status": 200, "protocol": "HTTP/1.1", "response_length": 100,
            "tenant_id": tenant}


def test_a_repeat_is_304_until_a_sync_changes_the_usage(world, lake, django_assert_max_num_queries):
    lake.append([record(0, "acme", OCT + timedelta(hours=5))])
    usage_sync(start=OCT, end=OCT + timedelta(days=1), lake=lake)  # the cursor exists: the usage has a version
    client = world.client("acme")
    first = client.get("/api/v1/usage/", QUERY)
    assert first.status_code == 200
    etag = first["ETag"]
    assert etag.startswith('"') and first["Cache-Control"] == "private, no-cache"

    with django_assert_max_num_queries(4):  # the token's user and tenant, the usage's version: no usage read
        again = client.get("/api/v1/usage/", QUERY, HTTP_IF_NONE_MATCH=etag)
    assert again.status_code == 304 and again.content == b"" and again["ETag"] == etag
    # Any of several tags, and a weak one (as proxies may send it back), match too.
    assert client.get("/api/v1/usage/", QUERY, HTTP_IF_NONE_MATCH=f'"other", W/{etag}').status_code == 304

    # Another query, another format, another tenant: other answers, other tags.
    hourly = client.get("/api/v1/usage/", {**QUERY, "granularity": "hour"}, HTTP_IF_NONE_MATCH=etag)
    as_csv = client.get("/api/v1/usage/", {**QUERY, "format": "csv"}, HTTP_IF_NONE_MATCH=etag)
    globex = world.client("globex").get("/api/v1/usage/", QUERY, HTTP_IF_NONE_MATCH=etag)
    for response in (hourly, as_csv, globex):
        assert response.status_code == 200 and response["ETag"] != etag

    # A failed sync writes nothing: the copy stays good.
    lake.append([record(1, "acme", OCT + timedelta(hours=6))])
    broken = LocalLake(warehouse=lake.warehouse / "missing", database="nowhere", table="nothing")
    with pytest.raises(LakeError):
        usage_sync(start=OCT, end=OCT + timedelta(days=1), lake=broken, attempts=1)
    assert client.get("/api/v1/usage/", QUERY, HTTP_IF_NONE_MATCH=etag).status_code == 304

    # A sync that writes the day again: the copy is stale, the new answer has the new figure and a new tag.
    usage_sync(start=OCT, end=OCT + timedelta(days=1), lake=lake)
    changed = client.get("/api/v1/usage/", QUERY, HTTP_IF_NONE_MATCH=etag)
    assert changed.status_code == 200 and changed["ETag"] != etag
    assert changed.json()["results"][0] == {"metric": "api_calls", "unit": "", "start": "2026-10-01T00:00:00Z",
                                            "value": "2"}  # the lake's two calls replaced the day's hours
    assert client.get("/api/v1/usage/", QUERY, HTTP_IF_NONE_MATCH=changed["ETag"]).status_code == 304


def test_errors_carry_no_etag(world):
    bad = world.client("acme").get("/api/v1/usage/", {**QUERY, "granularity": "week"}, HTTP_IF_NONE_MATCH='"x"')
    assert bad.status_code == 400 and "ETag" not in bad


def test_the_tag_is_the_same_for_every_worker(world):
    """Made of the stored version and the request only: two processes (or a restart) give one tag."""
    client = world.client("acme")
    tags = {client.get("/api/v1/usage/", QUERY)["ETag"] for _ in range(2)}
    assert len(tags) == 1
    assert datetime.now(UTC)  # no clock in the tag: the same until the usage changes
