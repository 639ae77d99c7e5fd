"""Metric and plan documents (docs/plans.md): parsed and validated once into frozen specs, and back.

This is the one place where a plan or metric document is checked: the import, the admin form and
the price preview all call :func:`parse_plan_file`, :func:`parse_plan` or :func:`parse_metric`.
Every problem is reported, not just the first, each naming the plan (or metric), the charge and the
field, e.g. ``plan 'pro', charge 2 (api_calls), field 'tiers[1].up_to': must be greater than the
previous tier's up_to (10000)``. Charges are numbered from 1 in document order.

Amounts and quantities are decimal strings or JSON integers; a JSON float is refused, since it
cannot carry a price exactly (:func:`loads_document` reads JSON numbers with a fraction as Decimal,
which is accepted). The ``*_to_document`` functions give the canonical JSON form back, which parses
to an equal spec: an export re-imports to the same state.

Every value has bounds (docs/plans.md: "Numbers" and the tables of fields), checked here before any database sees it, so that
what is accepted fits the column or JSON value that stores it the same way on SQLite and PostgreSQL,
and a bad document is a list of messages, never a database error or a crash: sizes of numbers and
strings, counts of charges, tiers and filter values, the nesting of the whole document, characters
PostgreSQL cannot store.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation, localcontext
from typing import Any

from .currency import ARITHMETIC_CONTEXT, MINOR_UNITS, minor_units, quantum
from .rules import UnknownRuleError, known_rules, validate_rule_params

ZERO = Decimal(0)
ONE = Decimal(1)

AGGREGATIONS = ("count", "sum", "max", "unique_count", "latest")
# Aggregations of a metric over posted events only ("latest": the last value reported in the period, a gauge).
EVENT_ONLY_AGGREGATIONS = ("latest",)
MODELS = ("per_unit", "package", "graduated", "volume", "custom")
INTERVALS = ("month", "year")
ROUNDINGS = ("up", "down")
FILTER_KEYS = ("status", "http_method", "resource_path_prefix")
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT")

MAX_DECIMAL_PLACES = 12  # Stripe's limit for unit_amount_decimal
MAX_INTEGER_DIGITS = 18

# Bounds of the numbers, as (integer digits, decimal places); each fits the column that stores or bills it.
# And at most 15 significant digits: SQLite keeps a decimal column as a double, exact to 15 digits only
# (a longer value would come back changed, or not at all), so a value is the same on SQLite and PostgreSQL.
MAX_SIGNIFICANT_DIGITS = 15
QUANTITY = (MAX_INTEGER_DIGITS, MAX_DECIMAL_PLACES)  # up_to, package_size, free_units, divide_by
DIVISOR = (MAX_INTEGER_DIGITS, 6)  # Metric.divisor is numeric(24, 6)
UNIT_PRICE = (12, MAX_DECIMAL_PLACES)  # unit_amount: invoice lines keep it as numeric(30, 12)
AMOUNT = (12, 6)  # base_fee, minimum_commitment (PlanVersion numeric(18, 6)), flat_amount, package_amount
MAX_TRIAL_DAYS = 3650  # ten years; a trial's end must stay a date
MAX_PAYMENT_TERMS_DAYS = 365
# An AWS Marketplace dimension's API name (BatchMeterUsage's Dimension).
_DIMENSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
MAX_NAME_LENGTH = 200  # Plan.name, PlanVersion.name, Metric.name
MAX_UNIT_LENGTH = 40  # Metric.unit
MAX_PREFIX_LENGTH = 200  # a resource_path_prefix filter value
MAX_FILTER_VALUES = 50  # values of one filter
MAX_CHARGES = 100  # charges of one plan
MAX_TIERS = 100  # tiers of one charge
MAX_DEPTH = 20  # nesting of lists and objects; a plan file needs 7 (file, plans, plan, charges, charge, tiers, tier)
MAX_DOCUMENT_BYTES = 5_000_000  # a plans file

# The access-log table's columns a metric may aggregate (the lake's table; metering/lake/queries.py builds
# the queries on the same columns, and a test keeps the two lists equal).
ACCESS_LOG_COLUMNS = (
    "request_id", "ip", "user", "request_time", "http_method", "resource_path", "status", "protocol",
    "response_length", "tenant_id",
)
NUMERIC_COLUMNS = ("status", "response_length")  # sum and max need a number
# A metric over posted events names the event's code (as POST /api/v1/events/ accepts it) and reads its
# properties: ``properties.<name>`` as its field and as filter keys; names are identifiers, so that a
# property's JSON path needs no quoting in either query dialect.
PROPERTIES_PREFIX = "properties."
_EVENT_CODE_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,99}")
_PROPERTY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")

_CODE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_STATUS_RE = re.compile(r"[1-5](?:xx|[0-9]{2})")

_METRIC_KEYS = frozenset({"code", "name", "event", "aggregation", "field", "filters", "divisor", "unit"})
_PLAN_KEYS = frozenset(
    {"code", "name", "currency", "interval", "base_fee", "trial_days", "minimum_commitment", "included_credit",
     "charges", "payment_terms_days", "marketplace_dimensions"}
)
_CHARGE_KEYS = {
    "per_unit": frozenset({"metric", "model", "unit_amount", "transform"}),
    "package": frozenset({"metric", "model", "package_size", "package_amount", "free_units"}),
    "graduated": frozenset({"metric", "model", "tiers"}),
    "volume": frozenset({"metric", "model", "tiers"}),
    "custom": frozenset({"metric", "model", "rule", "params"}),
}
_TIER_KEYS = frozenset({"up_to", "unit_amount", "flat_amount"})
_TRANSFORM_KEYS = frozenset({"divide_by", "round"})


class DocumentError(ValueError):
    """A document that does not validate; ``errors`` lists every problem found."""

    def __init__(self, errors: Iterable[str]) -> None:
        self.errors: list[str] = list(errors)
        super().__init__("; ".join(self.errors))


# --- the specs ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Tier:
    up_to: Decimal | None  # None: unbounded (the last tier)
    unit_amount: Decimal
    flat_amount: Decimal = ZERO


@dataclass(frozen=True, slots=True)
class Transform:
    divide_by: Decimal
    round: str  # "up" | "down"


@dataclass(frozen=True, slots=True)
class MetricSpec:
    code: str
    name: str
    aggregation: str
    field: str | None = None
    filters: dict[str, tuple[str, ...]] = dataclasses.field(default_factory=dict, hash=False)
    divisor: Decimal = ONE
    unit: str = ""
    event: str = ""  # the posted events' code it counts; empty: the access-log table


@dataclass(frozen=True, slots=True)
class ChargeSpec:
    metric: str
    model: str
    unit_amount: Decimal | None = None  # per_unit
    transform: Transform | None = None  # per_unit
    package_size: Decimal | None = None  # package
    package_amount: Decimal | None = None  # package
    free_units: Decimal = ZERO  # package
    tiers: tuple[Tier, ...] = ()  # graduated, volume
    rule: str | None = None  # custom
    params: dict[str, Any] = dataclasses.field(default_factory=dict, hash=False)  # custom
    # Precomputed for the engine, one row per tier: (up_to, lower bound, unit_amount, flat_amount,
    # amount of all the tiers below when full). Pricing is then a scan and three operations.
    tier_table: tuple[tuple[Decimal | None, Decimal, Decimal, Decimal, Decimal], ...] = dataclasses.field(
        init=False, repr=False, compare=False, hash=False, default=()
    )

    def __post_init__(self) -> None:
        if not self.tiers:
            return
        rows = []
        lower = ZERO
        below = ZERO
        with localcontext(ARITHMETIC_CONTEXT):
            for tier in self.tiers:
                rows.append((tier.up_to, lower, tier.unit_amount, tier.flat_amount, below))
                if tier.up_to is None:
                    break
                below = below + (tier.up_to - lower) * tier.unit_amount + tier.flat_amount
                lower = tier.up_to
        object.__setattr__(self, "tier_table", tuple(rows))


@dataclass(frozen=True, slots=True)
class PlanSpec:
    code: str
    name: str
    currency: str
    interval: str  # "month" | "year"
    base_fee: Decimal = ZERO
    trial_days: int = 0
    minimum_commitment: Decimal | None = None
    charges: tuple[ChargeSpec, ...] = ()
    included_credit: Decimal = ZERO  # a prepaid credit granted each period, expiring at its end
    payment_terms_days: int | None = None  # None: the tenant's, else INVOICE_PAYMENT_TERMS_DAYS
    marketplace_dimensions: tuple[tuple[str, str], ...] = ()  # (metric code, AWS Marketplace dimension)

    @property
    def metric_codes(self) -> tuple[str, ...]:
        return tuple(charge.metric for charge in self.charges)

    def charge_for(self, metric: str) -> ChargeSpec | None:
        for charge in self.charges:
            if charge.metric == metric:
                return charge
        return None


# --- reading values -----------------------------------------------------------------------------------


class _Report:
    """Collects messages under one prefix ("plan 'pro', charge 2 (api_calls)")."""

    __slots__ = ("prefix", "errors")

    def __init__(self, prefix: str, errors: list[str]) -> None:
        self.prefix = prefix
        self.errors = errors

    def add(self, fieldname: str, message: str) -> None:
        self.errors.append(f"{self.prefix}, field '{fieldname}': {message}")

    def add_whole(self, message: str) -> None:
        self.errors.append(f"{self.prefix}: {message}")


_MISSING = object()


def _decimal(
    report: _Report, doc: Mapping[str, Any], key: str, fieldname: str, *, bounds: tuple[int, int],
    positive: bool = False, default: Any = _MISSING,
) -> Decimal | None:
    """A non-negative (or positive) decimal from a string, an int or a Decimal; None after an error."""
    value = doc.get(key, _MISSING)
    if value is _MISSING or (value is None and default is not _MISSING):
        if default is _MISSING:
            report.add(fieldname, "is required")
            return None
        return default
    return _to_decimal(report, value, fieldname, bounds=bounds, positive=positive)


def _to_decimal(
    report: _Report, value: Any, fieldname: str, *, bounds: tuple[int, int], positive: bool = False
) -> Decimal | None:
    """``bounds``: (integer digits, decimal places) at most, e.g. AMOUNT."""
    if isinstance(value, float):
        report.add(fieldname, f"must be a decimal string such as \"{value!r}\", not a JSON float")
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, Decimal)):
        report.add(fieldname, f"must be a decimal string, got {_brief(value)}")
        return None
    if isinstance(value, str) and len(value) > 64:
        report.add(fieldname, f"must be a decimal string of at most 64 characters, got {_brief(value)}")
        return None
    try:
        number = value if isinstance(value, Decimal) else Decimal(value.strip() if isinstance(value, str) else value)
    except InvalidOperation:
        report.add(fieldname, f"must be a decimal string, got {_brief(value)}")
        return None
    if not number.is_finite():
        report.add(fieldname, f"must be a finite decimal, got {value!r}")
        return None
    if positive and number <= 0:
        report.add(fieldname, f"must be greater than 0, got {_show(number)}")
        return None
    if number < 0:
        report.add(fieldname, f"must not be negative, got {_show(number)}")
        return None
    integer_digits, places = bounds
    if number and number.adjusted() >= integer_digits:
        report.add(fieldname, f"is too large (at most {integer_digits} integer digits, below 1{'0' * integer_digits})")
        return None
    if number and number.normalize().as_tuple().exponent < -places:
        report.add(fieldname, f"has more than {places} decimal places")
        return None
    if number and len(number.normalize().as_tuple().digits) > MAX_SIGNIFICANT_DIGITS:
        report.add(fieldname, f"has more than {MAX_SIGNIFICANT_DIGITS} significant digits")
        return None
    return abs(number)  # abs() turns "-0" into "0"


def _show(number: Decimal) -> str:
    return format(number, "f")


def _brief(value: Any) -> str:
    """A value for a message: its repr, cut short (a document may hold a megabyte string)."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _has_control_characters(text: str) -> bool:
    """Control characters (NUL: PostgreSQL refuses it) and unpaired surrogates (no database can encode one)."""
    return any(unicodedata.category(char) in ("Cc", "Cs") for char in text)


def _has_surrogates(text: str) -> bool:
    return any("\ud800" <= char <= "\udfff" for char in text)


def _text(report: _Report, value: str, fieldname: str, max_length: int) -> bool:
    """A displayed string's bounds: its length, and no control characters (PostgreSQL refuses NUL)."""
    if len(value) > max_length:
        report.add(fieldname, f"must be at most {max_length} characters, got {len(value)}")
        return False
    if _has_control_characters(value):
        report.add(fieldname, "must not contain control characters (such as a newline or NUL) or unpaired surrogates")
        return False
    return True


def nesting_depth(value: Any, *, limit: int | None = None) -> int:
    """How deeply lists and objects nest in a parsed JSON value (a scalar is 0), counted without recursion.

    Stops as soon as the depth passes ``limit``, so a hostile document costs little.
    """
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, Mapping):
            children = item.values()
        elif isinstance(item, (list, tuple)):
            children = item
        else:
            continue
        deepest = max(deepest, level)
        if limit is not None and deepest > limit:
            return deepest
        stack.extend((child, level + 1) for child in children)
    return deepest


MAX_JSON_DEPTH = 32  # the deepest JSON the portal takes in from people (forms, API bodies)


def json_loads_bounded(text: str | bytes, *, max_depth: int = MAX_JSON_DEPTH, **kwargs) -> Any:
    """json.loads, with ValueError (never RecursionError) for JSON nested deeper than ``max_depth``.

    Python's json recurses: a body nested 100,000 deep raises RecursionError, which Django and DRF do not
    catch (a 500). Here it is a ValueError like any syntax error, raised before code that walks the value
    recursively (serializers, the database's JSON encoder) sees it.
    """
    try:
        value = json.loads(text, **kwargs)
    except RecursionError:
        raise ValueError(f"nested more than {max_depth} levels deep") from None
    if nesting_depth(value, limit=max_depth) > max_depth:
        raise ValueError(f"nested more than {max_depth} levels deep")
    return value


def _check_depth(doc: Any, what: str) -> None:
    if nesting_depth(doc, limit=MAX_DEPTH) > MAX_DEPTH:
        raise DocumentError([f"{what} nests lists and objects more than {MAX_DEPTH} levels deep"])


def _string(report: _Report, doc: Mapping[str, Any], key: str, *, default: Any = _MISSING) -> str | None:
    value = doc.get(key, _MISSING)
    if value is _MISSING or value is None:
        if default is _MISSING:
            report.add(key, "is required")
            return None
        return default
    if not isinstance(value, str) or not value.strip():
        report.add(key, f"must be a non-empty string, got {_brief(value)}")
        return None
    if not _text(report, value.strip(), key, MAX_NAME_LENGTH):
        return None
    return value.strip()


def _code(report: _Report, doc: Mapping[str, Any], key: str = "code") -> str | None:
    value = _string(report, doc, key)
    if value is not None and not _CODE_RE.fullmatch(value):
        report.add(key, f"must be 1 to 64 letters, digits, '_', '.' or '-', starting with a letter or digit, got {_brief(value)}")
        return None
    return value


def _choice(report: _Report, doc: Mapping[str, Any], key: str, choices: tuple[str, ...], *, fieldname: str | None = None,
            default: Any = _MISSING) -> str | None:
    fieldname = fieldname or key
    value = doc.get(key, _MISSING)
    if value is _MISSING or value is None:
        if default is _MISSING:
            report.add(fieldname, f"is required (one of {', '.join(choices)})")
            return None
        return default
    if not isinstance(value, str) or value not in choices:
        report.add(fieldname, f"must be one of {', '.join(choices)}, got {_brief(value)}")
        return None
    return value


def _unknown_keys(report: _Report, doc: Mapping[str, Any], allowed: frozenset[str], what: str, prefix: str = "") -> None:
    for key in doc:
        if key not in allowed:
            report.add(f"{prefix}{_brief(key)[1:-1] if isinstance(key, str) else key}", f"is not a field of {what}")


def _label(kind: str, doc: Any, position: int | None) -> str:
    code = doc.get("code") if isinstance(doc, Mapping) else None
    if isinstance(code, str) and code.strip():
        return f"{kind} {code.strip()!r}"
    return f"{kind} #{position}" if position is not None else f"{kind} (without a code)"


# --- metrics ------------------------------------------------------------------------------------------


def parse_metric(doc: Any) -> MetricSpec:
    _check_depth(doc, "the metric")
    errors: list[str] = []
    spec = _parse_metric(doc, None, errors)
    if errors or spec is None:
        raise DocumentError(errors)
    return spec


def _parse_metric(doc: Any, position: int | None, errors: list[str]) -> MetricSpec | None:
    report = _Report(_label("metric", doc, position), errors)
    if not isinstance(doc, Mapping):
        report.add_whole(f"must be a JSON object, got {type(doc).__name__}")
        return None
    start = len(errors)
    _unknown_keys(report, doc, _METRIC_KEYS, "a metric")
    code = _code(report, doc)
    name = _string(report, doc, "name", default=code)
    event = doc.get("event", "")
    if event is None:
        event = ""
    if not isinstance(event, str) or (event and not _EVENT_CODE_RE.fullmatch(event)):
        report.add("event", "must be an event code as POST /api/v1/events/ accepts it (lower-case letters, digits, "
                            f"'.', '_', '-'; at most 100 characters), got {_brief(event)}")
        event = ""
    aggregation = _choice(report, doc, "aggregation", AGGREGATIONS)
    fieldname = doc.get("field")
    if aggregation == "count":
        if fieldname is not None:
            report.add("field", "must be absent for aggregation 'count' (it counts events)")
    elif aggregation in EVENT_ONLY_AGGREGATIONS and not doc.get("event"):
        report.add("aggregation", f"{aggregation!r} is for metrics over posted events: name the event's code "
                                  f"in 'event'")
    elif aggregation is not None and doc.get("event"):
        if fieldname is None:
            report.add("field", f"is required for aggregation {aggregation!r}")
        elif not _property_name(fieldname):
            report.add("field", "must name a property of the event as 'properties.<name>' (a name of letters, "
                                f"digits and '_'), got {_brief(fieldname)}")
            fieldname = None
    elif aggregation is not None:
        if fieldname is None:
            report.add("field", f"is required for aggregation {aggregation!r}")
        elif not isinstance(fieldname, str) or fieldname not in ACCESS_LOG_COLUMNS:
            report.add("field", f"must be a column of the access-log table ({', '.join(ACCESS_LOG_COLUMNS)}), "
                                f"got {_brief(fieldname)}")
            fieldname = None
        elif aggregation in ("sum", "max") and fieldname not in NUMERIC_COLUMNS:
            report.add("field", f"must be a numeric column ({', '.join(NUMERIC_COLUMNS)}) for aggregation "
                                f"{aggregation!r}, got {fieldname!r}")
            fieldname = None
    filters = _parse_filters(report, doc.get("filters"), events=bool(event))
    divisor = _decimal(report, doc, "divisor", "divisor", bounds=DIVISOR, positive=True, default=ONE)
    unit = doc.get("unit", "")
    if unit is None:
        unit = ""
    if not isinstance(unit, str):
        report.add("unit", f"must be a string, got {_brief(unit)}")
    else:
        _text(report, unit.strip(), "unit", MAX_UNIT_LENGTH)
    if len(errors) > start:
        return None
    return MetricSpec(
        code=code, name=name, aggregation=aggregation, field=fieldname if aggregation != "count" else None,
        filters=filters, divisor=divisor, unit=unit.strip(), event=event,
    )


def _property_name(fieldname: Any) -> str | None:
    """The property's name in ``properties.<name>``, or None when ``fieldname`` is not of that form."""
    if not isinstance(fieldname, str) or not fieldname.startswith(PROPERTIES_PREFIX):
        return None
    name = fieldname[len(PROPERTIES_PREFIX):]
    return name if _PROPERTY_RE.fullmatch(name) else None


def _parse_filters(report: _Report, filters: Any, *, events: bool = False) -> dict[str, tuple[str, ...]]:
    if filters is None:
        return {}
    if not isinstance(filters, Mapping):
        report.add("filters", f"must be an object, got {_brief(filters)}")
        return {}
    parsed: dict[str, tuple[str, ...]] = {}
    if events:
        keys = []
        for key in filters:
            if _property_name(key):
                keys.append(key)
            else:
                report.add(f"filters.{key}", "is not a filter of an events metric (its filters are "
                                             "'properties.<name>': the values a property may have)")
        keys.sort()
        if len(keys) > MAX_FILTER_VALUES:
            report.add("filters", f"must have at most {MAX_FILTER_VALUES} properties, got {len(keys)}")
            return {}
    else:
        for key in filters:
            if key not in FILTER_KEYS:
                report.add(f"filters.{key}", f"is not a filter (filters are {', '.join(FILTER_KEYS)})")
        keys = [key for key in FILTER_KEYS if key in filters]
    for key in keys:
        if key not in filters:
            continue
        values = filters[key]
        if isinstance(values, str):
            values = [values]
        if not isinstance(values, list) or not values:
            report.add(f"filters.{key}", f"must be a non-empty list of strings, got {_brief(values)}")
            continue
        if len(values) > MAX_FILTER_VALUES:
            report.add(f"filters.{key}", f"must have at most {MAX_FILTER_VALUES} values, got {len(values)}")
            continue
        clean: list[str] = []
        for index, value in enumerate(values):
            where = f"filters.{key}[{index}]"
            if not isinstance(value, str) or not value.strip():
                report.add(where, f"must be a non-empty string, got {_brief(value)}")
                continue
            value = value.strip()
            if not _text(report, value, where, MAX_PREFIX_LENGTH):
                continue
            if key == "status":
                value = value.lower()
                if not _STATUS_RE.fullmatch(value):
                    report.add(where, f"must be a status class such as '2xx' or a code such as '429', got {_brief(value)}")
                    continue
            elif key == "http_method":
                value = value.upper()
                if value not in HTTP_METHODS:
                    report.add(where, f"must be an HTTP method ({', '.join(HTTP_METHODS)}), got {_brief(value)}")
                    continue
            elif events:
                pass  # a property's value as text: compared as the lake reads it (docs/plans.md)
            elif not value.startswith("/"):
                report.add(where, f"must start with '/', got {_brief(value)}")
                continue
            if value not in clean:
                clean.append(value)
        if clean:
            parsed[key] = tuple(clean)
    return parsed


def metric_to_document(spec: MetricSpec) -> dict[str, Any]:
    doc: dict[str, Any] = {"code": spec.code, "name": spec.name}
    if spec.event:
        doc["event"] = spec.event
    doc["aggregation"] = spec.aggregation
    if spec.field is not None:
        doc["field"] = spec.field
    if spec.filters:
        doc["filters"] = {key: list(values) for key, values in spec.filters.items()}
    if spec.divisor != ONE:
        doc["divisor"] = _show(spec.divisor)
    if spec.unit:
        doc["unit"] = spec.unit
    return doc


# --- plans --------------------------------------------------------------------------------------------


def parse_plan(doc: Any, *, metric_codes: Iterable[str] | None = None) -> PlanSpec:
    """Validate one plan document. ``metric_codes``: the metrics a charge may use (None: don't check)."""
    _check_depth(doc, "the plan")
    errors: list[str] = []
    known = None if metric_codes is None else frozenset(metric_codes)
    spec = _parse_plan(doc, None, known, errors)
    if errors or spec is None:
        raise DocumentError(errors)
    return spec


def _parse_plan(doc: Any, position: int | None, metric_codes: frozenset[str] | None, errors: list[str]) -> PlanSpec | None:
    label = _label("plan", doc, position)
    report = _Report(label, errors)
    if not isinstance(doc, Mapping):
        report.add_whole(f"must be a JSON object, got {type(doc).__name__}")
        return None
    start = len(errors)
    _unknown_keys(report, doc, _PLAN_KEYS, "a plan")
    code = _code(report, doc)
    name = _string(report, doc, "name", default=code)
    currency = doc.get("currency")
    if currency is None:
        report.add("currency", "is required (an ISO 4217 code such as 'USD')")
    elif not isinstance(currency, str) or currency.strip().upper() not in MINOR_UNITS:
        report.add("currency", f"unknown currency {_brief(currency)} (expected an ISO 4217 code such as 'USD')")
        currency = None
    else:
        currency = currency.strip().upper()
    interval = _choice(report, doc, "interval", INTERVALS)
    base_fee = _decimal(report, doc, "base_fee", "base_fee", bounds=AMOUNT, default=ZERO)
    trial_days = doc.get("trial_days", 0)
    if trial_days is None:
        trial_days = 0
    if isinstance(trial_days, bool) or not isinstance(trial_days, int) or trial_days < 0:
        report.add("trial_days", f"must be a whole number of days, 0 or more, got {_brief(trial_days)}")
    elif trial_days > MAX_TRIAL_DAYS:
        report.add("trial_days", f"must be at most {MAX_TRIAL_DAYS} days (ten years), got {trial_days}")
    minimum_commitment = _decimal(report, doc, "minimum_commitment", "minimum_commitment", bounds=AMOUNT,
                                  default=None)
    included_credit = _decimal(report, doc, "included_credit", "included_credit", bounds=AMOUNT, default=ZERO)
    if currency is not None and included_credit is not None and included_credit != included_credit.quantize(
            quantum(currency)):
        report.add("included_credit", f"must be in {currency}'s minor units ({minor_units(currency)} digits), "
                                      f"got {_show(included_credit)}")
    payment_terms_days = doc.get("payment_terms_days")
    if payment_terms_days is not None and (
        isinstance(payment_terms_days, bool) or not isinstance(payment_terms_days, int)
        or not 0 <= payment_terms_days <= MAX_PAYMENT_TERMS_DAYS
    ):
        report.add("payment_terms_days",
                   f"must be a whole number of days from 0 to {MAX_PAYMENT_TERMS_DAYS}, got {_brief(payment_terms_days)}")
    dimensions_doc = doc.get("marketplace_dimensions") or {}
    dimensions: list[tuple[str, str]] = []
    if not isinstance(dimensions_doc, Mapping):
        report.add("marketplace_dimensions", f"must map metric codes to dimension names, got {_brief(dimensions_doc)}")
    elif len(dimensions_doc) > MAX_CHARGES:
        report.add("marketplace_dimensions", f"must have at most {MAX_CHARGES} entries")
    else:
        for metric, dimension in dimensions_doc.items():
            if not isinstance(dimension, str) or not _DIMENSION_RE.fullmatch(dimension):
                report.add(f"marketplace_dimensions.{str(metric)[:40]}",
                           "must be an AWS Marketplace dimension name (1 to 100 letters, digits, '_', '.', '-'), "
                           f"got {_brief(dimension)}")
            else:
                dimensions.append((str(metric), dimension))

    charges_doc = doc.get("charges", [])
    charges: list[ChargeSpec] = []
    if charges_doc is None:
        charges_doc = []
    if not isinstance(charges_doc, list):
        report.add("charges", f"must be a list of charges, got {_brief(charges_doc)}")
        charges_doc = []
    elif len(charges_doc) > MAX_CHARGES:
        report.add("charges", f"must be at most {MAX_CHARGES} charges, got {len(charges_doc)}")
        charges_doc = []
    seen: dict[str, int] = {}
    rules = None
    for index, charge_doc in enumerate(charges_doc, start=1):
        metric = charge_doc.get("metric") if isinstance(charge_doc, Mapping) else None
        if isinstance(metric, str) and _CODE_RE.fullmatch(metric.strip()):
            charge_report = _Report(f"{label}, charge {index} ({metric.strip()})", errors)
        else:
            charge_report = _Report(f"{label}, charge {index}", errors)
        if rules is None and isinstance(charge_doc, Mapping) and charge_doc.get("model") == "custom":
            rules = known_rules()
        charge = _parse_charge(charge_report, charge_doc, metric_codes, rules)
        if charge is None:
            continue
        if charge.metric in seen:
            charge_report.add(
                "metric", f"the plan already has a charge for metric {charge.metric!r} (charge {seen[charge.metric]})"
            )
            continue
        seen[charge.metric] = index
        charges.append(charge)
    for metric, _dimension in dimensions:
        if metric not in seen:
            report.add(f"marketplace_dimensions.{metric[:40]}", "names no metric of the plan's charges")
    if len({dimension for _metric, dimension in dimensions}) != len(dimensions):
        report.add("marketplace_dimensions", "maps two metrics to the same dimension")
    if len(errors) > start:
        return None
    return PlanSpec(
        code=code, name=name, currency=currency, interval=interval, base_fee=base_fee, trial_days=trial_days,
        minimum_commitment=minimum_commitment, charges=tuple(charges), included_credit=included_credit,
        payment_terms_days=payment_terms_days, marketplace_dimensions=tuple(sorted(dimensions)),
    )


def _parse_charge(report: _Report, doc: Any, metric_codes: frozenset[str] | None,
                  rules: frozenset[str] | None) -> ChargeSpec | None:
    if not isinstance(doc, Mapping):
        report.add_whole(f"must be a JSON object, got {type(doc).__name__}")
        return None
    start = len(report.errors)
    metric = _code(report, doc, "metric")
    if metric is not None and metric_codes is not None and metric not in metric_codes:
        report.add("metric", f"unknown metric {metric!r}: define it in the same file or import it first")
    model = _choice(report, doc, "model", MODELS)
    if model is None:
        return None
    _unknown_keys(report, doc, _CHARGE_KEYS[model], f"a '{model}' charge")
    values: dict[str, Any] = {}
    if model == "per_unit":
        values["unit_amount"] = _decimal(report, doc, "unit_amount", "unit_amount", bounds=UNIT_PRICE)
        values["transform"] = _parse_transform(report, doc.get("transform"))
    elif model == "package":
        values["package_size"] = _decimal(report, doc, "package_size", "package_size", bounds=QUANTITY, positive=True)
        values["package_amount"] = _decimal(report, doc, "package_amount", "package_amount", bounds=AMOUNT)
        values["free_units"] = _decimal(report, doc, "free_units", "free_units", bounds=QUANTITY, default=ZERO)
    elif model in ("graduated", "volume"):
        values["tiers"] = _parse_tiers(report, doc.get("tiers", _MISSING))
    else:
        values["rule"], values["params"] = _parse_custom(report, doc, rules if rules is not None else known_rules())
    if len(report.errors) > start:
        return None
    return ChargeSpec(metric=metric, model=model, **values)


def _parse_transform(report: _Report, doc: Any) -> Transform | None:
    if doc is None:
        return None
    if not isinstance(doc, Mapping):
        report.add("transform", f"must be an object such as {{\"divide_by\": 1000, \"round\": \"up\"}}, got {_brief(doc)}")
        return None
    _unknown_keys(report, doc, _TRANSFORM_KEYS, "a transform", prefix="transform.")
    divide_by = _decimal(report, doc, "divide_by", "transform.divide_by", bounds=QUANTITY, positive=True)
    rounding = _choice(report, doc, "round", ROUNDINGS, fieldname="transform.round")
    if divide_by is None or rounding is None:
        return None
    return Transform(divide_by=divide_by, round=rounding)


def _parse_tiers(report: _Report, tiers: Any) -> tuple[Tier, ...]:
    if tiers is _MISSING or tiers is None:
        report.add("tiers", "is required: a list of tiers, the last with \"up_to\": null")
        return ()
    if not isinstance(tiers, list) or not tiers:
        report.add("tiers", f"must be a non-empty list of tiers, got {_brief(tiers)}")
        return ()
    if len(tiers) > MAX_TIERS:
        report.add("tiers", f"must be at most {MAX_TIERS} tiers, got {len(tiers)}")
        return ()
    parsed: list[Tier] = []
    previous: Decimal | None = None
    last = len(tiers) - 1
    for index, tier in enumerate(tiers):
        where = f"tiers[{index}]"
        if not isinstance(tier, Mapping):
            report.add(where, f"must be an object with up_to, unit_amount and flat_amount, got {_brief(tier)}")
            continue
        _unknown_keys(report, tier, _TIER_KEYS, "a tier", prefix=f"{where}.")
        if "up_to" not in tier:
            report.add(f"{where}.up_to", "is required (null for the last, unbounded tier)")
            up_to = None
        elif tier["up_to"] is None:
            up_to = None
            if index != last:
                report.add(f"{where}.up_to", "only the last tier may be unbounded (null)")
        else:
            up_to = _to_decimal(report, tier["up_to"], f"{where}.up_to", bounds=QUANTITY, positive=True)
            if up_to is not None:
                if index == last:
                    report.add(f"{where}.up_to", f"the last tier must be unbounded (null), got {_show(up_to)}")
                elif previous is not None and up_to <= previous:
                    report.add(
                        f"{where}.up_to", f"must be greater than the previous tier's up_to ({_show(previous)})"
                    )
                previous = up_to if previous is None or up_to > previous else previous
        if "unit_amount" not in tier and "flat_amount" not in tier:
            report.add(f"{where}.unit_amount", "is required (or give the tier a flat_amount)")
            continue
        unit_amount = _decimal(report, tier, "unit_amount", f"{where}.unit_amount", bounds=UNIT_PRICE, default=ZERO)
        flat_amount = _decimal(report, tier, "flat_amount", f"{where}.flat_amount", bounds=AMOUNT, default=ZERO)
        if unit_amount is not None and flat_amount is not None:
            parsed.append(Tier(up_to=up_to, unit_amount=unit_amount, flat_amount=flat_amount))
    return tuple(parsed)


def _parse_custom(report: _Report, doc: Mapping[str, Any], rules: frozenset[str]) -> tuple[str | None, dict[str, Any]]:
    rule = _string(report, doc, "rule")
    params = doc.get("params", {})
    if params is None:
        params = {}
    if not isinstance(params, Mapping):
        report.add("params", f"must be an object, got {_brief(params)}")
        return rule, {}
    params = _plain_params(report, params, "params")
    if rule is None:
        return rule, params
    if rule not in rules:
        names = ", ".join(sorted(rules)) or "none"
        report.add("rule", f"unknown custom rule {rule!r} (known rules: {names})")
        return rule, params
    try:
        problems = validate_rule_params(rule, params)
    except UnknownRuleError:  # the mapping changed under us
        report.add("rule", f"unknown custom rule {rule!r}")
        return rule, params
    except Exception as exc:  # noqa: BLE001 - a rule path that does not import is the document's problem
        report.add("rule", f"custom rule {rule!r} cannot be loaded: {exc}")
        return rule, params
    for fieldname, message in problems:
        report.add(fieldname, message)
    return rule, params


def _plain_params(report: _Report, value: Any, where: str) -> Any:
    """A deep copy of JSON params with Decimals as canonical strings; floats refused."""
    if isinstance(value, Mapping):
        for key in value:
            if "\x00" in str(key) or _has_surrogates(str(key)):
                report.add(where, "must not have a key with the NUL character or an unpaired surrogate "
                                  "(no database can store them)")
        return {str(key): _plain_params(report, item, f"{where}.{key}") for key, item in value.items()}
    if isinstance(value, list):
        return [_plain_params(report, item, f"{where}[{index}]") for index, item in enumerate(value)]
    if isinstance(value, float):
        report.add(where, f"must be a decimal string such as \"{value!r}\", not a JSON float")
        return value
    if isinstance(value, Decimal):
        return _show(value)
    if isinstance(value, str) and ("\x00" in value or _has_surrogates(value)):
        report.add(where, "must not contain the NUL character or an unpaired surrogate (no database can store them)")
        return value
    if value is None or isinstance(value, (str, int, bool)):
        return value
    report.add(where, f"must be a JSON value, got {_brief(value)}")
    return value


def _quantity_json(value: Decimal) -> int | str:
    """Quantities (up_to, package_size, ...) print as JSON integers when whole, as docs/plans.md writes them."""
    return int(value) if value == value.to_integral_value() else _show(value)


def charge_to_document(charge: ChargeSpec) -> dict[str, Any]:
    doc: dict[str, Any] = {"metric": charge.metric, "model": charge.model}
    if charge.model == "per_unit":
        doc["unit_amount"] = _show(charge.unit_amount)
        if charge.transform is not None:
            doc["transform"] = {"divide_by": _quantity_json(charge.transform.divide_by), "round": charge.transform.round}
    elif charge.model == "package":
        doc["package_size"] = _quantity_json(charge.package_size)
        doc["package_amount"] = _show(charge.package_amount)
        if charge.free_units:
            doc["free_units"] = _quantity_json(charge.free_units)
    elif charge.model in ("graduated", "volume"):
        tiers = []
        for tier in charge.tiers:
            tier_doc: dict[str, Any] = {
                "up_to": None if tier.up_to is None else _quantity_json(tier.up_to),
                "unit_amount": _show(tier.unit_amount),
            }
            if tier.flat_amount:
                tier_doc["flat_amount"] = _show(tier.flat_amount)
            tiers.append(tier_doc)
        doc["tiers"] = tiers
    else:
        doc["rule"] = charge.rule
        doc["params"] = copy.deepcopy(dict(charge.params))
    return doc


def plan_to_document(spec: PlanSpec) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "code": spec.code,
        "name": spec.name,
        "currency": spec.currency,
        "interval": spec.interval,
        "base_fee": _show(spec.base_fee),
        "trial_days": spec.trial_days,
    }
    if spec.minimum_commitment is not None:
        doc["minimum_commitment"] = _show(spec.minimum_commitment)
    if spec.included_credit:
        doc["included_credit"] = _show(spec.included_credit)
    doc["charges"] = [charge_to_document(charge) for charge in spec.charges]
    if spec.payment_terms_days is not None:
        doc["payment_terms_days"] = spec.payment_terms_days
    if spec.marketplace_dimensions:
        doc["marketplace_dimensions"] = dict(spec.marketplace_dimensions)
    return doc


# --- files --------------------------------------------------------------------------------------------


def loads_document(text: str | bytes) -> Any:
    """Parse JSON text, reading numbers with a fraction as exact Decimals (never floats).

    Any text gives a document or a DocumentError: too long, nested too deep (json recurses), a number
    with thousands of digits (Python refuses to convert it) are errors like a syntax error.
    """
    if len(text) > MAX_DOCUMENT_BYTES:
        raise DocumentError([f"the document is larger than {MAX_DOCUMENT_BYTES:,} bytes"])
    try:
        document = json.loads(text, parse_float=Decimal)
    except json.JSONDecodeError as exc:
        raise DocumentError([f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"]) from None
    except UnicodeDecodeError as exc:
        raise DocumentError([f"invalid JSON: not UTF-8 text ({exc.reason})"]) from None
    except RecursionError:
        raise DocumentError([f"the document nests lists and objects more than {MAX_DEPTH} levels deep"]) from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise DocumentError([f"invalid JSON: {exc}"]) from None
    _check_depth(document, "the document")
    return document


def parse_plan_file(
    doc: Any, *, existing_metric_codes: Iterable[str] | None = None
) -> tuple[list[MetricSpec], list[PlanSpec]]:
    """Validate an import file: one plan document, or ``{"metrics": [...], "plans": [...]}``.

    Every problem in every metric and plan is collected before :class:`DocumentError` is raised.
    ``existing_metric_codes``: the metrics already in the portal; when given, each charge's metric
    must be one of them or be defined in the file. None: metric existence is not checked (the price
    preview, which reads only the file).
    """
    _check_depth(doc, "the file")
    errors: list[str] = []
    if not isinstance(doc, Mapping):
        raise DocumentError([f"the file must hold a JSON object (a plan, or metrics and plans), got {type(doc).__name__}"])
    if "metrics" not in doc and "plans" not in doc:
        known = None if existing_metric_codes is None else frozenset(existing_metric_codes)
        plan = _parse_plan(doc, 1, known, errors)
        if errors or plan is None:
            raise DocumentError(errors)
        return [], [plan]

    for key in doc:
        if key not in ("metrics", "plans"):
            errors.append(f"file, field '{key}': is not a field of an import file (expected metrics and plans)")
    metric_docs = doc.get("metrics") or []
    plan_docs = doc.get("plans") or []
    if not isinstance(metric_docs, list):
        errors.append("file, field 'metrics': must be a list of metric documents")
        metric_docs = []
    if not isinstance(plan_docs, list):
        errors.append("file, field 'plans': must be a list of plan documents")
        plan_docs = []

    metrics: list[MetricSpec] = []
    defined: set[str] = set()
    for position, metric_doc in enumerate(metric_docs, start=1):
        metric = _parse_metric(metric_doc, position, errors)
        if metric is None:
            # A metric with errors still counts as defined, so its plans don't report it missing too.
            code = metric_doc.get("code") if isinstance(metric_doc, Mapping) else None
            if isinstance(code, str):
                defined.add(code.strip())
            continue
        if metric.code in defined:
            errors.append(f"metric {metric.code!r}, field 'code': the file defines this metric more than once")
            continue
        defined.add(metric.code)
        metrics.append(metric)

    known = None if existing_metric_codes is None else frozenset(existing_metric_codes) | defined
    plans: list[PlanSpec] = []
    plan_codes: set[str] = set()
    for position, plan_doc in enumerate(plan_docs, start=1):
        plan = _parse_plan(plan_doc, position, known, errors)
        if plan is None:
            continue
        if plan.code in plan_codes:
            errors.append(f"plan {plan.code!r}, field 'code': the file defines this plan more than once")
            continue
        plan_codes.add(plan.code)
        plans.append(plan)
    if errors:
        raise DocumentError(errors)
    return metrics, plans
