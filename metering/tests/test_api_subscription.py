"""The subscription over the API: plans on offer, preview, change, cancel, withdraw; the owner acts, other users and
API keys read, staff act for any tenant; refusals are 400s that say why; nothing of another tenant is reached."""

from datetime import UTC, datetime
from decimal import Decimal
from unittest import mock

import pytest
from rest_framework.test import APIClient

from metering.tests.api_fixtures import *  # noqa: F403
from metering.tests.api_fixtures import add_hourly
from tenants.models import SubscriptionChange, SubscriptionRequest, TenantRole
from tenants.services import identity as identity_services
from tenants.services.api_keys import api_key_create

NOW = datetime(2026, 11, 10, 12, 30, tzinfo=UTC)
NOV = datetime(2026, 11, 1, tzinfo=UTC)
DEC = datetime(2026, 12, 1, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _now():
    with mock.patch("django.utils.timezone.now", return_value=NOW):
        yield


def _member_client(world, slug="acme"):
    member, _ = identity_services.tenant_user_create(tenant=world.tenants[slug], email=f"mo@{slug}.example",
                                                    role=TenantRole.MEMBER, password=PASSWORD)  # noqa: F405
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {identity_services.tenant_user_issue_token(tenant_user=member)}")
    return client


def test_the_subscription_and_the_plans_on_offer(world):
    acme = world.client("acme")
    state = acme.get("/api/v1/subscription/").json()
    assert (state["plan"], state["base_fee"], state["currency"], state["waiting"], state["requests"]) == (
        "pro", "49.00", "USD", None, [])
    assert (state["period_start"], state["period_end"]) == ("2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z")
    offered = acme.get("/api/v1/plans/").json()
    assert [(p["plan"], p["change"], p["takes_effect_at"]) for p in offered] == [
        ("starter", "downgrade", "2026-12-01T00:00:00Z")]
    offered = world.client("globex").get("/api/v1/plans/").json()
    assert [(p["plan"], p["change"], p["base_fee"]) for p in offered] == [("pro", "upgrade", "49.00")]


def test_preview_of_a_downgrade_and_an_upgrade(world):
    add_hourly(world.tenants["acme"], "api_calls", NOV, 24, "100")  # 2400 calls this period so far
    preview = world.client("acme").get("/api/v1/subscription/preview/", {"plan": "starter"}).json()
    assert (preview["change"], preview["takes_effect_at"], preview["estimated"]) == (
        "downgrade", "2026-12-01T00:00:00Z", True)
    assert preview["invoice"]["period_start"] == "2026-12-01T00:00:00Z"
    assert preview["invoice"]["total"] == "2.40"  # 2400 × 0.001 on starter

    preview = world.client("globex").get("/api/v1/subscription/preview/", {"plan": "pro"}).json()
    assert (preview["change"], preview["estimated"], preview["invoice"]["plans"]) == ("upgrade", False, ["starter", "pro"])
    # Pro from 10 November 12:30 for the rest of November (491.5 of 720 hours): base fee 49 × 491.5 / 720 =
    # 33.45, brought up to the commitment 100 × 491.5 / 720 = 68.26; starter's part had no usage.
    assert Decimal(preview["invoice"]["total"]) == Decimal("68.26")


@pytest.mark.parametrize(("plan", "status", "says"), [
    ("", 400, "plan"), ("pro", 400, "already on Pro"), ("nope", 400, "no plan"),
])
def test_preview_refusals(world, plan, status, says):
    response = world.client("acme").get("/api/v1/subscription/preview/", {"plan": plan})
    assert response.status_code == status and says in str(response.json())


def test_the_owner_downgrades_cancels_and_withdraws(world):
    acme = world.client("acme")
    first = acme.post("/api/v1/subscription/change/", {"plan": "starter"}, format="json")
    assert first.status_code == 200
    assert (first.json()["kind"], first.json()["status"], first.json()["effective_at"]) == (
        "downgrade", "scheduled", "2026-12-01T00:00:00Z")
    again = acme.post("/api/v1/subscription/change/", {"plan": "starter"}, format="json")
    assert again.json()["id"] == first.json()["id"], "a double submit is one request"
    assert acme.get("/api/v1/subscription/").json()["waiting"]["to_plan"] == "starter"
    assert acme.get("/api/v1/plan/").json()["plan"]["plan"] == "pro", "still on pro this period"

    withdrawn = acme.post("/api/v1/subscription/withdraw/")
    assert withdrawn.json()["status"] == "withdrawn"
    nothing = acme.post("/api/v1/subscription/withdraw/")
    assert nothing.status_code == 400 and "Nothing is waiting" in nothing.json()["detail"]

    cancel = acme.post("/api/v1/subscription/cancel/")
    assert (cancel.json()["kind"], cancel.json()["effective_at"]) == ("cancel", "2026-12-01T00:00:00Z")
    assert acme.post("/api/v1/subscription/cancel/").json()["id"] == cancel.json()["id"]
    blocked = acme.post("/api/v1/subscription/change/", {"plan": "starter"}, format="json")
    assert blocked.status_code == 400 and "cancellation" in blocked.json()["detail"]
    assert acme.post("/api/v1/subscription/withdraw/").json()["status"] == "withdrawn"
    history = acme.get("/api/v1/subscription/").json()["requests"]
    assert [(r["kind"], r["status"], r["requested_by"]) for r in history] == [
        ("cancel", "withdrawn", "ann@acme.example"), ("downgrade", "withdrawn", "ann@acme.example")]


def test_the_owner_upgrades_at_once(world):
    globex = world.client("globex")
    made = globex.post("/api/v1/subscription/change/", {"plan": "pro"}, format="json").json()
    assert (made["kind"], made["status"], made["effective_at"]) == ("upgrade", "applied", "2026-11-10T12:30:00Z")
    assert globex.get("/api/v1/plan/").json()["plan"]["plan"] == "pro"
    again = globex.post("/api/v1/subscription/change/", {"plan": "pro"}, format="json")
    assert again.status_code == 400 and again.json()["detail"] == "You are already on Pro."
    assert SubscriptionChange.objects.filter(subscription__tenant=world.tenants["globex"]).count() == 1
    change = SubscriptionChange.objects.get(subscription__tenant=world.tenants["globex"])
    assert change.made_by == world.users["globex"].user


@pytest.mark.parametrize("action", ["change", "cancel", "withdraw"])
def test_other_users_and_api_keys_read_but_do_not_act(world, action):
    member = _member_client(world)
    assert member.get("/api/v1/subscription/").status_code == 200
    assert member.get("/api/v1/plans/").status_code == 200
    refused = member.post(f"/api/v1/subscription/{action}/", {"plan": "starter"}, format="json")
    assert refused.status_code == 403 and "owner" in refused.json()["detail"]

    _, raw_key = api_key_create(tenant=world.tenants["acme"], name="reader", scopes=["usage:read"])
    machine = APIClient()
    machine.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    assert machine.get("/api/v1/subscription/").status_code == 200
    assert machine.get("/api/v1/subscription/preview/", {"plan": "starter"}).status_code == 200
    refused = machine.post(f"/api/v1/subscription/{action}/", {"plan": "starter"}, format="json")
    assert refused.status_code == 403 and "does not take API keys" in refused.json()["detail"]
    assert not SubscriptionRequest.objects.exists()
    assert APIClient().get("/api/v1/subscription/").status_code in (401, 403)


def test_no_other_tenant_is_reached(world):
    acme = world.client("acme")
    assert acme.get("/api/v1/subscription/", {"tenant": "globex"}).status_code == 404
    assert acme.post("/api/v1/subscription/cancel/?tenant=globex").status_code == 404
    assert not SubscriptionRequest.objects.exists()


def test_staff_act_for_a_tenant_under_the_admin_scope(world, staff_client):
    made = staff_client.post("/api/v1/admin/tenants/globex/subscription/change/", {"plan": "pro"}, format="json")
    assert made.status_code == 200 and made.json()["kind"] == "upgrade"
    change = SubscriptionChange.objects.get(subscription__tenant=world.tenants["globex"])
    assert change.made_by.username == "staff"
    assert world.client("acme").post("/api/v1/admin/tenants/globex/subscription/cancel/").status_code == 403


def test_the_schema_documents_the_endpoints(world):
    schema = APIClient().get("/api/schema/", {"format": "json"}).json()
    for path, method in [("/api/v1/subscription/", "get"), ("/api/v1/plans/", "get"),
                         ("/api/v1/subscription/preview/", "get"), ("/api/v1/subscription/change/", "post"),
                         ("/api/v1/subscription/cancel/", "post"), ("/api/v1/subscription/withdraw/", "post")]:
        assert method in schema["paths"][path], path
    preview = schema["paths"]["/api/v1/subscription/preview/"]["get"]
    assert [p["name"] for p in preview["parameters"]] == ["plan"]
