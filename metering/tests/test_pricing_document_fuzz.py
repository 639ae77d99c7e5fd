"""Hypothesis over the plan-document parser: any input is a spec or a DocumentError, never a crash, and
whatever is accepted is within the documented bounds, round-trips, and is stored by the database as is.

The generated documents are plan-shaped, with each field either plausible (values around the bounds,
every model and option) or any JSON at all (huge integers, floats, NaN, nested lists and objects, odd
strings), so the parser's every branch sees bad input. The database test runs on SQLite and, in CI, on
PostgreSQL, where a value the parser let through too long or too precise was a DataError.
"""

import json
import unicodedata
from decimal import Decimal

import pytest
from django.db import transaction
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from metering.pricing.documents import (
    ACCESS_LOG_COLUMNS,
    MAX_DEPTH,
    MAX_NAME_LENGTH,
    MAX_SIGNIFICANT_DIGITS,
    MAX_TRIAL_DAYS,
    DocumentError,
    loads_document,
    nesting_depth,
    parse_metric,
    parse_plan,
    parse_plan_file,
    plan_to_document,
)
from tenants.models import Metric

METRICS = ("m1", "m2", "m3")

scalars = (
    st.none() | st.booleans() | st.integers() | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats() | st.decimals() | st.text(max_size=20)
    | st.sampled_from(["", " ", "\x00", "\ud800", "a\udfffb", "NaN", "-0", "1e999999", "0.0000000000001", "x" * 300])
)
any_json = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=15,
)
decimal_strings = st.one_of(
    st.decimals(min_value=0, max_value=10**13, places=6).map(str),
    st.decimals(allow_nan=False, allow_infinity=False).map(str),
    st.integers(min_value=0, max_value=10**20),
    st.sampled_from(["0", "1", "999999999999.999", "1000000000000", "123456789012345.6", "0.000001", "-1"]),
)


def maybe(plausible, wild=True):
    """Mostly a plausible value, sometimes (when wild) anything at all."""
    return st.one_of(plausible, plausible, plausible, any_json) if wild else plausible


@st.composite
def tiers(draw, wild=True):
    bounds = sorted(draw(st.sets(st.integers(min_value=1, max_value=10**17), max_size=4)))
    result = [{"up_to": up_to, "unit_amount": draw(maybe(decimal_strings, wild))} for up_to in bounds]
    result.append({"up_to": None, "unit_amount": draw(maybe(decimal_strings, wild))})
    if draw(st.booleans()):
        result[0]["flat_amount"] = draw(maybe(decimal_strings, wild))
    return draw(maybe(st.just(result), wild))


@st.composite
def charges(draw, metric, wild=True):
    model = draw(maybe(st.sampled_from(["per_unit", "package", "graduated", "volume", "custom"]), wild))
    charge = {"metric": metric, "model": model}
    if model == "per_unit":
        charge["unit_amount"] = draw(maybe(decimal_strings, wild))
        if draw(st.booleans()):
            charge["transform"] = draw(maybe(st.fixed_dictionaries(
                {"divide_by": maybe(decimal_strings, wild), "round": maybe(st.sampled_from(["up", "down"]), wild)}),
                wild))
    elif model == "package":
        charge.update(package_size=draw(maybe(decimal_strings, wild)),
                      package_amount=draw(maybe(decimal_strings, wild)), free_units=draw(maybe(decimal_strings, wild)))
    elif model in ("graduated", "volume"):
        charge["tiers"] = draw(tiers(wild))
    elif model == "custom":
        charge.update(rule=draw(maybe(st.just("capped_per_unit"), wild)), params=draw(maybe(st.fixed_dictionaries(
            {"unit_amount": maybe(decimal_strings, wild), "cap": maybe(decimal_strings, wild)}), wild)))
    return charge


@st.composite
def plans(draw, wild=True):
    """Plan-shaped documents; wild ones put any JSON in any field, tame ones only values around the bounds."""
    metrics = draw(st.lists(st.sampled_from(METRICS), unique=True, max_size=3))
    plan = {
        "code": draw(maybe(st.from_regex(r"[a-z][a-z0-9_-]{0,70}", fullmatch=True), wild)),
        "name": draw(maybe(st.text(min_size=1, max_size=210) | st.text(st.characters(categories=("Cs", "Cc", "Zs", "Ll")), max_size=5), wild)),
        "currency": draw(maybe(st.sampled_from(["USD", "EUR", "JPY", "KWD", "usd", "XYZ"]), wild)),
        "interval": draw(maybe(st.sampled_from(["month", "year"]), wild)),
        "base_fee": draw(maybe(decimal_strings, wild)),
        "trial_days": draw(maybe(st.integers(min_value=-1, max_value=10**13) | st.integers(0, MAX_TRIAL_DAYS), wild)),
        "minimum_commitment": draw(maybe(decimal_strings, wild)),
        "charges": [draw(charges(metric, wild)) for metric in metrics],
    }
    dropped = draw(st.sets(st.sampled_from(sorted(set(plan) - {"code", "currency", "interval"}) if not wild
                                           else sorted(plan))))
    return {key: value for key, value in plan.items() if key not in dropped}


metric_docs = st.fixed_dictionaries({
    "code": maybe(st.sampled_from(METRICS)),
    "name": maybe(st.text(max_size=210)),
    "aggregation": maybe(st.sampled_from(["count", "sum", "max", "unique_count"])),
}, optional={
    "field": maybe(st.sampled_from(ACCESS_LOG_COLUMNS)),
    "divisor": maybe(decimal_strings),
    "unit": maybe(st.text(max_size=45)),
    "filters": maybe(st.fixed_dictionaries({}, optional={
        "status": maybe(st.lists(st.sampled_from(["2xx", "429", "5xx", "600", "2XX"]), max_size=3)),
        "http_method": maybe(st.lists(st.sampled_from(["GET", "post", "BREW"]), max_size=3)),
        "resource_path_prefix": maybe(st.lists(st.text(max_size=210).map(lambda t: "/" + t), max_size=3)),
    })),
})


def digits(value: Decimal) -> int:
    return len(value.normalize().as_tuple().digits)


def assert_within_bounds(spec):
    assert 0 <= spec.trial_days <= MAX_TRIAL_DAYS
    assert 0 < len(spec.name) <= MAX_NAME_LENGTH
    assert not any(unicodedata.category(char) in ("Cc", "Cs") for char in spec.name)
    numbers = [spec.base_fee, spec.minimum_commitment or Decimal(0)]
    for charge in spec.charges:
        numbers += [charge.unit_amount or 0, charge.package_size or 0, charge.package_amount or 0, charge.free_units]
        numbers += [n for tier in charge.tiers for n in (tier.up_to or 0, tier.unit_amount, tier.flat_amount)]
    for number in numbers:
        assert Decimal(number).is_finite() and Decimal(number) >= 0 and digits(Decimal(number)) <= MAX_SIGNIFICANT_DIGITS
    assert spec.base_fee < 10**12 and (spec.minimum_commitment or 0) < 10**12


@settings(max_examples=200, deadline=None)
@given(doc=st.one_of(plans(), plans(wild=False), any_json))
def test_any_plan_document_is_a_spec_or_a_document_error(doc):
    try:
        spec = parse_plan(doc, metric_codes=METRICS)
    except DocumentError as exc:
        assert exc.errors and all(isinstance(error, str) and error for error in exc.errors)
        event("refused")
        return
    event("accepted")
    assert_within_bounds(spec)
    assert parse_plan(plan_to_document(spec), metric_codes=METRICS) == spec


@settings(max_examples=120, deadline=None)
@given(doc=st.one_of(metric_docs, any_json))
def test_any_metric_document_is_a_spec_or_a_document_error(doc):
    try:
        spec = parse_metric(doc)
    except DocumentError as exc:
        assert exc.errors
        event("refused")
        return
    event("accepted")
    assert spec.field is None or spec.field in ACCESS_LOG_COLUMNS
    assert digits(spec.divisor) <= MAX_SIGNIFICANT_DIGITS and spec.divisor > 0


@settings(max_examples=80, deadline=None)
@given(doc=st.one_of(st.fixed_dictionaries({"metrics": st.lists(metric_docs, max_size=3),
                                            "plans": st.lists(plans(), max_size=3)}), any_json))
def test_any_plans_file_is_specs_or_a_document_error(doc):
    try:
        parse_plan_file(doc, existing_metric_codes=METRICS)
    except DocumentError as exc:
        assert exc.errors


@settings(max_examples=150, deadline=None)
@given(text=st.one_of(st.text(max_size=200), st.binary(max_size=200),
                      plans().map(lambda doc: json.dumps(doc, default=str)),
                      st.integers(min_value=1, max_value=3000).map(lambda n: "[" * n + "]" * n),
                      st.integers(min_value=1, max_value=3000).map(lambda n: '{"a":' * n + "1" + "}" * n)))
def test_any_text_is_a_document_or_a_document_error(text):
    try:
        document = loads_document(text)
    except DocumentError as exc:
        assert exc.errors
        return
    assert nesting_depth(document) <= MAX_DEPTH


@pytest.mark.django_db
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=plans(wild=False))
def test_an_accepted_plan_is_stored_as_it_is_on_this_database(doc):
    from tenants.services.plans import plan_save

    for code in METRICS:
        Metric.objects.get_or_create(code=code, defaults={"name": code, "aggregation": "count"})
    try:
        spec = parse_plan(doc, metric_codes=METRICS)
    except DocumentError:
        event("refused")
        return
    event("accepted")
    with transaction.atomic():
        version, _ = plan_save(document=doc)
        version.refresh_from_db()
        assert version.document == plan_to_document(spec)
        assert (version.base_fee, version.trial_days, version.minimum_commitment) == (
            spec.base_fee, spec.trial_days, spec.minimum_commitment)
        assert version.to_spec() == spec
        transaction.set_rollback(True)
