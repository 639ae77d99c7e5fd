"""Every field of a plan or metric document is bounded before the database sees it, with a clear message.

Through the entry points people use: `import_plans` with a file, the admin's plan and metric forms, the
staff API. Out of bounds is refused naming the field, and nothing is stored; the largest accepted values
are stored exactly and re-import unchanged, on SQLite and on PostgreSQL alike (CI runs this file on
PostgreSQL, where an unbounded value was a DataError, while SQLite silently accepted or rounded it).
"""

import copy
import json
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from tenants.models import Metric, Plan, PlanVersion
from tenants.tests.factories import SAMPLE_FILE, import_sample_plans

pytestmark = pytest.mark.django_db


def sample(**plan_changes):
    doc = copy.deepcopy(SAMPLE_FILE)
    doc["plans"][0].update(plan_changes)
    return doc


def with_charge(charge):
    doc = copy.deepcopy(SAMPLE_FILE)
    doc["plans"][0]["charges"][1] = {"metric": "data_out_mb", **charge}
    return doc


def with_metric(**changes):
    doc = copy.deepcopy(SAMPLE_FILE)
    doc["metrics"][1].update(changes)
    return doc


def import_file(tmp_path, text):
    path = tmp_path / "plans.json"
    path.write_text(text) if isinstance(text, str) else path.write_bytes(text)
    call_command("import_plans", str(path))


def nothing_stored():
    return not Plan.objects.exists() and not Metric.objects.exists()


TOO_LONG_PREFIX = "/" + "a" * 200
OUT_OF_BOUNDS = [
    (sample(trial_days=1_000_000_000_000),
     "plan 'pro', field 'trial_days': must be at most 3650 days (ten years), got 1000000000000"),
    (sample(name="P" * 300), "plan 'pro', field 'name': must be at most 200 characters, got 300"),
    (sample(name="Pro\u0000"), "plan 'pro', field 'name': must not contain control characters"),
    (sample(base_fee="1000000000000"),
     "plan 'pro', field 'base_fee': is too large (at most 12 integer digits, below 1000000000000)"),
    (sample(base_fee="49.0000001"), "plan 'pro', field 'base_fee': has more than 6 decimal places"),
    (sample(minimum_commitment="123456789012.3456"),
     "plan 'pro', field 'minimum_commitment': has more than 15 significant digits"),
    (sample(charges=[{"metric": "api_calls", "model": "per_unit", "unit_amount": "1"}] * 101),
     "plan 'pro', field 'charges': must be at most 100 charges, got 101"),
    (with_charge({"model": "per_unit", "unit_amount": "1e15"}),
     "plan 'pro', charge 2 (data_out_mb), field 'unit_amount': is too large (at most 12 integer digits"),
    (with_charge({"model": "package", "package_size": "1e18", "package_amount": "1"}),
     "plan 'pro', charge 2 (data_out_mb), field 'package_size': is too large (at most 18 integer digits"),
    (with_charge({"model": "package", "package_size": 10, "package_amount": "99999999999999"}),
     "plan 'pro', charge 2 (data_out_mb), field 'package_amount': is too large"),
    (with_charge({"model": "graduated", "tiers": [{"up_to": i + 1, "unit_amount": "1"} for i in range(100)]
                  + [{"up_to": None, "unit_amount": "1"}]}),
     "plan 'pro', charge 2 (data_out_mb), field 'tiers': must be at most 100 tiers, got 101"),
    (with_charge({"model": "custom", "rule": "capped_per_unit", "params": {"unit_amount": "1", "cap": "1e20"}}),
     "plan 'pro', charge 2 (data_out_mb), field 'params.cap': is too large"),
    (with_charge({"model": "custom", "rule": "capped_per_unit",
                  "params": {"unit_amount": "1", "cap": "5", "note\u0000": "x"}}),
     "plan 'pro', charge 2 (data_out_mb), field 'params': must not have a key with the NUL character"),
    (with_metric(unit="M" * 41), "metric 'data_out_mb', field 'unit': must be at most 40 characters, got 41"),
    (with_metric(divisor="0.0000001"), "metric 'data_out_mb', field 'divisor': has more than 6 decimal places"),
    (with_metric(divisor="999999999999999999"),
     "metric 'data_out_mb', field 'divisor': has more than 15 significant digits"),
    (with_metric(field="bytes"), "metric 'data_out_mb', field 'field': must be a column of the access-log table"),
    (with_metric(field="ip"), "metric 'data_out_mb', field 'field': must be a numeric column (status, "
                              "response_length) for aggregation 'sum', got 'ip'"),
    (with_metric(filters={"resource_path_prefix": [TOO_LONG_PREFIX]}),
     "metric 'data_out_mb', field 'filters.resource_path_prefix[0]': must be at most 200 characters, got 201"),
    (with_metric(filters={"http_method": ["GET"] * 51}),
     "metric 'data_out_mb', field 'filters.http_method': must have at most 50 values, got 51"),
]


@pytest.mark.parametrize(("document", "message"), OUT_OF_BOUNDS, ids=range(len(OUT_OF_BOUNDS)))
def test_import_plans_refuses_a_value_out_of_bounds_and_names_it(tmp_path, capsys, document, message):
    with pytest.raises(CommandError, match="was not imported"):
        import_file(tmp_path, json.dumps(document))
    assert message in capsys.readouterr().err
    assert nothing_stored()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[" * 100_000 + "]" * 100_000, "the document nests lists and objects more than 20 levels deep"),
        ('{"plans": [{"charges": [{"params": ' + "[" * 30 + "]" * 30 + "}]}]}",
         "the document nests lists and objects more than 20 levels deep"),
        ('{"code": "p", "currency": "USD", "interval": "month", "trial_days": 1' + "0" * 5000 + "}",
         "invalid JSON: Exceeds the limit (4300 digits) for integer string conversion"),
        (" " * 5_000_001, "the document is larger than 5,000,000 bytes"),
        (b'{"code": "\xc3\x28"}', "invalid JSON: not UTF-8 text"),
    ],
    ids=["100000-deep", "params-30-deep", "5000-digits", "too-large", "not-utf8"],
)
def test_import_plans_refuses_a_file_that_would_crash_a_parser(tmp_path, text, message):
    with pytest.raises(CommandError) as caught:
        import_file(tmp_path, text)
    assert message in str(caught.value)
    assert nothing_stored()


LARGEST = {
    "metrics": [
        {"code": "m" * 64, "name": "N" * 200, "aggregation": "max", "field": "response_length",
         "divisor": "999999999.999999", "unit": "µ" * 40,
         "filters": {"resource_path_prefix": ["/" + "p" * 199], "status": [f"{c}" for c in range(200, 250)]}},
    ],
    "plans": [
        {"code": "p" * 64, "name": "Ωmega " * 33 + "Ωm", "currency": "USD", "interval": "year",
         "base_fee": "999999999999.999", "trial_days": 3650, "minimum_commitment": "999999999.999999",
         "charges": [{"metric": "m" * 64, "model": "graduated",
                      "tiers": [{"up_to": str(10 ** 17 * (i + 1)), "unit_amount": "999999999999.999",
                                 "flat_amount": "0.000001"} for i in range(8)]
                      + [{"up_to": None, "unit_amount": "0.000000000001"}]}]},
    ],
}


def test_the_largest_accepted_values_are_stored_exactly_and_reimport_unchanged(tmp_path, capsys):
    import_file(tmp_path, json.dumps(LARGEST))
    version = PlanVersion.objects.get(plan__code="p" * 64)
    assert (version.base_fee, version.minimum_commitment, version.trial_days) == (
        Decimal("999999999999.999"), Decimal("999999999.999999"), 3650)
    assert version.name == LARGEST["plans"][0]["name"] and len(version.name) == 200
    metric = Metric.objects.get(code="m" * 64)
    assert (metric.divisor, metric.unit, metric.name) == (Decimal("999999999.999999"), "µ" * 40, "N" * 200)
    capsys.readouterr()
    import_file(tmp_path, json.dumps(LARGEST))
    assert capsys.readouterr().out.strip().endswith("nothing changed")


@pytest.fixture
def staff_client(client, django_user_model):
    user = django_user_model.objects.create_superuser("staff", "staff@example.com", "pw-for-tests-1")
    client.force_login(user)
    return client


@pytest.mark.parametrize(
    ("document_text", "message"),
    [
        (json.dumps(dict(SAMPLE_FILE["plans"][1], code="new", trial_days=1_000_000_000_000)),
         "must be at most 3650 days (ten years), got 1000000000000"),
        (json.dumps(dict(SAMPLE_FILE["plans"][1], code="new", name="x" * 300)), "must be at most 200 characters"),
        ("[" * 100_000 + "]" * 100_000, "nests lists and objects more than 20 levels deep"),
        ('{"code": "new", "trial_days": 1' + "0" * 5000 + "}", "Exceeds the limit (4300 digits)"),
    ],
    ids=["trial-days", "name", "deep", "digits"],
)
def test_the_admin_plan_form_shows_the_bound_as_a_form_error(staff_client, document_text, message):
    import_sample_plans()
    response = staff_client.post(reverse("admin:tenants_plan_add"), {"document": document_text, "is_public": "on"})
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not Plan.objects.filter(code="new").exists()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"filters": "[" * 100_000 + "]" * 100_000}, "nested more than 32 levels deep"),
        ({"filters": '{"status": [1' + "0" * 5000 + "]}"}, "Exceeds the limit (4300 digits)"),
        ({"filters": json.dumps({"resource_path_prefix": [TOO_LONG_PREFIX]})}, "must be at most 200 characters"),
        ({"divisor": "999999999999999999"}, "has more than 15 significant digits"),
        ({"field": "bytes"}, "must be a column of the access-log table"),
    ],
    ids=["deep-filters", "digits", "long-prefix", "divisor", "column"],
)
def test_the_admin_metric_form_shows_the_bound_as_a_form_error(staff_client, changes, message):
    form = {"code": "out", "name": "Out", "aggregation": "sum", "field": "response_length", "filters": "{}",
            "divisor": "1", "unit": "B", **changes}
    response = staff_client.post(reverse("admin:tenants_metric_add"), form)
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not Metric.objects.filter(code="out").exists()


def test_the_staff_api_refuses_a_plan_out_of_bounds_with_400(client, django_user_model):
    import_sample_plans()
    staff = django_user_model.objects.create_user("staff", "staff@example.com", "pw-for-tests-1", is_staff=True)
    client.force_login(staff)
    document = dict(SAMPLE_FILE["plans"][1], code="new", trial_days=1_000_000_000_000)
    response = client.post("/api/v1/admin/plans/", {"document": document}, content_type="application/json")
    assert response.status_code == 400
    assert "plan 'new', field 'trial_days': must be at most 3650 days" in json.dumps(response.json())
    assert not Plan.objects.filter(code="new").exists()
