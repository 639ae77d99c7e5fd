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
