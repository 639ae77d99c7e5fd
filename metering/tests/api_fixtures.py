"""Fixtures for the REST API tests: two tenants with users, tokens, a subscription, usage and invoices.

Import them into a test module with `from metering.tests.api_fixtures import *  # noqa: F403`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from metering.models import HourlyUsage
from metering.services.billing.invoices import invoice_create, invoice_finalize
from tenants.identity import tokens
from tenants.models import Metric, TenantRole
from tenants.services import identity as identity_services
from tenants.services.subscriptions import subscription_create
from tenants.tests.factories import TenantFactory, import_sample_plans

OCT = datetime(2026, 10, 1, tzinfo=UTC)
NOV = datetime(2026, 11, 1, tzinfo=UTC)
PASSWORD = "Correct-Horse-9-Battery"


@pytest.fixture(scope="session")
def api_identity_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("api-identity")


@pytest.fixture
def local_identity(settings, api_identity_dir):
    # One signing key for the whole session: generating an RSA key per test is slow.
    settings.IDENTITY_BACKEND = "local"
    settings.VAR_DIR = api_identity_dir
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # speed, not security
    tokens.clear_jwks_cache()
    yield settings
    tokens.clear_jwks_cache()


def add_hourly(tenant, code, start, hours, value):
    metric = Metric.objects.get(code=code)
    HourlyUsage.objects.bulk_create(
        [HourlyUsage(tenant=tenant, metric=metric, hour=start + timedelta(hours=h), value=Decimal(value))
         for h in range(hours)]
    )


class World:
    """What the fixture made, for assertions: per tenant slug its tenant, user, token, invoice."""

    def __init__(self):
        self.tenants, self.users, self.tokens, self.invoices = {}, {}, {}, {}

    def client(self, slug) -> APIClient:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {self.tokens[slug]}")
        return client


def make_tenant(world: World, slug: str, version, *, email: str, usage: str) -> None:
    tenant = TenantFactory(slug=slug)
    tenant_user, _ = identity_services.tenant_user_create(tenant=tenant, email=email, role=TenantRole.OWNER,
                                                          password=PASSWORD)
    subscription = subscription_create(tenant=tenant, plan_version=version, started_at=OCT, with_trial=False)
    # October: 31 days × 24 hours of api_calls; and a little data out.
    add_hourly(tenant, "api_calls", OCT, 31 * 24, usage)
    add_hourly(tenant, "data_out_mb", OCT, 24, "1500000")
    invoice = invoice_create(subscription=subscription, period_start=OCT, period_end=NOV, as_of=NOV)
    invoice = invoice_finalize(invoice=invoice, at=NOV + timedelta(hours=2))
    world.tenants[slug] = tenant
    world.users[slug] = tenant_user
    world.tokens[slug] = identity_services.tenant_user_issue_token(tenant_user=tenant_user)
    world.invoices[slug] = invoice


@pytest.fixture
def world(db, local_identity, django_capture_on_commit_callbacks):
    versions = import_sample_plans()
    world = World()
    make_tenant(world, "acme", versions["pro"], email="ann@acme.example", usage="10")
    make_tenant(world, "globex", versions["starter"], email="bob@globex.example", usage="7")
    return world


@pytest.fixture
def staff_client(db):
    get_user_model().objects.create_user("staff", "staff@provider.example", PASSWORD, is_staff=True)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Basic " + __import__("base64").b64encode(f"staff:{PASSWORD}".encode()).decode())
    return client
