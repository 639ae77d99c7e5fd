"""Alerts through their entry points: the owner sets thresholds on the tenant area's Alerts page, events are
posted to the API, `sync_usage` checks them (once per period, also for two concurrent syncs on PostgreSQL),
the owner is emailed and sees them on the dashboard; staff are told once of a failing sync (by
`sync_usage`) and of a late pipeline (by the beat's `check_pipeline` task)."""

from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from rest_framework.test import APIClient

from metering.event_sink import reset_event_sink
from metering.models import StaffNotice, SyncCursor, UsageAlert, UsageAlertFiring
from metering.services.sync import floor_hour
from metering.tasks import check_pipeline
from metering.tests.processes import concurrently
from tenants.models import EmailDelivery, PlanVersion, TenantRole
from tenants.services import identity as identity_services
from tenants.services.subscriptions import subscription_create
from tenants.tests.factories import TenantFactory

CATALOG = {
    "metrics": [{"code": "tokens_k", "name": "Tokens", "event": "llm.completion", "aggregation": "sum",
                 "field": "properties.tokens", "divisor": "1000", "unit": "k tokens"}],
    "plans": [{"code": "ai", "name": "AI", "currency": "USD", "interval": "month", "base_fee": "10.00",
               "charges": [{"metric": "tokens_k", "model": "per_unit", "unit_amount": "1.00"}]}],
}


@pytest.fixture
def acme(db, settings, tmp_path):
    settings.LAKE_WAREHOUSE_DIR = str(tmp_path / "lake")
    settings.LAKE_BACKEND = "local"
    settings.EVENTS_BACKEND = "local"
    settings.API_THROTTLE_RATE = "100000/minute"
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.ALERTS_STAFF_EMAILS = ["ops@provider.example"]
    reset_event_sink()
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps(CATALOG))
    call_command("import_plans", str(catalog), stdout=StringIO())
    tenant = TenantFactory(slug="acme", name="Acme")
    now = timezone.now()
    period_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    subscription_create(tenant=tenant, plan_version=PlanVersion.objects.get(plan__code="ai"), started_at=period_start,
                        with_trial=False)
    owner, _ = identity_services.tenant_user_create(tenant=tenant, email="ann@acme.example", role=TenantRole.OWNER,
                                                    password="Correct-Horse-9-Battery")
    member, _ = identity_services.tenant_user_create(tenant=tenant, email="bob@acme.example", role=TenantRole.MEMBER,
                                                     password="Correct-Horse-9-Battery")
    out = StringIO()
    call_command("api_key_create", "--tenant", "acme", "--name", "backend", stdout=out)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {out.getvalue().splitlines()[-1]}")
    yield {"tenant": tenant, "owner": owner, "member": member, "api": api, "period_start": period_start}
    reset_event_sink()


def post_tokens(api, tid: str, tokens: int) -> None:
    # This period's: now (the start of the period when it began less than a second ago).
    answer = api.post("/api/v1/events/", json.dumps({"events": [{
        "transaction_id": tid, "code": "llm.completion", "timestamp": timezone.now().isoformat(),
        "properties": {"tokens": tokens}}]}), content_type="application/json")
    assert answer.status_code == 202 and answer.json()["accepted"] == 1, answer.content


def sync() -> None:
    reset_event_sink()
    call_command("sync_usage", stdout=StringIO())


def add_alert(client, **data):
    return client.post("/tenant/alerts/", data)


def test_the_owner_sets_alerts_and_is_told_once_per_period(client, acme):
    client.force_login(acme["owner"].user)
    tokens = str(UsageAlert._meta.get_field("metric").related_model.objects.get(code="tokens_k").pk)
    assert add_alert(client, watch=tokens, threshold="5", channel="email").status_code == 302
    assert add_alert(client, watch="spend", threshold="12.50", channel="email").status_code == 302
    again = add_alert(client, watch=tokens, threshold="5", channel="email")
    assert again.status_code == 200 and "already has that threshold" in again.content.decode()
    refused = add_alert(client, watch=tokens, threshold="-1", channel="email")
    assert refused.status_code == 200 and UsageAlert.objects.count() == 2

    post_tokens(acme["api"], "t1", 4000)  # 4 k tokens: below 5; the bill is 10.00 + 4.00 = 14.00 ≥ 12.50
    sync()
    fired = list(UsageAlertFiring.objects.select_related("alert"))
    assert [f.alert.kind for f in fired] == ["spend"] and str(fired[0].value) == "14.000000"
    assert fired[0].period_start == acme["period_start"]
    emails = list(EmailDelivery.objects.filter(kind="alert"))
    assert [e.recipient for e in emails] == ["ann@acme.example"]  # the owner, not the member
    assert "The projected bill reached 12.50 USD (now 14.00 USD)" in emails[0].subject

    post_tokens(acme["api"], "t2", 1500)  # 5.5 k tokens: the usage alert fires; the spend alert did already
    sync()
    sync()  # and a sync that sees the same tells nobody again
    assert sorted(f.alert.kind for f in UsageAlertFiring.objects.select_related("alert")) == ["spend", "usage"]
    assert EmailDelivery.objects.filter(kind="alert").count() == 2
    assert "Tokens reached 5 k tokens (now 5.5 k tokens)" in EmailDelivery.objects.filter(kind="alert").first().subject

    page = client.get("/tenant/alerts/").content.decode()
    assert "Tokens reached 5 k tokens (now 5.5 k tokens)" in page and "never" not in page
    dashboard = client.get("/tenant/dashboard/").content.decode()
    assert 'id="alerts"' in dashboard and "(this period)" in dashboard


def test_members_see_alerts_but_only_the_owner_changes_them(client, acme):
    other = TenantFactory(slug="globex")
    from metering.services.alerts import usage_alert_create

    theirs = usage_alert_create(tenant=other, kind="spend", threshold="1")
    mine = usage_alert_create(tenant=acme["tenant"], kind="spend", threshold="1")
    client.force_login(acme["member"].user)
    page = client.get("/tenant/alerts/")
    assert page.status_code == 200 and "Add an alert" not in page.content.decode()
    assert add_alert(client, watch="spend", threshold="3", channel="email").status_code == 403
    assert client.post(f"/tenant/alerts/{mine.pk}/delete/").status_code == 403
    client.force_login(acme["owner"].user)
    assert client.post(f"/tenant/alerts/{theirs.pk}/delete/").status_code == 404  # another tenant's: not found
    assert client.post(f"/tenant/alerts/{mine.pk}/delete/").status_code == 302
    assert list(UsageAlert.objects.all()) == [theirs]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_concurrent_syncs_fire_a_crossed_threshold_once(settings, tmp_path):
    settings.LAKE_WAREHOUSE_DIR = str(tmp_path / "lake")
    settings.EVENTS_BACKEND = "local"
    reset_event_sink()
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps(CATALOG))
    call_command("import_plans", str(catalog), stdout=StringIO())
    tenant = TenantFactory(slug="acme")
    subscription_create(tenant=tenant, plan_version=PlanVersion.objects.get(plan__code="ai"),
                        started_at=floor_hour(timezone.now()) - timedelta(days=40), with_trial=False)
    from metering.services.alerts import usage_alert_create

    usage_alert_create(tenant=tenant, kind="spend", threshold="5")  # the base fee alone crosses it
    from metering.lake import get_lake

    get_lake().ensure_table()  # an empty lake
    for _ in range(3):
        concurrently(lambda: call_command("sync_usage", stdout=StringIO()))
    assert UsageAlertFiring.objects.count() == 1
    assert EmailDelivery.objects.filter(kind="alert").count() == 1


def test_staff_are_told_once_per_failing_streak_and_per_stall(db, settings, tmp_path, django_user_model):
    settings.LAKE_BACKEND = "local"
    settings.ALERTS_STAFF_EMAILS = []
    settings.LAKE_WAREHOUSE_DIR = str(tmp_path / "nowhere")  # no lake: every sync fails
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps(CATALOG))
    call_command("import_plans", str(catalog), stdout=StringIO())
    django_user_model.objects.create_user("ops", "ops@provider.example", "x", is_staff=True)
    django_user_model.objects.create_user("ann", "ann@example.com", "x")  # not staff
    for _ in range(2):
        with pytest.raises(CommandError):
            call_command("sync_usage", stdout=StringIO(), stderr=StringIO())
    notices = list(StaffNotice.objects.all())
    assert [n.kind for n in notices] == ["sync_failed"] and "the local lake is missing" in notices[0].message
    assert list(EmailDelivery.objects.filter(kind="staff_notice").values_list("recipient", flat=True)) == [
        "ops@provider.example"]

    # The pipeline: synced up to three hours ago is late (PIPELINE_LATE_ALERT_MINUTES=120), once per stall.
    SyncCursor.objects.update_or_create(name="local", defaults={
        "synced_until": timezone.now() - timedelta(hours=3)})
    assert check_pipeline()["notice"] is not None
    assert check_pipeline()["notice"] is None
    assert StaffNotice.objects.filter(kind="pipeline_late").count() == 1
    SyncCursor.objects.filter(name="local").update(synced_until=timezone.now())
    assert check_pipeline()["notice"] is None  # on time again


def test_staff_set_alerts_for_any_tenant_in_the_admin(acme, client, django_user_model):
    from django.urls import reverse

    client.force_login(django_user_model.objects.create_superuser("boss", "boss@provider.example", "x"))
    add = reverse("admin:metering_usagealert_add")
    tenant = acme["tenant"].pk
    refused = client.post(add, {"tenant": tenant, "kind": "usage", "metric": "", "threshold": "5", "channel": "email"})
    assert refused.status_code == 200 and "A usage alert names its metric" in refused.content.decode()
    assert client.post(add, {"tenant": tenant, "kind": "spend", "metric": "", "threshold": "5",
                             "channel": "both"}).status_code == 302
    alert = UsageAlert.objects.get()
    assert (alert.kind, alert.channel, alert.created_by.username) == ("spend", "both", "boss")
    listing = client.get(reverse("admin:metering_usagealert_changelist")).content.decode()
    assert "The projected bill reached 5" in listing and "never" in listing
