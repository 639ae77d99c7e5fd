"""load_demo is idempotent: the second run creates nothing and reports the same admin and tenant logins; with
traffic, the portal is alive at once: last month billed, this month's usage up to now, the pipeline "ok"."""

import re
import stat
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.utils import timezone

from tenants.models import Plan, PlanVersion, Subscription, Tenant, TenantUser

pytestmark = pytest.mark.django_db

TENANT_LOGIN = re.compile(r"^tenant login(?: created)? \((\w+)\): (\S+) / (\S+)$", re.M)


def _counts():
    return (Tenant.objects.count(), Plan.objects.count(), PlanVersion.objects.count(),
            Subscription.objects.count(), get_user_model().objects.count(), TenantUser.objects.count())


def tenant_logins(out: str) -> dict[str, tuple[str, str]]:
    return {slug: (email, password) for slug, email, password in TENANT_LOGIN.findall(out)}


def sign_in(client, email: str, password: str):
    response = client.post("/account/login/", {"username": email, "password": password})
    assert response.status_code == 302, f"{email} could not sign in"
    return client


def test_load_demo_twice(capsys, settings, tmp_path, client):
    settings.VAR_DIR = tmp_path
    call_command("load_demo")
    first = capsys.readouterr().out
    assert "admin login created: admin / " in first
    password = first.split("admin login created: admin / ")[1].split()[0]
    counts = _counts()
    assert counts[0] == 3 and counts[3] == 3
    logins = tenant_logins(first)
    assert set(logins) == {"acme", "globex", "initech"}
    assert all(f"tenant login created ({slug})" in first for slug in logins)
    assert stat.S_IMODE((tmp_path / "demo-tenant-logins.txt").stat().st_mode) == 0o600
    call_command("load_demo")
    second = capsys.readouterr().out
    assert _counts() == counts
    assert f"admin login: admin / {password}" in second
    assert get_user_model().objects.get(username="admin").check_password(password)
    assert tenant_logins(second) == logins, "the second run prints the same tenant logins"
    # The logins are the last lines, after what was created.
    assert second.strip().splitlines()[-4:] == [line for line in second.strip().splitlines() if "login" in line]

    # Each printed login opens its own tenant's area.
    for slug, (email, tenant_password) in logins.items():
        sign_in(client, email, tenant_password)
        response = client.get("/tenant/")
        assert response.status_code == 200 and Tenant.objects.get(slug=slug).name in response.content.decode()
        client.logout()


@pytest.mark.django_db(transaction=True)  # real commits: invoices are emailed as their batch commits
def test_demo_traffic_is_generated_synced_and_billed_once(capsys, settings, tmp_path, client):
    from metering.lake import get_lake
    from metering.models import HourlyUsage, Invoice, InvoiceStatus, SyncCursor
    from metering.services.demo import last_month

    settings.VAR_DIR = tmp_path
    settings.LAKE_WAREHOUSE_DIR = str(tmp_path / "lake")
    settings.DASHBOARD_CACHE_SECONDS = 0
    settings.EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"  # as `make demo` prints them
    first_hour = timezone.now().replace(minute=0, second=0, microsecond=0)
    call_command("load_demo", "--with-traffic")
    out = capsys.readouterr().out
    assert "demo traffic: 30000 records generated" in out
    # The tenants, then the invoice emails they are sent, then the summary, the logins last.
    emails = [m.start() for m in re.finditer(r"^Subject: .* invoice ", out, re.M)]
    assert len(emails) == 3, out
    assert out.rindex("tenant initech: subscribed to") < min(emails)
    assert max(emails) < out.index("demo traffic:") < out.index("admin login created")
    assert out.strip().splitlines()[-1].startswith("tenant login created (initech): demo@initech.example / ")
    start, end = last_month()
    now = timezone.now()
    invoices = list(Invoice.objects.order_by("tenant__slug"))
    assert [i.tenant.slug for i in invoices] == ["acme", "globex", "initech"]
    assert all(i.status == InvoiceStatus.FINALIZED and i.period_start == start for i in invoices)
    assert all(i.lines.filter(type="usage", quantity__gt=0).exists() for i in invoices), "usage was billed"

    # This month has traffic up to now (at last month's rate), synced: the pipeline is "ok", not days behind.
    this_month = re.search(r"and (\d+) for this month up to now", out)
    assert this_month, out

    def at_last_months_rate(until):
        return 30000 * (until - end) // (end - start)

    assert at_last_months_rate(now - timedelta(minutes=1)) <= int(this_month.group(1)) <= at_last_months_rate(now)
    hours = HourlyUsage.objects.filter(hour__gte=end)
    if now - end > timedelta(hours=3):  # the first hours of a month may hold no record yet
        assert hours.exists() and max(h.hour for h in hours) >= now - timedelta(hours=2)
    synced = SyncCursor.objects.get(name="local").synced_until
    assert now - timedelta(minutes=5) <= synced <= timezone.now()
    from metering.models import EventReceipt

    # Today's events arrive "now", never at the end of an hour still to come (the events page lists arrivals).
    assert EventReceipt.objects.exists() and not EventReceipt.objects.filter(received_at__gt=now).exists()
    admin_password = re.search(r"admin login created: admin / (\S+)", out).group(1)
    sign_in(client, "admin", admin_password)
    page = client.get("/admin/dashboard/").content.decode()
    assert "dash-state-ok" in page, "the pipeline status is ok after the demo starts"
    client.logout()

    # A demo tenant's own dashboard: this month's usage so far and a projected bill.
    email, password = tenant_logins(out)["acme"]
    sign_in(client, email, password)
    page = client.get("/tenant/dashboard/").content.decode()
    calls = re.search(r'data-metric="api_calls">([^<]+)<', page)
    assert calls, "no api_calls figure on the tenant dashboard"
    if now - end > timedelta(hours=3):
        assert int(re.sub(r"\D", "", calls.group(1))) > 0, "this month's usage shows"
    total = re.search(r'id="projected-total">(\w+) ([\d.,]+)<', page)
    assert total and total.group(1) == "USD" and Decimal(total.group(2).replace(",", "")) > 0

    state = (get_lake().count_requests(start=start, end=end, distinct=False), HourlyUsage.objects.count(),
             list(Invoice.objects.values_list("number", "total")))
    # The demo generates only the hours after the lake's latest record: when the first run found no record yet
    # in the current hour (its first minutes are sparse), the second run generates that hour so far.
    from metering.services.demo import latest_request

    latest = latest_request(get_lake(), start=first_hour, end=timezone.now() + timedelta(seconds=1))
    call_command("load_demo", "--with-traffic")
    again = capsys.readouterr().out
    if latest is not None and timezone.now() - first_hour < timedelta(hours=1):
        assert "demo traffic: 0 records generated for last month and 0 for this month" in again
        assert (get_lake().count_requests(start=start, end=end, distinct=False), HourlyUsage.objects.count(),
                list(Invoice.objects.values_list("number", "total"))) == state
    else:  # a new hour began meanwhile (a slow machine), or the current one had no record yet: its minutes so
        # far are generated, nothing else changes
        assert "demo traffic: 0 records generated for last month and " in again
        assert list(Invoice.objects.values_list("number", "total")) == state[2]
    assert tenant_logins(again) == tenant_logins(out)


def test_the_admin_password_file_is_readable_by_its_owner_only(capsys, settings, tmp_path):
    import os
    import stat

    settings.VAR_DIR = tmp_path
    password_file = tmp_path / "admin-password.txt"
    old_umask = os.umask(0o000)  # the widest umask: the file's mode must not depend on it
    try:
        call_command("load_demo")
        assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
        # A file left with wider rights (an older version wrote 0644) is narrowed when rewritten.
        password_file.chmod(0o644)
        call_command("load_demo", admin_password="Another-Pass-42")
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
    assert password_file.read_text() == "Another-Pass-42\n"
