"""`manage.py price_preview`: the output and errors of docs/plans.md, with an empty database."""

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from metering.tests.plans_md import PLANS_MD_OUTPUT, PRO

ROOT = Path(__file__).resolve().parents[2]



NOVEMBER = ["--period-start", "2026-11-01T00:00:00Z", "--period-end", "2026-12-01T00:00:00Z"]


@pytest.fixture
def plan_file(tmp_path):
    path = tmp_path / "pro.json"
    path.write_text(json.dumps(PRO))
    return str(path)


def preview(*args):
    out = StringIO()
    call_command("price_preview", *args, stdout=out, stderr=StringIO())
    return json.loads(out.getvalue())


def preview_error(*args):
    with pytest.raises(CommandError) as caught:
        call_command("price_preview", *args, stdout=StringIO(), stderr=StringIO())
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_the_plans_md_example(plan_file):
    assert preview("--plan-file", plan_file, "--usage", "api_calls=12000", *NOVEMBER) == PLANS_MD_OUTPUT


def test_several_quantities_after_one_flag_or_repeated(plan_file):
    one_flag = preview("--plan-file", plan_file, "--usage", "api_calls=12000", "data_out_mb=2.5", *NOVEMBER)
    repeated = preview("--plan-file", plan_file, "--usage", "api_calls=12000", "--usage", "data_out_mb=2.5", *NOVEMBER)
    assert one_flag == repeated
    assert one_flag["lines"][2] == {"type": "usage", "metric": "data_out_mb", "model": "per_unit",
                                    "quantity": "2.5", "amount": "0.23"}
    assert one_flag["total"] == "100.00"


def test_metrics_without_usage_have_quantity_zero(plan_file):
    doc = preview("--plan-file", plan_file, *NOVEMBER)
    assert [(line.get("quantity"), line["amount"]) for line in doc["lines"]] == [
        (None, "49.00"), ("0", "0.00"), ("0", "0.00"), (None, "51.00")]


def test_default_period_is_the_current_calendar_month(plan_file):
    before = datetime.now(UTC)
    doc = preview("--plan-file", plan_file)
    after = datetime.now(UTC)
    starts = {f"{moment.year:04d}-{moment.month:02d}-01T00:00:00Z" for moment in (before, after)}
    assert doc["period_start"] in starts
    assert doc["lines"][0]["amount"] == "49.00"  # whole: no proration


def test_period_start_alone_spans_one_interval(plan_file):
    doc = preview("--plan-file", plan_file, "--period-start", "2026-11-01")
    assert (doc["period_start"], doc["period_end"]) == ("2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z")


def test_subscription_start_prorates_base_fee_and_commitment(plan_file):
    doc = preview("--plan-file", plan_file, "--usage", "api_calls=12000", "--subscription-start",
                  "2026-11-16T00:00:00Z", *NOVEMBER)
    assert [line["amount"] for line in doc["lines"]] == ["24.50", "1.00", "0.00", "24.50"]
    assert doc["total"] == "50.00"


def test_no_trial_is_applied(plan_file):
    # the plan has a 14-day trial; the preview prices the period as if none applied
    doc = preview("--plan-file", plan_file, "--subscription-start", "2026-11-01T00:00:00Z", *NOVEMBER)
    assert doc["lines"][0]["amount"] == "49.00"


def test_import_file_with_several_plans(tmp_path):
    team = {**PRO, "code": "team", "name": "Team", "base_fee": "99.00", "minimum_commitment": None}
    path = tmp_path / "plans.json"
    path.write_text(json.dumps({"metrics": [{"code": "api_calls", "aggregation": "count"}], "plans": [PRO, team]}))
    doc = preview("--plan-file", str(path), "--plan", "team", *NOVEMBER)
    assert doc["plan"] == "team" and doc["total"] == "99.00"
    assert preview_error("--plan-file", str(path), *NOVEMBER) == (
        f"plan file '{path}' holds 2 plans (pro, team): choose one with --plan")
    assert preview_error("--plan-file", str(path), "--plan", "gold") == (
        f"plan file '{path}' has no plan 'gold' (its plans: pro, team)")


def test_zero_decimal_currency(tmp_path):
    path = tmp_path / "yen.json"
    path.write_text(json.dumps({"code": "tokyo", "name": "Tokyo", "currency": "JPY", "interval": "month",
                                "base_fee": "1000", "charges": [
                                    {"metric": "api_calls", "model": "per_unit", "unit_amount": "0.5"}]}))
    doc = preview("--plan-file", str(path), "--usage", "api_calls=3", *NOVEMBER)
    assert [line["amount"] for line in doc["lines"]] == ["1000", "2"]
    assert doc["total"] == "1002"


# --- errors: one line naming the problem --------------------------------------------------------------


def test_a_plan_file_that_does_not_validate(tmp_path):
    bad = json.loads(json.dumps(PRO))
    bad["charges"][0]["tiers"][1]["up_to"] = 5000
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    assert preview_error("--plan-file", str(path)) == (
        f"plan file '{path}' does not validate: plan 'pro', charge 1 (api_calls), field 'tiers[1].up_to': "
        "must be greater than the previous tier's up_to (10000)")


def test_invalid_json_and_missing_file(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"code": ')
    assert "invalid JSON" in preview_error("--plan-file", str(path))
    assert "cannot read plan file" in preview_error("--plan-file", str(tmp_path / "none.json"))


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        ("bandwidth=5", "--usage 'bandwidth=5': no charge of plan 'pro' uses metric 'bandwidth' "
                        "(its metrics: api_calls, data_out_mb)"),
        ("api_calls=lots", "--usage 'api_calls=lots': the quantity 'lots' is not a decimal number"),
        ("api_calls=-1", "--usage 'api_calls=-1': the quantity must be a finite decimal, 0 or more"),
        ("api_calls=NaN", "--usage 'api_calls=NaN': the quantity must be a finite decimal, 0 or more"),
        ("api_calls", "--usage 'api_calls': expected CODE=QTY, e.g. api_calls=12000"),
    ],
)
def test_bad_usage(plan_file, usage, expected):
    assert preview_error("--plan-file", plan_file, "--usage", usage) == expected


def test_bad_periods(plan_file):
    assert "is not an ISO 8601 date" in preview_error("--plan-file", plan_file, "--period-start", "November")
    assert "must be after --period-start" in preview_error(
        "--plan-file", plan_file, "--period-start", "2026-12-01", "--period-end", "2026-11-01")
    assert "--period-end needs --period-start" in preview_error("--plan-file", plan_file, "--period-end", "2026-12-01")
    assert "is not before the period's end" in preview_error(
        "--plan-file", plan_file, "--subscription-start", "2027-01-01", *NOVEMBER)


# --- the real command line, on an empty database --------------------------------------------------------


def run_manage(*args, tmp_path):
    if not (ROOT / "manage.py").exists():
        pytest.skip("manage.py is not there yet")
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST")}
    env["DJANGO_SETTINGS_MODULE"] = "portal.settings"
    env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'empty.sqlite3'}"  # never migrated: empty
    return subprocess.run([sys.executable, "manage.py", "price_preview", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def test_manage_py_price_preview_with_an_empty_database(plan_file, tmp_path):
    result = run_manage("--plan-file", plan_file, "--usage", "api_calls=12000", *NOVEMBER, tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == PLANS_MD_OUTPUT


def test_manage_py_price_preview_error_is_one_line_on_stderr(plan_file, tmp_path):
    result = run_manage("--plan-file", plan_file, "--usage", "bandwidth=5", tmp_path=tmp_path)
    assert result.returncode != 0
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "no charge of plan 'pro' uses metric 'bandwidth'" in lines[0]
