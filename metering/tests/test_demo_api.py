"""The metered demo API: the sample's GET /random/strings, its access log through the transform into the lake."""

import os
import string
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from django.contrib.auth import get_user_model
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.test import APIClient

from metering import sink as sink_module
from metering.lake.local import LocalLake
from metering.models import HourlyUsage
from metering.services.sync import usage_sync
from tenants.identity import tokens
from tenants.tests.factories import TenantFactory, import_sample_plans

URL = "/demo-api/random/strings"
PASSWORD = "Corr3ct-Horse-Battery!"


class HeaderAuthentication(BaseAuthentication):
    """Test only: `X-Test-User: <username>:<tenant slug>` authenticates as that (claims-shaped) user."""

    def authenticate(self, request):
        header = request.META.get("HTTP_X_TEST_USER")
        if not header:
            return None
        username, _, tenant = header.partition(":")
        if not username:
            raise exceptions.AuthenticationFailed("bad test header")
        user, _ = get_user_model().objects.get_or_create(username=username)
        return user, {"cognito:username": username, "custom:tenant_id": tenant}

    def authenticate_header(self, request):
        return "X-Test-User"


@pytest.fixture
def lake(settings, tmp_path):
    settings.LAKE_BACKEND = "local"
    settings.LAKE_WAREHOUSE_DIR = str(tmp_path / "lake")
    settings.LAKE_SINK_MAX_RECORDS = 1000
    settings.LAKE_SINK_MAX_SECONDS = 3600
    sink_module.reset_sink()
    yield LocalLake(warehouse=settings.LAKE_WAREHOUSE_DIR, database=settings.LAKE_DATABASE, table=settings.LAKE_TABLE)
    sink_module.reset_sink()


@pytest.fixture
def header_auth(settings):
    settings.METERED_API_AUTHENTICATION = ["metering.tests.test_demo_api.HeaderAuthentication"]


def rows(lake):
    sink_module.get_sink().flush()
    return lake.table().scan().to_arrow().to_pylist() if lake.data_files() else []


def test_random_strings_like_the_sample(db, lake, header_auth):
    client = APIClient()
    response = client.get(URL, {"chars": "digits", "len": "7", "num": "5"}, HTTP_X_TEST_USER="u-1:t-acme")
    assert response.status_code == 200
    values = response.json()
    assert len(values) == 5 and all(len(v) == 7 and set(v) <= set(string.digits) for v in values)
    clamped = client.get(URL, {"len": "99", "num": "0"}, HTTP_X_TEST_USER="u-1:t-acme").json()
    assert len(clamped) == 1 and len(clamped[0]) == 20 and set(clamped[0]) <= set(string.ascii_letters)
    assert client.get(URL, HTTP_X_TEST_USER="u-1:t-acme").json()[0].isalpha()
    assert client.get(URL, {"num": "x"}, HTTP_X_TEST_USER="u-1:t-acme").status_code == 400


def test_calls_are_logged_through_the_transform_into_the_lake(db, lake, header_auth):
    client = APIClient()
    client.get(URL, {"num": "3"}, HTTP_X_TEST_USER="u-1:t-acme", REMOTE_ADDR="198.51.100.7")
    unauthenticated = client.get(URL)
    assert unauthenticated.status_code == 401
    logged = sorted(rows(lake), key=lambda r: r["status"])
    assert [r["status"] for r in logged] == [200, 401]
    ok, refused = logged
    assert ok["tenant_id"] == "t-acme" and ok["user"] == "u-1" and ok["ip"] == "198.51.100.7"
    assert ok["resource_path"] == "/random/strings" and ok["http_method"] == "GET"
    assert ok["response_length"] > 0 and abs(ok["request_time"] - datetime.now(UTC).replace(tzinfo=None)) < timedelta(
        minutes=1)
    assert refused["tenant_id"] is None and refused["user"] is None


def test_sink_flushes_by_size_and_by_interval(db, lake):
    lake.ensure_table()  # an existing lake with no record yet (reading a missing one is an error)
    sink = sink_module.BufferedSink(lake=lake, max_records=3, max_seconds=3600)
    line = ('{"request_id": "r%d", "ip": "192.0.2.1", "user": "u", "request_time": 1793491200823, '
            '"http_method": "GET", "resource_path": "/random/strings", "status": 200, "protocol": "HTTP/1.1", '
            '"response_length": 5, "tenant_id": "t"}')
    sink.put(line % 1)
    sink.put(line % 2)
    assert not lake.data_files() and sink.pending() == 2
    sink.put(line % 3)
    assert sink.pending() == 0 and len(lake.data_files()) == 1
    assert sink.put("not json") is False and sink.failed == 1

    timed = sink_module.BufferedSink(lake=lake, max_records=1000, max_seconds=0.2)
    timed.put(line % 4)
    import time
    deadline = time.time() + 5
    while len(lake.data_files()) < 2 and time.time() < deadline:
        time.sleep(0.05)
    assert timed.pending() == 0 and len(lake.data_files()) == 2


def test_with_the_portal_token_authentication_end_to_end(db, lake, settings, tmp_path):
    """The real TokenAuthentication (issue 6), a local ID token in Authorization as the sample sends it."""
    from tenants.services.identity import tenant_user_create, tenant_user_issue_token

    settings.IDENTITY_BACKEND = "local"
    settings.VAR_DIR = tmp_path
    settings.METERED_API_AUTHENTICATION = ["tenants.identity.authentication.TokenAuthentication"]
    tokens.clear_jwks_cache()
    import_sample_plans()
    tenant = TenantFactory(slug="t-acme")
    tenant_user, _ = tenant_user_create(tenant=tenant, email="ann@acme.example", password=PASSWORD)
    token = tenant_user_issue_token(tenant_user=tenant_user)
    client = APIClient()
    for _ in range(3):
        assert client.get(URL, {"num": "2"}, HTTP_AUTHORIZATION=token).status_code == 200
    assert client.get(URL, HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 200
    assert client.get(URL, HTTP_AUTHORIZATION="not-a.valid.token").status_code == 401
    logged = rows(lake)
    assert sum(1 for r in logged if r["tenant_id"] == "t-acme" and r["user"] == tenant_user.username) == 4
    now = datetime.now(UTC)
    usage_sync(start=now - timedelta(hours=1), end=now + timedelta(hours=1))
    calls = sum(r.value for r in HourlyUsage.objects.filter(tenant=tenant, metric__code="api_calls"))
    assert calls == 4
    tokens.clear_jwks_cache()


@pytest.mark.slow
# On PostgreSQL only: Django's live server shares the in-memory SQLite test database across threads
# and fails to close it from its request thread at the end of the session.
@pytest.mark.postgres
def test_the_sample_client_works_against_the_live_server(transactional_db, lake, header_auth, live_server):
    """What tests/run_test.py does: GET {invoke_url}/random/strings with chars/len/num and a raw token."""
    base = f"{live_server.url}/demo-api"
    for chars, length, num in (("letters", 3, 2), ("digits", 10, 1), ("uppercase", 1, 100)):
        response = requests.get(f"{base}/random/strings", params={"chars": chars, "len": length, "num": num},
                                headers={"X-Test-User": "u-9:t-acme"}, timeout=10)
        assert response.status_code == 200 and len(response.json()) == num
    assert requests.get(f"{base}/random/strings", timeout=10).status_code == 401
    assert len(rows(lake)) == 4


def test_records_of_a_killed_process_are_recovered_from_its_spool(db, lake, tmp_path):
    import subprocess
    import sys

    spool = tmp_path / "spool"
    line = ('{"request_id": "k%d", "ip": "192.0.2.1", "user": "u", "request_time": 1793491200823, '
            '"http_method": "GET", "resource_path": "/random/strings", "status": 200, "protocol": "HTTP/1.1", '
            '"response_length": 5, "tenant_id": "t"}')
    # A process buffers two records, then dies without flushing (as SIGKILL or SIGTERM would leave it).
    dead = subprocess.run([sys.executable, "-c", f"""
import os, sys
sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
from pathlib import Path
from metering.sink import BufferedSink
sink = BufferedSink(lake=object(), max_records=100, max_seconds=3600, spool_dir=Path({str(spool)!r}))
sink.put({line % 1!r}); sink.put({line % 2!r})
os._exit(0)
"""], check=True)
    assert dead.returncode == 0 and len(list(spool.glob("*.jsonl"))) == 1
    survivor = sink_module.BufferedSink(lake=lake, max_records=100, max_seconds=3600, spool_dir=spool)
    assert survivor.recover_spools() == 2
    assert sorted(r["request_id"] for r in rows(lake)) == ["k1", "k2"]
    assert not list(spool.glob("*"))
    # Our own spool empties once its records are in the table.
    survivor.put(line % 3)
    assert (spool / f"{os.getpid()}.jsonl").exists()
    survivor.flush()
    assert not (spool / f"{os.getpid()}.jsonl").exists()
