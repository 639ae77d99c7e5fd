"""Plans as code: import, validation errors that name the plan and field, export round trip, versioning."""

import copy
import json
from datetime import UTC, datetime

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from tenants.models import Metric, Plan, PlanVersion
from tenants.services.plans import plan_save, plans_export, plans_import
from tenants.services.subscriptions import subscription_create
from tenants.tests.factories import SAMPLE_FILE, TenantFactory

pytestmark = pytest.mark.django_db


def _write(tmp_path, document, name="plans.json"):
    path = tmp_path / name
    path.write_text(json.dumps(document))
    return str(path)


def _snapshot():
    return (
        list(Metric.objects.order_by("code").values("code", "name", "aggregation", "field", "filters", "divisor", "unit", "updated_at")),
        list(PlanVersion.objects.order_by("plan__code", "version").values("plan__code", "version", "document")),
    )


def test_import_twice_changes_nothing(tmp_path, capsys):
    path = _write(tmp_path, SAMPLE_FILE)
    call_command("import_plans", path)
    before = _snapshot()
    call_command("import_plans", path)
    assert _snapshot() == before
    assert "nothing changed" in capsys.readouterr().out


def test_export_reimports_to_the_same_state(tmp_path, capsys):
    call_command("import_plans", _write(tmp_path, SAMPLE_FILE))
    capsys.readouterr()
    call_command("export_plans")
    exported = json.loads(capsys.readouterr().out)
    before = _snapshot()
    report = plans_import(document=exported)
    assert not report.changed
    assert _snapshot() == before
    assert plans_export() == exported
    assert {p["code"] for p in exported["plans"]} == {"pro", "starter"}


def test_import_a_single_plan_document(tmp_path):
    plans_import(document={"metrics": SAMPLE_FILE["metrics"], "plans": []})
    call_command("import_plans", _write(tmp_path, SAMPLE_FILE["plans"][1]))
    assert Plan.objects.get(code="starter").current_version.charges.count() == 1


def test_import_errors_name_the_plan_and_field(tmp_path, capsys):
    bad = copy.deepcopy(SAMPLE_FILE)
    bad["plans"][0]["charges"][0]["tiers"][1]["up_to"] = 5000  # not above the previous tier
    bad["plans"][1]["currency"] = "XXQ"
    with pytest.raises(CommandError, match="not imported"):
        call_command("import_plans", _write(tmp_path, bad))
    err = capsys.readouterr().err
    assert "'pro'" in err and "up_to" in err
    assert "'starter'" in err and "currency" in err
    assert not Plan.objects.exists() and not Metric.objects.exists(), "a failed import changes nothing"


def test_import_refuses_a_charge_on_an_unknown_metric(tmp_path, capsys):
    bad = {"plans": [{"code": "x", "name": "X", "currency": "USD", "interval": "month",
                      "charges": [{"metric": "nope", "model": "per_unit", "unit_amount": "1"}]}]}
    with pytest.raises(CommandError):
        call_command("import_plans", _write(tmp_path, bad))
    assert "nope" in capsys.readouterr().err


def test_import_reports_bad_json(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text("{not json")
    with pytest.raises(CommandError, match="not valid JSON"):
        call_command("import_plans", str(path))


def test_editing_a_plan_without_subscribers_edits_in_place():
    plans_import(document=SAMPLE_FILE)
    doc = copy.deepcopy(SAMPLE_FILE["plans"][0])
    doc["base_fee"] = "59.00"
    version, outcome = plan_save(document=doc)
    assert outcome == "updated" and version.version == 1
    assert PlanVersion.objects.filter(plan__code="pro").count() == 1


def test_editing_a_plan_with_subscribers_makes_a_new_version():
    plans_import(document=SAMPLE_FILE)
    old = Plan.objects.get(code="pro").current_version
    sub = subscription_create(tenant=TenantFactory(), plan_version=old, started_at=datetime(2026, 10, 1, tzinfo=UTC))
    doc = copy.deepcopy(SAMPLE_FILE["plans"][0])
    doc["base_fee"] = "59.00"
    version, outcome = plan_save(document=doc)
    assert outcome == "new version 2" and version.version == 2
    sub.refresh_from_db()
    assert sub.plan_version == old, "existing subscriptions keep their version until moved"
    assert str(old.to_spec().base_fee) in ("49.00", "49")


def test_json_numbers_are_read_as_exact_decimals(tmp_path):
    text = json.dumps(SAMPLE_FILE).replace('"unit_amount": "0.09"', '"unit_amount": 0.09')
    assert '"unit_amount": 0.09' in text
    path = tmp_path / "numbers.json"
    path.write_text(text)
    call_command("import_plans", str(path))
    spec = Plan.objects.get(code="pro").current_version.to_spec()
    from decimal import Decimal

    assert spec.charge_for("data_out_mb").unit_amount == Decimal("0.09")
