"""Plan and metric documents: validation messages name the plan, the charge and the field; export re-imports."""

import copy
import json
from decimal import Decimal

import pytest

from metering.pricing import (
    DocumentError,
    MetricSpec,
    Tier,
    loads_document,
    metric_to_document,
    parse_metric,
    parse_plan,
    parse_plan_file,
    plan_to_document,
)

D = Decimal

PRO = {
    "code": "pro", "name": "Pro", "currency": "USD", "interval": "month",
    "base_fee": "49.00", "trial_days": 14, "minimum_commitment": "100.00",
    "charges": [
        {"metric": "data_out_mb", "model": "per_unit", "unit_amount": "0.09"},
        {"metric": "api_calls", "model": "graduated",
         "tiers": [{"up_to": 10000, "unit_amount": "0"},
                   {"up_to": 1000000, "unit_amount": "0.0005"},
                   {"up_to": None, "unit_amount": "0.0002", "flat_amount": "25.00"}]},
    ],
}

METRICS = [
    {"code": "api_calls", "name": "API calls", "aggregation": "count",
     "filters": {"status": ["2xx"], "http_method": ["GET", "POST"], "resource_path_prefix": ["/random"]}},
    {"code": "data_out_mb", "name": "Data out", "aggregation": "sum", "field": "response_length",
     "divisor": "1000000", "unit": "MB"},
    {"code": "active_ips", "name": "Active client IPs", "aggregation": "unique_count", "field": "ip"},
]


def pro(**changes):
    doc = copy.deepcopy(PRO)
    doc.update(changes)
    return doc


def errors_of(doc, **kwargs):
    with pytest.raises(DocumentError) as caught:
        parse_plan(doc, **kwargs)
    return caught.value.errors


def with_api_calls(**charge):
    doc = pro()
    doc["charges"][1] = {"metric": "api_calls", **charge}
    return doc


# --- valid documents ----------------------------------------------------------------------------------


def test_parse_the_plans_md_plan():
    plan = parse_plan(PRO)
    assert (plan.code, plan.name, plan.currency, plan.interval) == ("pro", "Pro", "USD", "month")
    assert (plan.base_fee, plan.trial_days, plan.minimum_commitment) == (D("49.00"), 14, D("100.00"))
    assert plan.metric_codes == ("data_out_mb", "api_calls")
    graduated = plan.charge_for("api_calls")
    assert graduated.tiers == (Tier(D(10000), D(0)), Tier(D(1000000), D("0.0005")), Tier(None, D("0.0002"), D(25)))
    assert plan.charge_for("data_out_mb").unit_amount == D("0.09")
    assert plan.charge_for("nope") is None


def test_optional_fields_default():
    plan = parse_plan({"code": "basic", "currency": "eur", "interval": "year", "charges": []})
    assert (plan.name, plan.currency, plan.base_fee, plan.trial_days, plan.minimum_commitment) == (
        "basic", "EUR", D(0), 0, None)


def test_parse_the_plans_md_metrics():
    api, data, ips = (parse_metric(doc) for doc in METRICS)
    assert api == MetricSpec(code="api_calls", name="API calls", aggregation="count", field=None,
                             filters={"status": ("2xx",), "http_method": ("GET", "POST"),
                                      "resource_path_prefix": ("/random",)})
    assert (data.field, data.divisor, data.unit) == ("response_length", D(1000000), "MB")
    assert (ips.aggregation, ips.field, ips.divisor) == ("unique_count", "ip", D(1))


def test_json_numbers_with_a_fraction_are_read_as_decimals():
    text = json.dumps(pro()).replace('"0.09"', "0.09")
    plan = parse_plan(loads_document(text))
    assert plan.charge_for("data_out_mb").unit_amount == D("0.09")


# --- export re-imports to the same state --------------------------------------------------------------


def test_plan_round_trip():
    plan = parse_plan(PRO)
    doc = plan_to_document(plan)
    assert parse_plan(json.loads(json.dumps(doc))) == plan
    assert plan_to_document(parse_plan(doc)) == doc
    assert doc["charges"][1]["tiers"][0] == {"up_to": 10000, "unit_amount": "0"}
    assert doc["charges"][1]["tiers"][2] == {"up_to": None, "unit_amount": "0.0002", "flat_amount": "25.00"}


def test_round_trip_of_every_model():
    doc = {
        "code": "all", "name": "All models", "currency": "JPY", "interval": "year", "base_fee": "12000",
        "trial_days": 0,
        "charges": [
            {"metric": "a", "model": "per_unit", "unit_amount": "0.5", "transform": {"divide_by": 1000, "round": "down"}},
            {"metric": "b", "model": "package", "package_size": 50, "package_amount": "200", "free_units": "10.5"},
            {"metric": "c", "model": "volume", "tiers": [{"up_to": "2.5", "unit_amount": "3", "flat_amount": "1"},
                                                          {"up_to": None, "unit_amount": "2"}]},
            {"metric": "d", "model": "custom", "rule": "capped_per_unit", "params": {"unit_amount": "0.1", "cap": "500"}},
        ],
    }
    plan = parse_plan(doc)
    assert plan_to_document(plan) == doc
    assert parse_plan(plan_to_document(plan)) == plan


def test_metric_round_trip():
    for doc in METRICS:
        spec = parse_metric(doc)
        assert parse_metric(metric_to_document(spec)) == spec
        assert metric_to_document(spec) == doc


def test_import_file_round_trip():
    metrics, plans = parse_plan_file({"metrics": METRICS, "plans": [PRO]})
    again = parse_plan_file({"metrics": [metric_to_document(m) for m in metrics],
                             "plans": [plan_to_document(p) for p in plans]})
    assert again == (metrics, plans)


# --- the messages -------------------------------------------------------------------------------------


def test_tiers_strictly_increasing_the_issue_s_own_message():
    doc = with_api_calls(model="graduated", tiers=[
        {"up_to": 10000, "unit_amount": "0"}, {"up_to": 10000, "unit_amount": "0.0005"},
        {"up_to": None, "unit_amount": "0.0002"}])
    assert errors_of(doc) == [
        "plan 'pro', charge 2 (api_calls), field 'tiers[1].up_to': "
        "must be greater than the previous tier's up_to (10000)"
    ]


@pytest.mark.parametrize(
    ("charge", "expected"),
    [
        ({"model": "graduated", "tiers": [{"up_to": 10, "unit_amount": "1"}]},
         "field 'tiers[0].up_to': the last tier must be unbounded (null), got 10"),
        ({"model": "volume", "tiers": [{"up_to": None, "unit_amount": "1"}, {"up_to": None, "unit_amount": "1"}]},
         "field 'tiers[0].up_to': only the last tier may be unbounded (null)"),
        ({"model": "volume", "tiers": []}, "field 'tiers': must be a non-empty list of tiers, got []"),
        ({"model": "graduated"}, "field 'tiers': is required: a list of tiers, the last with \"up_to\": null"),
        ({"model": "graduated", "tiers": [{"up_to": 0, "unit_amount": "1"}, {"up_to": None, "unit_amount": "1"}]},
         "field 'tiers[0].up_to': must be greater than 0, got 0"),
        ({"model": "graduated", "tiers": [{"up_to": None, "unit_amount": "-1"}]},
         "field 'tiers[0].unit_amount': must not be negative, got -1"),
        ({"model": "graduated", "tiers": [{"up_to": None, "unit_amount": "1", "flat_amount": "-5"}]},
         "field 'tiers[0].flat_amount': must not be negative, got -5"),
        ({"model": "graduated", "tiers": [{"up_to": None}]},
         "field 'tiers[0].unit_amount': is required (or give the tier a flat_amount)"),
        ({"model": "graduated", "tiers": [{"up_to": None, "unit_amount": "1", "price": "2"}]},
         "field 'tiers[0].price': is not a field of a tier"),
        ({"model": "per_unit"}, "field 'unit_amount': is required"),
        ({"model": "per_unit", "unit_amount": "-0.01"}, "field 'unit_amount': must not be negative, got -0.01"),
        ({"model": "per_unit", "unit_amount": 0.09},
         "field 'unit_amount': must be a decimal string such as \"0.09\", not a JSON float"),
        ({"model": "per_unit", "unit_amount": "abc"}, "field 'unit_amount': must be a decimal string, got 'abc'"),
        ({"model": "per_unit", "unit_amount": "NaN"}, "field 'unit_amount': must be a finite decimal, got 'NaN'"),
        ({"model": "per_unit", "unit_amount": "0.0000000000001"},
         "field 'unit_amount': has more than 12 decimal places"),
        ({"model": "per_unit", "unit_amount": "1", "transform": {"divide_by": 0, "round": "up"}},
         "field 'transform.divide_by': must be greater than 0, got 0"),
        ({"model": "per_unit", "unit_amount": "1", "transform": {"divide_by": 10, "round": "nearest"}},
         "field 'transform.round': must be one of up, down, got 'nearest'"),
        ({"model": "per_unit", "unit_amount": "1", "tiers": []},
         "field 'tiers': is not a field of a 'per_unit' charge"),
        ({"model": "package", "package_size": 0, "package_amount": "2"},
         "field 'package_size': must be greater than 0, got 0"),
        ({"model": "package", "package_size": 10, "package_amount": "2", "free_units": "-1"},
         "field 'free_units': must not be negative, got -1"),
        ({"model": "package", "package_size": 10}, "field 'package_amount': is required"),
        ({"model": "flat"}, "field 'model': must be one of per_unit, package, graduated, volume, custom, got 'flat'"),
        ({"model": "custom", "rule": "no_such_rule"},
         "field 'rule': unknown custom rule 'no_such_rule' (known rules: capped_per_unit)"),
        ({"model": "custom", "rule": "capped_per_unit", "params": {"unit_amount": "0.1"}},
         "field 'params.cap': is required"),
        ({"model": "custom", "rule": "capped_per_unit", "params": {"unit_amount": "0.1", "cap": "-1"}},
         "field 'params.cap': must be a non-negative decimal, got '-1'"),
    ],
)
def test_each_error_names_the_plan_the_charge_and_the_field(charge, expected):
    assert errors_of(with_api_calls(**charge)) == [f"plan 'pro', charge 2 (api_calls), {expected}"]


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"currency": "XYZ"}, "plan 'pro', field 'currency': unknown currency 'XYZ' (expected an ISO 4217 code such as 'USD')"),
        ({"currency": None}, "plan 'pro', field 'currency': is required (an ISO 4217 code such as 'USD')"),
        ({"interval": "week"}, "plan 'pro', field 'interval': must be one of month, year, got 'week'"),
        ({"base_fee": "-1"}, "plan 'pro', field 'base_fee': must not be negative, got -1"),
        ({"minimum_commitment": "x"}, "plan 'pro', field 'minimum_commitment': must be a decimal string, got 'x'"),
        ({"trial_days": -3}, "plan 'pro', field 'trial_days': must be a whole number of days, 0 or more, got -3"),
        ({"trial_days": "14"}, "plan 'pro', field 'trial_days': must be a whole number of days, 0 or more, got '14'"),
        ({"charges": {}}, "plan 'pro', field 'charges': must be a list of charges, got {}"),
        ({"price": "9"}, "plan 'pro', field 'price': is not a field of a plan"),
        ({"code": "has space"}, "plan 'has space', field 'code': must be 1 to 64 letters, digits, '_', '.' or '-', "
                                "starting with a letter or digit, got 'has space'"),
    ],
)
def test_plan_level_errors(changes, expected):
    assert errors_of(pro(**changes)) == [expected]


def test_one_charge_per_metric():
    doc = pro()
    doc["charges"].append({"metric": "data_out_mb", "model": "per_unit", "unit_amount": "1"})
    assert errors_of(doc) == [
        "plan 'pro', charge 3 (data_out_mb), field 'metric': "
        "the plan already has a charge for metric 'data_out_mb' (charge 1)"
    ]


def test_unknown_metric_when_metric_codes_are_given():
    assert errors_of(pro(), metric_codes=["api_calls"]) == [
        "plan 'pro', charge 1 (data_out_mb), field 'metric': "
        "unknown metric 'data_out_mb': define it in the same file or import it first"
    ]
    assert parse_plan(pro(), metric_codes=["api_calls", "data_out_mb"]).code == "pro"


def test_every_error_of_a_plan_is_reported_and_joined():
    doc = pro(currency="XYZ", base_fee="-1")
    doc["charges"][0]["unit_amount"] = "-2"
    with pytest.raises(DocumentError) as caught:
        parse_plan(doc)
    assert len(caught.value.errors) == 3
    assert str(caught.value) == "; ".join(caught.value.errors)
    assert "plan 'pro', charge 1 (data_out_mb), field 'unit_amount'" in str(caught.value)


def test_a_plan_without_a_code_is_named_by_its_position():
    with pytest.raises(DocumentError) as caught:
        parse_plan_file({"plans": [PRO, {"currency": "USD", "interval": "month"}]})
    assert caught.value.errors == ["plan #2, field 'code': is required"]


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        ({"code": "x", "aggregation": "avg"}, "metric 'x', field 'aggregation': must be one of count, sum, max, unique_count, latest, got 'avg'"),
        ({"code": "x", "aggregation": "sum"}, "metric 'x', field 'field': is required for aggregation 'sum'"),
        ({"code": "x", "aggregation": "count", "field": "ip"},
         "metric 'x', field 'field': must be absent for aggregation 'count' (it counts events)"),
        ({"code": "x", "aggregation": "count", "divisor": "0"}, "metric 'x', field 'divisor': must be greater than 0, got 0"),
        ({"code": "x", "aggregation": "count", "filters": {"status": ["200x"]}},
         "metric 'x', field 'filters.status[0]': must be a status class such as '2xx' or a code such as '429', got '200x'"),
        ({"code": "x", "aggregation": "count", "filters": {"http_method": ["FETCH"]}},
         "metric 'x', field 'filters.http_method[0]': must be an HTTP method "
         "(GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS, TRACE, CONNECT), got 'FETCH'"),
        ({"code": "x", "aggregation": "count", "filters": {"resource_path_prefix": ["api"]}},
         "metric 'x', field 'filters.resource_path_prefix[0]': must start with '/', got 'api'"),
        ({"code": "x", "aggregation": "count", "filters": {"tenant": ["a"]}},
         "metric 'x', field 'filters.tenant': is not a filter (filters are status, http_method, resource_path_prefix)"),
    ],
)
def test_metric_errors(doc, expected):
    with pytest.raises(DocumentError) as caught:
        parse_metric(doc)
    assert caught.value.errors == [expected]


def test_filters_are_normalized():
    spec = parse_metric({"code": "x", "aggregation": "count",
                         "filters": {"status": ["2XX", "429", "2xx"], "http_method": ["get"]}})
    assert spec.filters == {"status": ("2xx", "429"), "http_method": ("GET",)}


# --- files --------------------------------------------------------------------------------------------


def test_plan_file_with_one_plan():
    assert parse_plan_file(PRO) == ([], [parse_plan(PRO)])


def test_plan_file_collects_errors_from_every_plan_and_metric():
    bad_metric = {"code": "m", "aggregation": "sum"}
    second = pro(code="team", currency="XYZ")
    first = pro(interval="week")
    with pytest.raises(DocumentError) as caught:
        parse_plan_file({"metrics": METRICS + [bad_metric], "plans": [first, second]})
    assert caught.value.errors == [
        "metric 'm', field 'field': is required for aggregation 'sum'",
        "plan 'pro', field 'interval': must be one of month, year, got 'week'",
        "plan 'team', field 'currency': unknown currency 'XYZ' (expected an ISO 4217 code such as 'USD')",
    ]


def test_plan_file_duplicates_and_unknown_keys():
    with pytest.raises(DocumentError) as caught:
        parse_plan_file({"metrics": [METRICS[0], METRICS[0]], "plans": [PRO, PRO], "extra": []})
    assert caught.value.errors == [
        "file, field 'extra': is not a field of an import file (expected metrics and plans)",
        "metric 'api_calls', field 'code': the file defines this metric more than once",
        "plan 'pro', field 'code': the file defines this plan more than once",
    ]


def test_plan_file_metrics_must_exist_in_the_file_or_the_portal():
    only_api = {"metrics": [METRICS[0]], "plans": [PRO]}
    with pytest.raises(DocumentError, match="unknown metric 'data_out_mb'"):
        parse_plan_file(only_api, existing_metric_codes=[])
    metrics, plans = parse_plan_file(only_api, existing_metric_codes=["data_out_mb"])
    assert [m.code for m in metrics] == ["api_calls"] and plans[0].code == "pro"
    assert parse_plan_file(only_api)[1] == plans  # None: existence not checked (the preview)


def test_plan_file_must_be_an_object():
    with pytest.raises(DocumentError, match="must hold a JSON object"):
        parse_plan_file([PRO])


def test_loads_document_reports_bad_json():
    with pytest.raises(DocumentError, match=r"invalid JSON: Expecting value at line 1 column 10"):
        loads_document('{"code": }')
