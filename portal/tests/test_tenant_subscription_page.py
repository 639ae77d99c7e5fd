"""The tenant area's subscription page (/tenant/subscription/): the owner upgrades, downgrades, cancels and undoes;
other users see the page without buttons and are refused; a preview prices the first invoice on another plan.
Staff see every change in the subscription's admin history, and approve or refuse downgrades there."""

from datetime import UTC, datetime, timedelta
from unittest import mock

import pytest

from metering.tests.api_fixtures import add_hourly
from tenants.models import SubscriptionRequest, TenantRole
from tenants.services import identity as identity_services
from tenants.services.subscriptions import subscription_create
from tenants.tests.factories import TenantFactory, import_sample_plans

NOV = datetime(2026, 11, 1, tzinfo=UTC)
NOW = datetime(2026, 11, 10, 12, 30, tzinfo=UTC)
PASSWORD = "Corr3ct-horse-battery"


@pytest.fixture(autouse=True)
def _now():
    with mock.patch("django.utils.timezone.now", return_value=NOW):
        yield


@pytest.fixture
def acme(db, settings, tmp_path):
    settings.IDENTITY_BACKEND = "local"
    settings.VAR_DIR = tmp_path
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    versions = import_sample_plans()
    tenant = TenantFactory(slug="acme", name="Acme Corp")
    subscription = subscription_create(tenant=tenant, plan_version=versions["pro"], started_at=NOV, with_trial=False)
    owner, _ = identity_services.tenant_user_create(tenant=tenant, email="ann@acme.example", role=TenantRole.OWNER,
                                                    password=PASSWORD)
    member, _ = identity_services.tenant_user_create(tenant=tenant, email="bob@acme.example", password=PASSWORD)
    return {"tenant": tenant, "subscription": subscription, "owner": owner, "member": member, "versions": versions}


def _page(client):
    response = client.get("/tenant/subscription/")
    assert response.status_code == 200
    return response.content.decode()


def test_the_owner_downgrades_withdraws_cancels_and_undoes(client, acme):
    client.force_login(acme["owner"].user)
    page = _page(client)
    assert "You are on <strong id=\"current-plan-name\">Pro</strong>" in page
    assert 'aria-label="Downgrade to Starter"' in page and "2026-12-01 00:00 UTC" in page

    response = client.post("/tenant/subscription/", {"action": "change", "plan": "starter"}, follow=True)
    page = response.content.decode()
    assert "Your plan changes to Starter at 2026-12-01 00:00 UTC." in page
    assert "Scheduled: your plan changes to Starter" in page and "Withdraw the downgrade" in page
    # A second submit of the same form changes nothing.
    client.post("/tenant/subscription/", {"action": "change", "plan": "starter"})
    assert SubscriptionRequest.objects.count() == 1

    page = client.post("/tenant/subscription/", {"action": "withdraw"}, follow=True).content.decode()
    assert "The move to Starter is withdrawn." in page and "Scheduled:" not in page
    page = client.post("/tenant/subscription/", {"action": "cancel"}, follow=True).content.decode()
    assert "Your subscription ends at 2026-12-01 00:00 UTC." in page and "Undo the cancellation" in page
    page = client.post("/tenant/subscription/", {"action": "withdraw"}, follow=True).content.decode()
    assert "The cancellation is undone" in page
    assert page.count("Withdrawn") == 2, "the history lists both"


def test_the_owner_upgrades_and_sees_why_not_twice(client, acme):
    globex = TenantFactory(slug="globex")
    subscription_create(tenant=globex, plan_version=acme["versions"]["starter"], started_at=NOV, with_trial=False)
    owner, _ = identity_services.tenant_user_create(tenant=globex, email="gil@globex.example", role=TenantRole.OWNER,
                                                    password=PASSWORD)
    client.force_login(owner.user)
    page = client.post("/tenant/subscription/", {"action": "change", "plan": "pro"}, follow=True).content.decode()
    assert "You are now on Pro." in page and 'id="current-plan-name">Pro<' in page
    page = client.post("/tenant/subscription/", {"action": "change", "plan": "pro"}, follow=True).content.decode()
    assert "You are already on Pro." in page
    page = client.post("/tenant/subscription/", {"action": "change", "plan": "nope"}, follow=True).content.decode()
    assert "There is no plan" in page


def test_a_preview_shows_the_first_invoice_on_the_other_plan(client, acme):
    add_hourly(acme["tenant"], "api_calls", NOV, 24, "100")
    client.force_login(acme["member"].user)  # a member may look
    page = client.get("/tenant/subscription/", {"preview": "starter"}).content.decode()
    assert "On Starter: your next invoice" in page and 'id="preview-total">USD 2.40<' in page
    assert "this period's projected bill is USD 100.00" in page
    page = client.get("/tenant/subscription/", {"preview": "gold"}).content.decode()
    assert "There is no plan &#x27;gold&#x27;." in page


def test_a_member_sees_but_cannot_act(client, acme):
    client.force_login(acme["member"].user)
    page = _page(client)
    assert "Only the owner of Acme Corp changes the subscription." in page
    assert "<button" not in page.split('id="offers"')[1].split("</section>")[0]
    assert 'id="cancel-subscription"' not in page
    for data in ({"action": "change", "plan": "starter"}, {"action": "cancel"}, {"action": "withdraw"}):
        assert client.post("/tenant/subscription/", data).status_code == 403
    assert not SubscriptionRequest.objects.exists()


def test_pending_approval_is_shown_and_staff_approve_in_the_admin(client, acme, settings, admin_client):
    settings.SUBSCRIPTION_DOWNGRADE_REQUIRES_APPROVAL = True
    client.force_login(acme["owner"].user)
    page = client.post("/tenant/subscription/", {"action": "change", "plan": "starter"}, follow=True).content.decode()
    assert ('Pending: your move to Starter from <time datetime="2026-12-01T00:00:00Z">2026-12-01 00:00 UTC</time> '
            "is waiting for our approval.") in page

    request = SubscriptionRequest.objects.get()
    listing = admin_client.get("/admin/tenants/subscriptionrequest/?status__exact=pending_approval").content.decode()
    assert "Waiting for staff approval" in listing
    response = admin_client.post("/admin/tenants/subscriptionrequest/",
                                 {"action": "approve", "_selected_action": [request.pk]}, follow=True)
    assert "Approved: 1." in response.content.decode()
    request.refresh_from_db()
    assert request.status == "scheduled" and request.change.changed_at == datetime(2026, 12, 1, tzinfo=UTC)
    assert "Scheduled: your plan changes to Starter" in _page(client)


def test_staff_refuse_with_a_note_on_the_request_page(client, acme, settings, admin_client):
    settings.SUBSCRIPTION_DOWNGRADE_REQUIRES_APPROVAL = True
    client.force_login(acme["owner"].user)
    client.post("/tenant/subscription/", {"action": "change", "plan": "starter"})
    request = SubscriptionRequest.objects.get()
    url = f"/admin/tenants/subscriptionrequest/{request.pk}/change/"
    assert 'name="decision"' in admin_client.get(url).content.decode()
    admin_client.post(url, {"decision": "refuse", "note": "Your contract runs to March."})
    request.refresh_from_db()
    assert (request.status, request.note, request.decided_by.username) == ("refused", "Your contract runs to March.",
                                                                           "admin")
    page = _page(client)
    assert "Refused: Your contract runs to March." in page and "Pending:" not in page


def test_the_subscription_admin_shows_every_change_and_who_made_it(client, acme, admin_client):
    client.force_login(acme["owner"].user)
    client.post("/tenant/subscription/", {"action": "change", "plan": "starter"})
    client.post("/tenant/subscription/", {"action": "withdraw"})
    with mock.patch("django.utils.timezone.now", return_value=NOW + timedelta(days=1)):
        client.post("/tenant/subscription/", {"action": "cancel"})
    # Staff change the plan on the subscription's page: recorded as theirs.
    sub = acme["subscription"]
    url = f"/admin/tenants/subscription/{sub.pk}/change/"
    client.post("/tenant/subscription/", {"action": "withdraw"})
    admin_client.post(url, {"plan_version": acme["versions"]["starter"].pk, "trial_ends_at_0": "", "trial_ends_at_1": "",
                            "ends_at_0": "", "ends_at_1": "", **_empty_inlines()})
    page = admin_client.get(url).content.decode()
    assert "ann@acme.example (tenant user of acme)" in page
    assert "admin (staff)" in page
    assert page.count("Withdrawn") == 2 and "Cancellation" in page and "Downgrade" in page


def _empty_inlines():
    management = {}
    for prefix in ("changes", "requests"):
        management.update({f"{prefix}-TOTAL_FORMS": "0", f"{prefix}-INITIAL_FORMS": "0",
                           f"{prefix}-MIN_NUM_FORMS": "0", f"{prefix}-MAX_NUM_FORMS": "1000"})
    return management


def test_a_tenant_in_new_york_reads_the_dates_on_its_own_clock(client, acme):
    """The page, its messages and the confirmation email show moments in the tenant's zone, with the offset."""
    from tenants.models import EmailDelivery, SubscriptionRequestKind

    tenant = acme["tenant"]
    tenant.time_zone = "America/New_York"
    tenant.save(update_fields=["time_zone"])
    client.force_login(acme["owner"].user)
    page = _page(client)
    # New York's December starts at 05:00 UTC (EST, UTC-05:00); November started at 04:00 UTC (EDT).
    assert '<time datetime="2026-12-01T00:00:00-05:00">2026-12-01 00:00 UTC-05:00</time>' in page
    assert "UTC</time>" not in page
    response = client.post("/tenant/subscription/", {"action": "change", "plan": "starter"}, follow=True)
    page = response.content.decode()
    request = SubscriptionRequest.objects.get()
    assert request.kind == SubscriptionRequestKind.DOWNGRADE
    assert request.effective_at == datetime(2026, 12, 1, 5, tzinfo=UTC)
    assert "Your plan changes to Starter at 2026-12-01 00:00 UTC-05:00." in page
    confirmation = EmailDelivery.objects.get(recipient=tenant.contact_email)
    assert "2026-12-01 00:00 UTC-05:00" in confirmation.body and "UTC " not in confirmation.body
