"""The plan builder (/admin/plans/…) over HTTP: the form round-trips every plan document exactly, the plan
format's errors come back next to their fields, the simulator prices through the engine, and subscriptions
move to a version after a preview of their next invoice."""

import json
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metering.models import HourlyUsage
from metering.pricing import format_amount, parse_plan, plan_to_document, price_charge
from metering.services.billing.periods import price_subscription_period
from metering.tests.test_plans_doc import FILES
from portal.plans.forms import PlanBuilder, document_initial
from portal.tests.plan_forms import form_values
from tenants.models import Metric, Plan, PlanVersion, Subscription, SubscriptionChange
from tenants.services.plans import plan_save, plans_import
from tenants.services.subscriptions import subscription_create
from tenants.tests.factories import SAMPLE_FILE, TenantFactory

pytestmark = pytest.mark.django_db

DEMO_FILE = json.loads((__import__("pathlib").Path(__file__).resolve().parents[2]
                        / "tenants/fixtures/demo_plans.json").read_text())


def _files():
    """Every plan file of the docs' worked examples, the demo plans and the tests' sample plans."""
    return {**{name: json.loads(text) for name, text in FILES.items()}, "demo_plans.json": DEMO_FILE,
            "sample": SAMPLE_FILE}


@pytest.fixture
def staff(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("boss", "boss@example.com", "pw-for-tests-1"))
    return client


def _form_data(document: dict, *, code_fixed=None) -> dict:
    """The POST data of a page that shows `document` (the inputs as the builder renders them)."""
    plan, charges, tiers = document_initial(document)
    data = {"charges-TOTAL_FORMS": str(len(charges)), "charges-INITIAL_FORMS": "0",
            "charges-MIN_NUM_FORMS": "0", "charges-MAX_NUM_FORMS": "100"}
    data.update({k: ("" if v is None else str(v)) for k, v in plan.items() if not (code_fixed and k == "code")})
    data["is_public"] = "on"
    for i, charge in enumerate(charges):
        data.update({f"charges-{i}-{k}": v for k, v in charge.items()})
        rows = tiers[i]
        data.update({f"charges-{i}-tiers-TOTAL_FORMS": str(len(rows)), f"charges-{i}-tiers-INITIAL_FORMS": "0"})
        for j, row in enumerate(rows):
            data.update({f"charges-{i}-tiers-{j}-{k}": v for k, v in row.items()})
    return data


def _builder(code=None):
    return reverse("admin-plan-builder", args=[code]) if code else reverse("admin-plan-new")


# --- round trip ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(_files()))
def test_every_example_plan_round_trips_through_the_page_unchanged(staff, name):
    """JSON -> the builder page -> the values a browser sends back -> the same document: saving changes nothing."""
    plans_import(document=_files()[name])
    for plan in Plan.objects.all():
        version = plan.current_version
        page = staff.get(_builder(plan.code))
        assert page.status_code == 200
        data = form_values(page.content.decode(), "plan-builder")
        data["action"] = ["save"]
        response = staff.post(_builder(plan.code), data)
        assert response.status_code == 302, response.context["builder"].plan.errors
        assert plan.versions.count() == 1 and PlanVersion.objects.get(pk=version.pk).document == version.document
        builder = PlanBuilder({k: v[0] for k, v in data.items()} | {}, metric_codes=Metric.objects.values_list(
            "code", flat=True), code_fixed=plan.code)
        # (single-valued fields only: a plain dict works as the page's data)
        assert builder.is_valid() and builder.canonical == version.document


@pytest.mark.parametrize("name", sorted(_files()))
def test_every_example_plan_is_the_same_document_after_the_form(name):
    metrics, plans = _files()[name].get("metrics", []), _files()[name].get("plans", [])
    codes = [m["code"] for m in metrics] + ["api_calls", "data_out_mb"]
    for document in plans:
        canonical = plan_to_document(parse_plan(document))
        builder = PlanBuilder(_form_data(canonical), metric_codes=codes)
        assert builder.is_valid(), (builder.plan.errors, [f.errors for f in builder.charges])
        assert builder.canonical == canonical


_amount = st.decimals(min_value=0, max_value=Decimal("99999.999999"), places=6, allow_nan=False)
_price = st.decimals(min_value=0, max_value=Decimal("99.000000000001"), places=12, allow_nan=False)
_quantity = st.integers(min_value=1, max_value=10**12)


@st.composite
def _charges(draw):
    charges = []
    for metric in draw(st.lists(st.sampled_from(["calls", "bytes", "ips"]), unique=True, max_size=3)):
        model = draw(st.sampled_from(["per_unit", "package", "graduated", "volume", "custom"]))
        charge = {"metric": metric, "model": model}
        if model == "per_unit":
            charge["unit_amount"] = str(draw(_price))
            if draw(st.booleans()):
                charge["transform"] = {"divide_by": draw(_quantity), "round": draw(st.sampled_from(["up", "down"]))}
        elif model == "package":
            charge.update(package_size=draw(_quantity), package_amount=str(draw(_amount)))
            if draw(st.booleans()):
                charge["free_units"] = draw(_quantity)
        elif model == "custom":
            charge.update(rule="capped_per_unit", params={"unit_amount": str(draw(_price)), "cap": str(draw(_amount))})
        else:
            bounds = sorted(draw(st.sets(_quantity, max_size=4)))
            tiers = [{"up_to": b, "unit_amount": str(draw(_price))} for b in bounds]
            tiers.append({"up_to": None, "unit_amount": str(draw(_price))})
            for tier in tiers:
                if draw(st.booleans()):
                    tier["flat_amount"] = str(draw(_amount))
            charge["tiers"] = tiers
        charges.append(charge)
    return charges


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.fixed_dictionaries({
    "code": st.from_regex(r"\A[a-z][a-z0-9_.-]{0,20}\Z"), "name": st.text("abc XYZé", min_size=1, max_size=20).map(str.strip)
    .filter(bool), "currency": st.sampled_from(["USD", "JPY", "KWD", "EUR"]), "interval": st.sampled_from(["month", "year"]),
    "base_fee": _amount.map(str), "trial_days": st.integers(0, 3650),
}, optional={"minimum_commitment": _amount.map(str),
             "included_credit": st.integers(0, 10**8).map(str)}), _charges())
def test_any_plan_document_round_trips_through_the_form(plan, charges):
    canonical = plan_to_document(parse_plan({**plan, "charges": charges}))
    builder = PlanBuilder(_form_data(canonical), metric_codes=["calls", "bytes", "ips"])
    assert builder.is_valid(), (builder.plan.errors, [f.errors for f in builder.charges])
    assert builder.canonical == canonical


# --- saving -------------------------------------------------------------------------------------------


def _graduated_plan(code="metered", tiers=(("1000", "0", ""), ("10000", "0.01", "5.00"), ("", "0.005", ""))):
    return {"code": code, "name": "Metered", "currency": "USD", "interval": "month", "base_fee": "10.00",
            "trial_days": 0, "charges": [{"metric": "api_calls", "model": "graduated", "tiers": [
                {"up_to": u or None, "unit_amount": a, **({"flat_amount": f} if f else {})} for u, a, f in tiers]}]}


def test_a_new_plan_is_saved_from_the_form_as_its_first_version(staff):
    plans_import(document=SAMPLE_FILE)
    data = _form_data(_graduated_plan()) | {"action": "save"}
    response = staff.post(_builder(), data)
    assert response.status_code == 302 and response["Location"] == reverse("admin-plan-versions", args=["metered"])
    version = Plan.objects.get(code="metered").current_version
    assert version.version == 1 and version.document["charges"][0]["tiers"] == [
        {"up_to": 1000, "unit_amount": "0"}, {"up_to": 10000, "unit_amount": "0.01", "flat_amount": "5.00"},
        {"up_to": None, "unit_amount": "0.005"}]
    # The new plan's code is taken now: a second "new plan" with it is refused, next to the code.
    again = staff.post(_builder(), data)
    assert again.status_code == 200 and "exists" in str(again.context["builder"].plan.errors["code"])


def test_a_version_in_use_is_never_changed_saving_makes_a_new_one(staff):
    plans_import(document=SAMPLE_FILE)
    staff.post(_builder(), _form_data(_graduated_plan()) | {"action": "save"})
    first = Plan.objects.get(code="metered").current_version
    # Not used yet: edited in place.
    staff.post(_builder("metered"), _form_data(_graduated_plan() | {"base_fee": "12.00"}, code_fixed=True)
               | {"action": "save"})
    first.refresh_from_db()
    assert first.version == 1 and first.document["base_fee"] == "12.00"
    subscription_create(tenant=TenantFactory(), plan_version=first, started_at=datetime(2026, 10, 1, tzinfo=UTC))
    response = staff.post(_builder("metered"), _form_data(_graduated_plan() | {"base_fee": "15.00"}, code_fixed=True)
                          | {"action": "save"})
    assert response.status_code == 302
    first.refresh_from_db()
    assert first.document["base_fee"] == "12.00"  # the subscribers' version is untouched
    assert Plan.objects.get(code="metered").current_version.version == 2
    assert Plan.objects.get(code="metered").current_version.document["base_fee"] == "15.00"


def test_the_code_of_a_saved_plan_cannot_be_changed_by_the_form(staff):
    plans_import(document=SAMPLE_FILE)
    data = _form_data(plan_to_document(parse_plan(SAMPLE_FILE["plans"][1]))) | {"code": "other", "action": "save",
                                                                                  "name": "Renamed"}
    assert staff.post(_builder("starter"), data).status_code == 302
    assert not Plan.objects.filter(code="other").exists()
    assert Plan.objects.get(code="starter").name == "Renamed"


# --- errors next to their fields, never a 500 ----------------------------------------------------------


def _post_errors(staff, document_changes=(), data_changes=None, code=None):
    data = _form_data(_graduated_plan()) | (data_changes or {}) | {"action": "save"}
    response = staff.post(_builder(code), data)
    assert response.status_code == 200
    return response.context["builder"], response.content.decode()


def test_bad_numbers_are_errors_next_to_their_fields(staff):
    plans_import(document=SAMPLE_FILE)
    builder, html = _post_errors(staff, data_changes={
        "base_fee": "ten", "minimum_commitment": "-5", "trial_days": "x",
        "charges-0-tiers-1-unit_amount": "0.01.2", "charges-0-tiers-2-flat_amount": "1e400"})
    assert "whole number" in str(builder.plan.errors["trial_days"])
    assert not Plan.objects.filter(code="metered").exists()
    builder, html = _post_errors(staff, data_changes={
        "base_fee": "ten", "minimum_commitment": "-5", "included_credit": "0.001",
        "charges-0-tiers-1-unit_amount": "0.01.2", "charges-0-tiers-2-flat_amount": "1e400"})
    assert "decimal string" in str(builder.plan.errors["base_fee"])
    assert "minor units" in str(builder.plan.errors["included_credit"])
    assert "must not be negative" in str(builder.plan.errors["minimum_commitment"])
    tiers = builder.tiers[0].forms
    assert "decimal string" in str(tiers[1].errors["unit_amount"])
    assert "too large" in str(tiers[2].errors["flat_amount"])
    assert 'class="errorlist pb-errors"' in html and not Plan.objects.filter(code="metered").exists()


def test_unsorted_and_unbounded_tiers_are_errors_on_the_tier(staff):
    plans_import(document=SAMPLE_FILE)
    builder, _ = _post_errors(staff, data_changes={"charges-0-tiers-1-up_to": "500"})
    assert builder.tiers[0].forms[1].errors["up_to"] == ["must be greater than the previous tier's up_to (1000)"]
    builder, _ = _post_errors(staff, data_changes={"charges-0-tiers-0-up_to": ""})
    assert "only the last tier" in str(builder.tiers[0].forms[0].errors["up_to"])
    builder, _ = _post_errors(staff, data_changes={"charges-0-tiers-2-up_to": "99999"})
    assert "must be unbounded" in str(builder.tiers[0].forms[2].errors["up_to"])
    # All tiers removed: the charge says it needs them.
    builder, _ = _post_errors(staff, data_changes={f"charges-0-tiers-{i}-DELETE": "on" for i in range(3)})
    assert "tiers" in str(builder.charges.forms[0].non_field_errors())


def test_a_charge_model_s_own_fields_are_checked(staff):
    plans_import(document=SAMPLE_FILE)
    builder, _ = _post_errors(staff, data_changes={"charges-0-model": "package", "charges-0-package_size": "0",
                                                    "charges-0-package_amount": "abc"})
    form = builder.charges.forms[0]
    assert "greater than 0" in str(form.errors["package_size"]) and "decimal" in str(form.errors["package_amount"])
    builder, _ = _post_errors(staff, data_changes={"charges-0-model": "per_unit", "charges-0-unit_amount": "1",
                                                    "charges-0-transform_divide_by": "1000"})
    assert "required" in str(builder.charges.forms[0].errors["transform_round"])
    builder, _ = _post_errors(staff, data_changes={"charges-0-model": "custom", "charges-0-rule": "capped_per_unit",
                                                    "charges-0-params": '{"cap": 1.5}'})
    assert "params.unit_amount" in str(builder.charges.forms[0].errors["params"])
    builder, _ = _post_errors(staff, data_changes={"charges-0-model": "custom", "charges-0-rule": "capped_per_unit",
                                                    "charges-0-params": "[" * 5000})
    assert "JSON" in str(builder.charges.forms[0].errors["params"])


def test_two_charges_on_one_metric_are_refused_on_the_second(staff):
    plans_import(document=SAMPLE_FILE)
    data = {"charges-TOTAL_FORMS": "2", "charges-1-metric": "api_calls", "charges-1-model": "per_unit",
            "charges-1-unit_amount": "1", "charges-1-tiers-TOTAL_FORMS": "0", "charges-1-tiers-INITIAL_FORMS": "0"}
    builder, _ = _post_errors(staff, data_changes=data)
    assert "already has a charge" in str(builder.charges.forms[1].errors["metric"])


@pytest.mark.parametrize("changes", [
    {"charges-TOTAL_FORMS": "1000000000"},
    {"charges-TOTAL_FORMS": "many"},
    {"charges-0-tiers-TOTAL_FORMS": "99999999999999999999"},
    {"base_fee": "9" * 5000},
    {"trial_days": "9" * 5000},
    {"name": "x\x00y"},
    {"currency": "XXX"},
    {"charges-0-metric": "nope"},
])
def test_hostile_input_is_a_form_error_never_a_500(staff, changes):
    plans_import(document=SAMPLE_FILE)
    data = _form_data(_graduated_plan()) | changes | {"action": "simulate"}
    response = staff.post(_builder(), data)
    assert response.status_code == 200
    assert not Plan.objects.filter(code="metered").exists()


def test_a_pasted_document_fills_the_form_and_bad_ones_are_refused(staff):
    plans_import(document=SAMPLE_FILE)
    response = staff.post(_builder(), {"action": "load", "document": json.dumps(_graduated_plan())})
    assert response.status_code == 200 and response.context["import_error"] == ""
    data = form_values(response.content.decode(), "plan-builder") | {"action": ["save"]}
    assert staff.post(_builder(), data).status_code == 302
    assert Plan.objects.get(code="metered").current_version.document == plan_to_document(parse_plan(_graduated_plan()))
    for text, message in [("{", "Not valid JSON"), ("[" * 100_000, "Not valid JSON"), ("x" * 300_000, "longer than"),
                          ('{"charges": 5}', "list of charges"), ('{"charges": [{"tiers": [1]}]}', "list of charges"),
                          ("[]", "JSON object")]:
        response = staff.post(_builder(), {"action": "load", "document": text})
        assert response.status_code == 200 and message in response.context["import_error"], text[:20]
    other = staff.post(_builder("pro"), {"action": "load", "document": json.dumps(_graduated_plan())})
    assert "must be 'pro'" in other.context["import_error"]


def test_the_json_of_a_version_is_exported(staff):
    plans_import(document=SAMPLE_FILE)
    response = staff.get(_builder("pro"), {"format": "json"})
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    assert json.loads(response.content) == Plan.objects.get(code="pro").current_version.document


# --- the simulator ------------------------------------------------------------------------------------


def test_the_simulator_prices_the_form_with_a_tier_breakdown_beside_the_saved_version(staff):
    plans_import(document=SAMPLE_FILE)
    staff.post(_builder(), _form_data(_graduated_plan()) | {"action": "save"})
    draft = _graduated_plan(tiers=(("1000", "0", ""), ("10000", "0.02", "5.00"), ("", "0.005", "")))
    response = staff.post(_builder("metered"), _form_data(draft, code_fixed=True) | {
        "action": "simulate", "q-api_calls": "12500", "compare": "1"})
    assert response.status_code == 200
    saved_bill, form_bill = response.context["bills"]
    usage = next(line for line in form_bill["lines"] if line["type"] == "usage")
    # 1000 free, 9000 at 0.02 + 5.00 flat, 2500 at 0.005: 0 + 185.00 + 12.50.
    assert usage["amount"] == "197.50" and [t["amount"] for t in usage["tiers"]] == ["0.00", "185.00", "12.50"]
    assert [t["units"] for t in usage["tiers"]] == ["1000", "9000", "2500"]
    assert form_bill["total"] == "207.50"
    spec = Plan.objects.get(code="metered").current_version.to_spec()
    assert saved_bill["total"] == str(Decimal("10.00") + price_charge(spec.charges[0], Decimal(12500), "USD"))
    assert form_bill["difference"] == "+90.00"  # the form's 207.50 beside the saved version's 117.50
    assert Plan.objects.get(code="metered").versions.count() == 1  # simulating saves nothing
    html = response.content.decode()
    assert "Tier by tier" in html and "pb-document" in html


def test_quantities_that_are_not_numbers_are_errors_beside_them(staff):
    plans_import(document=SAMPLE_FILE)
    for bad in ("abc", "-1", "1e30", "NaN", "x" * 500):
        response = staff.post(_builder(), _form_data(_graduated_plan()) | {"action": "simulate", "q-api_calls": bad})
        assert response.status_code == 200 and response.context["bills"] == []
        assert response.context["simulation"].errors["api_calls"]


def test_the_simulator_takes_a_tenant_s_usage_of_a_past_month(staff):
    plans_import(document=SAMPLE_FILE)
    tenant = TenantFactory(slug="acme")
    metric = Metric.objects.get(code="api_calls")
    last_month = (datetime.now(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
                  ).replace(day=1)
    for hour in range(3):
        HourlyUsage.objects.create(tenant=tenant, metric=metric, hour=last_month + timedelta(hours=hour), value=5000)
    response = staff.post(_builder(), _form_data(_graduated_plan()) | {
        "action": "prefill", "sim_tenant": "acme", "sim_month": f"{last_month:%Y-%m}"})
    assert response.status_code == 200
    assert response.context["simulation"].values["api_calls"] == "15000"
    usage = next(line for line in response.context["bills"][0]["lines"] if line["type"] == "usage")
    assert usage["quantity"] == "15000" and usage["amount"] == "120.00"  # 9000 x 0.01 + 5.00 + 5000 x 0.005
    for tenant_slug, month, message in [("ghost", f"{last_month:%Y-%m}", "Choose a tenant"),
                                        ("acme", "2999-01", "past month"), ("acme", "nonsense", "such as")]:
        response = staff.post(_builder(), _form_data(_graduated_plan()) | {
            "action": "prefill", "sim_tenant": tenant_slug, "sim_month": month})
        assert response.status_code == 200 and message in response.context["simulation"].error


# --- versions and moves -------------------------------------------------------------------------------


@pytest.fixture
def two_versions():
    plans_import(document=SAMPLE_FILE)
    v1, _ = plan_save(document=_graduated_plan())
    start = datetime.now(UTC) - timedelta(days=40)
    subs = [subscription_create(tenant=TenantFactory(slug=slug), plan_version=v1, started_at=start, with_trial=False)
            for slug in ("alpha", "beta")]
    v2, outcome = plan_save(document=_graduated_plan() | {"base_fee": "20.00"})
    assert outcome == "new version 2"
    return v1, v2, subs


def test_the_versions_page_shows_which_subscriptions_are_on_which_version(staff, two_versions):
    response = staff.get(reverse("admin-plan-versions", args=["metered"]))
    assert response.status_code == 200
    rows = {row["version"].version: row["subscribers"] for row in response.context["rows"]}
    assert rows == {1: 2, 2: 0}
    assert [s.tenant.slug for s in response.context["subscriptions"]] == ["alpha", "beta"]


def test_two_versions_compared_for_the_same_quantities(staff, two_versions):
    response = staff.get(reverse("admin-plan-versions", args=["metered"]),
                         {"a": "1", "b": "2", "q-api_calls": "500", "compare": "1"})
    one, two = response.context["compare"]["bills"]
    assert (one["total"], two["total"], two["difference"]) == ("10.00", "20.00", "+10.00")
    tenant = two_versions[2][0].tenant
    last_month = (datetime.now(UTC).replace(day=1) - timedelta(days=1)).replace(day=1, hour=0, minute=0, second=0,
                                                                                  microsecond=0)
    HourlyUsage.objects.create(tenant=tenant, metric=Metric.objects.get(code="api_calls"), hour=last_month, value=2000)
    taken = staff.get(reverse("admin-plan-versions", args=["metered"]),
                      {"a": "1", "b": "2", "action": "prefill", "sim_tenant": tenant.slug, "sim_month": f"{last_month:%Y-%m}"})
    one, two = taken.context["compare"]["bills"]  # 1000 x 0.01 + 5.00 flat on each
    assert (one["total"], two["total"]) == ("25.00", "35.00")
    bad = staff.get(reverse("admin-plan-versions", args=["metered"]), {"a": "zz", "b": "9" * 40, "q-api_calls": "x",
                                                                       "compare": "1"})
    assert bad.status_code == 200 and bad.context["compare"]["bills"] == []


def test_moving_subscriptions_previews_their_next_invoice_then_moves_them(staff, two_versions):
    v1, v2, (alpha, beta) = two_versions
    at = datetime.now(UTC).replace(second=0, microsecond=0)
    month_start = at.replace(day=1, hour=0, minute=0)
    HourlyUsage.objects.create(tenant=alpha.tenant, metric=Metric.objects.get(code="api_calls"), hour=month_start,
                               value=5000)
    url = reverse("admin-plan-versions", args=["metered"])
    data = {"subscriptions": [alpha.pk], "to_version": "2", "at": f"{at:%Y-%m-%dT%H:%M}"}
    preview = staff.post(url, data | {"action": "preview"})
    assert preview.status_code == 200 and not SubscriptionChange.objects.exists()
    (item,) = preview.context["previews"]
    before, after = item["bills"]
    assert before["total"] == "55.00"  # 10.00 + 4000 x 0.01 + 5.00 flat
    # The base fee splits at the move: v1 until then, v2 after, each prorated.
    base_lines = [line for line in after["lines"] if line["type"] == "base_fee"]
    assert len(base_lines) == 2 and Decimal(after["total"]) > Decimal("10.00")
    assert "pb-confirm" in preview.content.decode()

    moved = staff.post(url, data | {"action": "move"})
    assert moved.status_code == 302
    change = SubscriptionChange.objects.get()
    assert (change.subscription_id, change.from_version, change.to_version, change.changed_at) == (alpha.pk, v1, v2, at)
    beta.refresh_from_db()
    assert beta.plan_version == v1
    # The preview was what billing now prices for that period, line by line.
    alpha = Subscription.objects.get(pk=alpha.pk)
    billed = price_subscription_period(alpha, *item["period"])
    assert [format_amount(line.amount, "USD") for line in billed.lines] == [line["amount"] for line in after["lines"]]
    assert format_amount(billed.total, "USD") == after["total"]


def test_a_move_one_subscription_refuses_moves_none(staff, two_versions):
    v1, v2, (alpha, beta) = two_versions
    url = reverse("admin-plan-versions", args=["metered"])
    too_early = (alpha.started_at - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    data = {"subscriptions": [alpha.pk, beta.pk], "to_version": "2", "at": too_early}
    preview = staff.post(url, data | {"action": "preview"})
    assert "before the subscription starts" in " ".join(preview.context["refusals"])
    assert "pb-confirm" not in preview.content.decode()
    response = staff.post(url, data | {"action": "move"})
    assert response.status_code == 200 and "before the subscription starts" in str(response.context["move_form"].errors)
    assert not SubscriptionChange.objects.exists()
    for bad in ({"at": "yesterday"}, {"at": "9999-12-31T23:59"}, {"at": "0001-01-01T00:00"}, {"to_version": "77"},
                {"subscriptions": ["x"]}, {"subscriptions": []}):
        response = staff.post(url, data | bad | {"action": "preview"})
        assert response.status_code == 200 and response.context["move_form"].errors


def test_a_version_in_another_currency_is_refused(staff, two_versions):
    v1, v2, (alpha, beta) = two_versions
    v3, _ = plan_save(document=_graduated_plan() | {"currency": "EUR"})
    url = reverse("admin-plan-versions", args=["metered"])
    data = {"subscriptions": [alpha.pk], "to_version": str(v3.version),
            "at": f"{datetime.now(UTC):%Y-%m-%dT%H:%M}"}
    assert "currency cannot change" in " ".join(staff.post(url, data | {"action": "preview"}).context["refusals"])
    response = staff.post(url, data | {"action": "move"})
    assert "currency cannot change" in str(response.context["move_form"].errors)
    assert not SubscriptionChange.objects.exists()


def test_staff_without_the_permissions_cannot_save_or_move(client, django_user_model, two_versions):
    v1, v2, (alpha, beta) = two_versions
    viewer = django_user_model.objects.create_user("viewer", "v@example.com", "pw-for-tests-1", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_plan"))
    client.force_login(viewer)
    assert client.get(_builder("metered")).status_code == 200
    assert client.post(_builder("metered"), _form_data(_graduated_plan(), code_fixed=True)
                       | {"action": "save"}).status_code == 403
    assert client.post(reverse("admin-plan-versions", args=["metered"]), {
        "subscriptions": [alpha.pk], "to_version": "2", "at": "2030-01-01T00:00", "action": "move"}).status_code == 403
    assert not SubscriptionChange.objects.exists()
    nobody = django_user_model.objects.create_user("nobody", "n@example.com", "pw-for-tests-1", is_staff=True)
    client.force_login(nobody)
    assert client.get(_builder("metered")).status_code == 403
    client.logout()
    assert client.get(_builder("metered")).status_code == 302  # to the admin's sign-in


def test_the_plan_admin_links_to_the_builder_and_the_versions(staff, two_versions):
    plan = Plan.objects.get(code="metered")
    page = staff.get(reverse("admin:tenants_plan_change", args=[plan.pk])).content.decode()
    assert reverse("admin-plan-builder", args=["metered"]) in page
    assert reverse("admin-plan-versions", args=["metered"]) in page
    assert reverse("admin-plan-new") in staff.get(reverse("admin:tenants_plan_changelist")).content.decode()


def test_a_request_of_more_fields_than_django_takes_is_a_400_not_a_500(staff):
    plans_import(document=SAMPLE_FILE)
    data = _form_data(_graduated_plan()) | {f"charges-0-tiers-{i}-up_to": str(i) for i in range(1200)}
    assert staff.post(_builder(), data | {"action": "simulate"}).status_code == 400


def test_the_move_preview_shows_the_invoice_s_tax_as_the_invoice_will(staff, two_versions):
    from tenants.models import TaxRate
    from tenants.services.coupons import tax_rate_save

    v1, v2, (alpha, beta) = two_versions
    tax_rate_save(tax_rate=TaxRate(name="VAT", percentage=Decimal("20"), is_default=True))
    at = datetime.now(UTC).replace(second=0, microsecond=0)
    response = staff.post(reverse("admin-plan-versions", args=["metered"]), {
        "subscriptions": [alpha.pk], "to_version": "2", "at": f"{at:%Y-%m-%dT%H:%M}", "action": "preview"})
    before, after = response.context["previews"][0]["bills"]
    assert (before["subtotal"], before["tax"], before["total"]) == ("10.00", ("VAT (20 %)", "2.00"), "12.00")
    tax = (Decimal(after["subtotal"]) * Decimal("0.2")).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    assert after["adjusted"] and Decimal(after["total"]) == Decimal(after["subtotal"]) + tax
    assert "Amount due" not in response.content.decode() and "VAT (20 %)" in response.content.decode()


def test_a_move_from_a_date_to_come_is_scheduled_shown_and_can_be_withdrawn(staff, two_versions):
    v1, v2, (alpha, beta) = two_versions
    url = reverse("admin-plan-versions", args=["metered"])
    later = (datetime.now(UTC) + timedelta(days=2)).replace(second=0, microsecond=0)
    data = {"subscriptions": [alpha.pk], "to_version": "2", "at": f"{later:%Y-%m-%dT%H:%M}"}
    assert staff.post(url, data | {"action": "preview"}).context["previews"]
    assert staff.post(url, data | {"action": "move"}).status_code == 302
    change = SubscriptionChange.objects.get()
    alpha.refresh_from_db()
    assert alpha.plan_version == v1 and change.changed_at == later  # on v1 until then; billing knows the date
    page = staff.get(url)
    assert f"to v2 from {later:%Y-%m-%d %H:%M} UTC" in page.content.decode()
    # Another move waits until this one is withdrawn.
    again = staff.post(url, data | {"action": "preview"})
    assert "withdraw it first" in " ".join(again.context["refusals"])
    assert "withdraw it first" in str(staff.post(url, data | {"action": "move"}).context["move_form"].errors)
    # Withdrawn: nothing is left of it.
    assert staff.post(url, {"action": "withdraw", "change": "999999"}).status_code == 302
    assert SubscriptionChange.objects.exists()
    response = staff.post(url, {"action": "withdraw", "change": str(change.pk)}, follow=True)
    assert "Withdrawn" in response.content.decode() and not SubscriptionChange.objects.exists()
