"""Custom pricing rules: the shipped capped_per_unit rule, and rules registered in settings."""

import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from metering.pricing import (
    DEFAULT_RULES,
    DocumentError,
    UnknownRuleError,
    capped_per_unit,
    get_rule,
    known_rules,
    parse_plan,
    price_charge,
)

ROOT = Path(__file__).resolve().parents[2]
D = Decimal


def flat_ten(quantity, params, currency):
    """A test rule: 10 whatever the quantity."""
    return Decimal(10)


def capped(quantity, unit="0.001", cap="500.00"):
    plan = parse_plan({"code": "p", "currency": "USD", "interval": "month", "charges": [
        {"metric": "m", "model": "custom", "rule": "capped_per_unit", "params": {"unit_amount": unit, "cap": cap}}]})
    return price_charge(plan.charges[0], D(quantity), "USD")


@pytest.mark.parametrize(
    ("quantity", "expected"),
    [("0", "0.00"), ("1", "0.00"), ("5", "0.01"), ("123456", "123.46"), ("500000", "500.00"),
     ("500001", "500.00"), ("10000000", "500.00"), ("499999.5", "500.00")],
)
def test_capped_per_unit(quantity, expected):
    assert capped(quantity) == D(expected)


def test_capped_per_unit_called_directly():
    assert capped_per_unit(D(3), {"unit_amount": "2.5", "cap": "100"}, "USD") == D("7.5")
    assert capped_per_unit(D(300), {"unit_amount": "2.5", "cap": "100"}, "USD") == D("100")


def test_capped_per_unit_params_are_validated_at_import():
    with pytest.raises(DocumentError) as caught:
        parse_plan({"code": "p", "currency": "USD", "interval": "month", "charges": [
            {"metric": "m", "model": "custom", "rule": "capped_per_unit",
             "params": {"unit_amount": "x", "limit": "5"}}]})
    assert caught.value.errors == [
        "plan 'p', charge 1 (m), field 'params.unit_amount': must be a decimal string, got 'x'",
        "plan 'p', charge 1 (m), field 'params.cap': is required",
        "plan 'p', charge 1 (m), field 'params.limit': is not a parameter of rule 'capped_per_unit'",
    ]


def test_default_mapping():
    assert DEFAULT_RULES == {"capped_per_unit": "metering.pricing.rules.capped_per_unit"}
    assert get_rule("capped_per_unit") is capped_per_unit
    with pytest.raises(UnknownRuleError, match="unknown custom rule 'nope'"):
        get_rule("nope")


def test_rules_come_from_settings(settings):
    doc = {"code": "p", "currency": "USD", "interval": "month",
           "charges": [{"metric": "m", "model": "custom", "rule": "flat_ten"}]}
    with pytest.raises(DocumentError, match="unknown custom rule 'flat_ten'"):
        parse_plan(doc)
    settings.PRICING_CUSTOM_RULES = {**DEFAULT_RULES, "flat_ten": f"{__name__}.flat_ten"}
    assert known_rules() == {"capped_per_unit", "flat_ten"}
    plan = parse_plan(doc)
    assert price_charge(plan.charges[0], D(12345), "USD") == D("10.00")


def test_a_rule_path_that_does_not_import_is_a_document_error(settings):
    settings.PRICING_CUSTOM_RULES = {"broken": "metering.no_such_module.rule"}
    with pytest.raises(DocumentError, match=r"field 'rule': custom rule 'broken' cannot be loaded"):
        parse_plan({"code": "p", "currency": "USD", "interval": "month",
                    "charges": [{"metric": "m", "model": "custom", "rule": "broken"}]})


def _run(code: str) -> str:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_engine_needs_no_django():
    out = _run(
        "import sys\n"
        "from decimal import Decimal\n"
        "from datetime import datetime, UTC\n"
        "from metering.pricing import parse_plan, price_plan\n"
        "plan = parse_plan({'code': 'p', 'currency': 'USD', 'interval': 'month', 'base_fee': '5',\n"
        "    'charges': [{'metric': 'm', 'model': 'per_unit', 'unit_amount': '1'}]})\n"
        "priced = price_plan(plan, {'m': Decimal(2)}, period_start=datetime(2026, 11, 1, tzinfo=UTC),\n"
        "    period_end=datetime(2026, 12, 1, tzinfo=UTC))\n"
        "print(priced.total, 'django' in sys.modules)\n"
    )
    assert out == "7.00 False"


def test_rules_fall_back_to_the_default_without_django_settings():
    out = _run(
        "from metering.pricing import known_rules\n"
        "print(sorted(known_rules()))\n"
        "import sys\n"
        "sys.modules['django'] = None\n"  # as if Django were not installed
        "sys.modules['django.conf'] = None\n"
        "print(sorted(known_rules()))\n"
    )
    assert out.splitlines() == ["['capped_per_unit']", "['capped_per_unit']"]
