"""load_demo is idempotent: the second run creates nothing and reports the same admin login."""

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from tenants.models import Plan, PlanVersion, Subscription, Tenant

pytestmark = pytest.mark.django_db


def _counts():
    return (Tenant.objects.count(), Plan.objects.count(), PlanVersion.objects.count(),
            Subscription.objects.count(), get_user_model().objects.count())


def test_load_demo_twice(capsys, settings, tmp_path):
    settings.VAR_DIR = tmp_path
    call_command("load_demo")
    first = capsys.readouterr().out
    assert "admin login created: admin / " in first
    password = first.split("admin login created: admin / ")[1].split()[0]
    counts = _counts()
    assert counts[0] == 3 and counts[3] == 3
    call_command("load_demo")
    second = capsys.readouterr().out
    assert _counts() == counts
    assert f"admin login: admin / {password}" in second
    assert get_user_model().objects.get(username="admin").check_password(password)


def test_demo_traffic_is_generated_synced_and_billed_once(capsys, settings, tmp_path):
    from metering.lake import get_lake
    from metering.models import HourlyUsage, Invoice, InvoiceStatus
    from metering.services.demo import last_month

    settings.VAR_DIR = tmp_path
    settings.LAKE_WAREHOUSE_DIR = str(tmp_path / "lake")
    call_command("load_demo", "--with-traffic")
    out = capsys.readouterr().out
    assert "demo traffic: 30000 records generated" in out
    start, end = last_month()
    invoices = list(Invoice.objects.order_by("tenant__slug"))
    assert [i.tenant.slug for i in invoices] == ["acme", "globex", "initech"]
    assert all(i.status == InvoiceStatus.FINALIZED and i.period_start == start for i in invoices)
    assert all(i.lines.filter(type="usage", quantity__gt=0).exists() for i in invoices), "usage was billed"
    state = (get_lake().count_requests(start=start, end=end, distinct=False), HourlyUsage.objects.count(),
             list(Invoice.objects.values_list("number", "total")))
    call_command("load_demo", "--with-traffic")
    assert "demo traffic: 0 records generated" in capsys.readouterr().out
    assert (get_lake().count_requests(start=start, end=end, distinct=False), HourlyUsage.objects.count(),
            list(Invoice.objects.values_list("number", "total"))) == state


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
