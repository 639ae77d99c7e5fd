"""A tenant's time zone where people meet it: the API writes periods with their offsets, the invoice page,
its PDF and email and the tenant's dashboard show the local period, and the zone is set in the admin and the
admin API, checked (an IANA name; fixed once a billing period has ended)."""

import io
import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.core import mail
from django.core.management import call_command
from django.urls import reverse

from metering.models import HourlyUsage, Invoice
from metering.pricing import calendar_period
from metering.tests.api_fixtures import PASSWORD, World, api_identity_dir, local_identity, staff_client  # noqa: F401
from tenants.models import Metric, Tenant, TenantRole
from tenants.services import identity as identity_services
from tenants.services.subscriptions import subscription_create
from tenants.tests.factories import TenantFactory, import_sample_plans

pytestmark = pytest.mark.django_db

NEW_YORK = ZoneInfo("America/New_York")
NOV_NY, DEC_NY = datetime(2026, 11, 1, 4, tzinfo=UTC), datetime(2026, 12, 1, 5, tzinfo=UTC)


@pytest.fixture
def nyc(local_identity, django_capture_on_commit_callbacks):  # noqa: F811
    """A New York tenant on Pro since October 1 (local midnight), with November billed by run_billing."""
    versions = import_sample_plans()
    tenant = TenantFactory(slug="nyc", name="NYC Corp", time_zone="America/New_York")
    subscription_create(tenant=tenant, plan_version=versions["pro"], started_at=datetime(2026, 10, 1, 4, tzinfo=UTC),
                        with_trial=False)
    HourlyUsage.objects.create(tenant=tenant, metric=Metric.objects.get(code="api_calls"),
                               hour=datetime(2026, 11, 1, 5, tzinfo=UTC), value=12_000)
    with django_capture_on_commit_callbacks(execute=True):
        call_command("run_billing", "--as-of", "2026-12-01T05:00:00Z", "--no-sync", "--finalize-now", verbosity=0)
    world = World()
    user, _ = identity_services.tenant_user_create(tenant=tenant, email="ann@nyc.example", role=TenantRole.OWNER,
                                                   password=PASSWORD)
    world.tenants["nyc"], world.users["nyc"] = tenant, user
    world.tokens["nyc"] = identity_services.tenant_user_issue_token(tenant_user=user)
    world.invoices["nyc"] = Invoice.objects.get(tenant=tenant, period_start=NOV_NY)
    return world


def _local_midnight_on_the_1st(text: str) -> datetime:
    """An ISO 8601 string with an offset that reads midnight on the 1st in New York."""
    assert re.fullmatch(r"\d{4}-\d\d-01T00:00:00-0[45]:00", text), text
    moment = datetime.fromisoformat(text)
    assert moment.utcoffset() == moment.astimezone(NEW_YORK).utcoffset()
    return moment


def test_the_api_writes_invoice_periods_with_the_tenants_offsets(nyc):
    client = nyc.client("nyc")
    rows = client.get("/api/v1/invoices/").json()["results"]
    november = next(row for row in rows if row["period_start"].startswith("2026-11"))
    assert (november["period_start"], november["period_end"]) == ("2026-11-01T00:00:00-04:00",
                                                                  "2026-12-01T00:00:00-05:00")
    assert datetime.fromisoformat(november["period_end"]) - datetime.fromisoformat(november["period_start"]) \
        == timedelta(hours=721)
    assert november["finalized_at"] == "2026-12-01T00:00:00-05:00"  # every time of the invoice, on its clock
    detail = client.get(f"/api/v1/invoices/{november['id']}/").json()
    assert {line["period_start"] for line in detail["lines"]} == {"2026-11-01T00:00:00-04:00"}
    csv_body = client.get("/api/v1/invoices/", HTTP_ACCEPT="text/csv").content.decode()
    assert "2026-11-01T00:00:00-04:00" in csv_body
    # The start filter takes any offset: New York's November starts at 04:00 UTC.
    assert client.get("/api/v1/invoices/", {"start": "2026-11-01T00:00:00-04:00"}).json()["count"] == 1
    assert client.get("/api/v1/invoices/", {"start": "2026-11-01T00:00:01-04:00"}).json()["count"] == 0


def test_the_api_writes_the_current_period_on_the_tenants_clock(nyc):
    client = nyc.client("nyc")
    current = client.get("/api/v1/usage/current/").json()
    start, end = _local_midnight_on_the_1st(current["period_start"]), _local_midnight_on_the_1st(current["period_end"])
    assert start <= datetime.fromisoformat(current["as_of"].replace("Z", "+00:00")) < end
    bill = client.get("/api/v1/projected-bill/").json()
    assert (bill["period_start"], bill["period_end"]) == (current["period_start"], current["period_end"])
    plan = client.get("/api/v1/plan/").json()
    assert plan["subscription"]["started_at"] == "2026-10-01T00:00:00-04:00"


def test_a_utc_tenant_keeps_z(world):
    body = world.client("acme").get("/api/v1/invoices/").json()
    assert body["results"][0]["period_start"] == "2026-10-01T00:00:00Z"


@pytest.fixture
def world(db, local_identity, django_capture_on_commit_callbacks):  # noqa: F811
    from metering.tests.api_fixtures import make_tenant

    world = World()
    make_tenant(world, "acme", import_sample_plans()["pro"], email="ann@acme.example", usage="10")
    return world


def test_admin_api_creates_a_tenant_in_a_time_zone_and_refuses_an_unknown_one(staff_client):  # noqa: F811
    made = staff_client.post("/api/v1/admin/tenants/", {"slug": "paris", "name": "Paris", "contact_email":
                             "billing@paris.example", "time_zone": "Europe/Paris"}, format="json")
    assert made.status_code == 201 and made.json()["time_zone"] == "Europe/Paris"
    assert Tenant.objects.get(slug="paris").time_zone == "Europe/Paris"
    assert staff_client.post("/api/v1/admin/tenants/", {"slug": "utc", "name": "U", "contact_email": "u@u.example"},
                             format="json").json()["time_zone"] == "UTC"
    for wrong in ("Mars/Olympus_Mons", "america/new_york", "../../etc/passwd", "", "x" * 300):
        refused = staff_client.post("/api/v1/admin/tenants/", {"slug": "mars", "name": "Mars", "contact_email":
                                    "m@mars.example", "time_zone": wrong}, format="json")
        assert refused.status_code == 400 and "time_zone" in refused.json(), wrong
    assert not Tenant.objects.filter(slug="mars").exists()


def test_the_invoice_page_pdf_and_email_show_the_local_period(nyc, client, django_user_model):
    invoice = nyc.invoices["nyc"]
    client.force_login(nyc.users["nyc"].user)
    html = client.get(invoice.get_absolute_url()).content.decode()
    assert ('<time datetime="2026-11-01T00:00:00-04:00">2026-11-01 00:00 UTC-04:00</time> to '
            '<time datetime="2026-12-01T00:00:00-05:00">2026-12-01 00:00 UTC-05:00</time>') in html
    assert "America/New_York time, end exclusive" in html

    import pypdf

    pdf = client.get(reverse("invoice-pdf", args=[invoice.public_id])).content
    text = " ".join(" ".join(page.extract_text().split()) for page in pypdf.PdfReader(io.BytesIO(pdf)).pages)
    assert "2026-11-01 00:00 UTC-04:00 to 2026-12-01 00:00 UTC-05:00" in text

    (message,) = [m for m in mail.outbox if invoice.number in m.subject]
    assert "for 2026-11-01 to 2026-12-01 (America/New_York time) is ready" in message.body


def test_the_tenant_dashboard_shows_the_period_on_the_tenants_clock(nyc, client):
    client.force_login(nyc.users["nyc"].user)
    html = client.get("/tenant/dashboard/").content.decode()
    period = re.search(r'<span id="billing-period">(.*?)</span>', html).group(1)
    starts = re.findall(r'<time datetime="([^"]+)">', period)
    assert len(starts) == 2 and all(_local_midnight_on_the_1st(moment) for moment in starts)
    assert "America/New_York time, end exclusive" in html
    # Past invoices too: November's row reads New York's midnights.
    assert '<time datetime="2026-11-01T00:00:00-04:00">' in html
    home = client.get("/tenant/").content.decode()
    assert "Since 2026-10-01 00:00 (America/New_York time)" in home  # 04:00 UTC
    alerts = client.get("/tenant/alerts/")
    assert alerts.status_code == 200


# --- the admin --------------------------------------------------------------------------------------------------


@pytest.fixture
def staff(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("admin", "a@example.com", "pw-for-tests-1"))
    return client


def _form(tenant, **changes):
    return {"slug": tenant.slug, "name": tenant.name, "contact_email": tenant.contact_email,
            "time_zone": tenant.time_zone, "subscriptions-TOTAL_FORMS": "0", "subscriptions-INITIAL_FORMS": "0",
            **changes}


def test_admin_adds_a_tenant_in_a_time_zone(staff):
    page = staff.get(reverse("admin:tenants_tenant_add")).content.decode()
    assert '<option value="America/New_York">' in page and '<option value="UTC" selected>' in page
    answer = staff.post(reverse("admin:tenants_tenant_add"), {
        "slug": "tokyo", "name": "Tokyo", "contact_email": "t@tokyo.example", "time_zone": "Asia/Tokyo",
        "subscriptions-TOTAL_FORMS": "0", "subscriptions-INITIAL_FORMS": "0"})
    assert answer.status_code == 302, answer.content.decode()[:2000]
    assert Tenant.objects.get(slug="tokyo").time_zone == "Asia/Tokyo"


def test_admin_changes_the_zone_until_a_period_has_ended(staff):
    versions = import_sample_plans()
    fresh = TenantFactory(slug="fresh")
    subscription_create(tenant=fresh, plan_version=versions["pro"], started_at=datetime.now(UTC) - timedelta(minutes=5),
                        with_trial=False)
    url = reverse("admin:tenants_tenant_change", args=[fresh.pk])
    unknown = staff.post(url, _form(fresh, time_zone="Mars/Olympus_Mons"))
    assert unknown.status_code == 200 and "Select a valid choice" in unknown.content.decode()
    # Five minutes into its first period, whichever zone cuts it: the zone can still change.
    subscription = fresh.subscriptions.get()
    first_end = min(calendar_period(subscription.started_at, "month", ZoneInfo(zone))[1]
                    for zone in ("UTC", "Pacific/Kiritimati"))
    if first_end > datetime.now(UTC):  # (not when this test runs in a month's first five minutes)
        assert staff.post(url, _form(fresh, time_zone="Pacific/Kiritimati")).status_code == 302
        fresh.refresh_from_db()
        assert fresh.time_zone == "Pacific/Kiritimati"

    old = TenantFactory(slug="old")
    subscription_create(tenant=old, plan_version=versions["pro"], started_at=datetime(2026, 1, 1, tzinfo=UTC),
                        with_trial=False)
    refused = staff.post(reverse("admin:tenants_tenant_change", args=[old.pk]), _form(old, time_zone="Asia/Tokyo"))
    assert refused.status_code == 200
    assert "The time zone of old is fixed" in refused.content.decode()
    old.refresh_from_db()
    assert old.time_zone == "UTC"
    # Its other fields still change.
    assert staff.post(reverse("admin:tenants_tenant_change", args=[old.pk]), _form(old, name="Old Co")).status_code == 302
    old.refresh_from_db()
    assert old.name == "Old Co"


def test_price_preview_takes_a_time_zone_and_refuses_an_unknown_one(tmp_path, capsys):
    import json

    from django.core.management.base import CommandError

    from metering.tests.test_plans_doc import FILES

    plan_file = tmp_path / "team.json"
    plan_file.write_text(FILES["team.json"])
    call_command("price_preview", "--plan-file", str(plan_file), "--time-zone", "Asia/Kolkata",
                 "--period-start", "2026-11-01")
    printed = json.loads(capsys.readouterr().out)
    assert (printed["period_start"], printed["period_end"]) == ("2026-11-01T00:00:00+05:30", "2026-12-01T00:00:00+05:30")
    with pytest.raises(CommandError, match="'Mars/Olympus_Mons' is not an IANA time zone name"):
        call_command("price_preview", "--plan-file", str(plan_file), "--time-zone", "Mars/Olympus_Mons")
    # Periods at the ends of the calendar are one line on standard error, not a traceback.
    with pytest.raises(CommandError, match="between the years 1 and 9999"):
        call_command("price_preview", "--plan-file", str(plan_file), "--period-start", "9999-12-15")
    with pytest.raises(CommandError, match="outside the years 1 to 9999"):
        call_command("price_preview", "--plan-file", str(plan_file), "--time-zone", "Asia/Tokyo",
                     "--period-start", "0001-01-01")


def test_the_invoice_admin_shows_and_exports_the_period_on_the_tenants_clock(nyc, staff):
    import csv

    changelist = staff.get(reverse("admin:metering_invoice_changelist")).content.decode()
    assert "2026-11-01 00:00 UTC-04:00 to 2026-12-01 00:00 UTC-05:00 (America/New_York)" in changelist
    invoice = nyc.invoices["nyc"]
    change = staff.get(reverse("admin:metering_invoice_change", args=[invoice.pk])).content.decode()
    assert "2026-11-01 00:00 UTC-04:00 to 2026-12-01 00:00 UTC-05:00" in change
    exported = staff.post(reverse("admin:metering_invoice_changelist"),
                          {"action": "export_invoices_csv", "_selected_action": [invoice.pk]})
    rows = list(csv.reader(io.StringIO(exported.content.decode())))
    assert rows[1][2:4] == ["2026-11-01T00:00:00-04:00", "2026-12-01T00:00:00-05:00"]
