"""Custom pricing rules: a name in a plan document resolved to a function through a mapping.

A rule is a function ``(quantity: Decimal, params: Mapping, currency: str) -> Decimal`` returning the
exact (unrounded) amount of the line; the engine rounds it. A rule may carry a ``validate_params``
attribute, ``(params) -> list[tuple[field, message]]``, that the document validation calls at import
time, so that a bad parameter is refused before billing ever sees it.

The mapping name -> dotted path is handed in with :func:`configure_rules` (the metering app passes
``settings.PRICING_CUSTOM_RULES`` when it starts); until then it is :data:`DEFAULT_RULES`. This package
imports nothing of Django or of the project.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

Rule = Callable[[Decimal, Mapping[str, Any], str], Decimal]

DEFAULT_RULES: dict[str, str] = {"capped_per_unit": "metering.pricing.rules.capped_per_unit"}

_resolved: dict[str, Rule] = {}


class UnknownRuleError(LookupError):
    def __init__(self, name: object, known: Mapping[str, str]) -> None:
        names = ", ".join(sorted(known)) or "none"
        super().__init__(f"unknown custom rule {name!r} (known rules: {names})")
        self.name = name


_configured: Mapping[str, str] | None = None


def configure_rules(mapping: Mapping[str, str] | None) -> None:
    """Set the mapping in force (the metering app hands in ``settings.PRICING_CUSTOM_RULES`` when it
    starts and whenever a test changes it); None restores :data:`DEFAULT_RULES`."""
    global _configured
    _configured = None if mapping is None else dict(mapping)


def rule_paths() -> Mapping[str, str]:
    """The mapping in force: the configured one, else the default."""
    return DEFAULT_RULES if _configured is None else _configured


def known_rules(mapping: Mapping[str, str] | None = None) -> frozenset[str]:
    return frozenset(rule_paths() if mapping is None else mapping)


def _import_path(path: str) -> Rule:
    rule = _resolved.get(path)
    if rule is None:
        module_name, _, attribute = path.rpartition(".")
        if not module_name:
            raise ImportError(f"custom rule path {path!r} is not a dotted path")
        rule = getattr(importlib.import_module(module_name), attribute)
        if not callable(rule):
            raise TypeError(f"custom rule path {path!r} does not name a function")
        _resolved[path] = rule
    return rule


def get_rule(name: str, mapping: Mapping[str, str] | None = None) -> Rule:
    """The function registered under ``name``; :class:`UnknownRuleError` if there is none."""
    paths = rule_paths() if mapping is None else mapping
    try:
        path = paths[name]
    except (KeyError, TypeError):
        raise UnknownRuleError(name, paths) from None
    return _import_path(path)


def validate_rule_params(
    name: str, params: Mapping[str, Any], mapping: Mapping[str, str] | None = None
) -> list[tuple[str, str]]:
    """Problems with a rule's params as (field, message) pairs; raises UnknownRuleError for a bad name."""
    rule = get_rule(name, mapping)
    validate = getattr(rule, "validate_params", None)
    return list(validate(params)) if validate is not None else []


# --- the rules shipped with the portal -------------------------------------------------------------


def _decimal_param(params: Mapping[str, Any], key: str) -> Decimal:
    value = params[key]
    if isinstance(value, Decimal):
        return value
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise TypeError(f"param {key!r} must be a decimal string")
    return Decimal(value)


def capped_per_unit(quantity: Decimal, params: Mapping[str, Any], currency: str) -> Decimal:
    """A per-unit price with a spend cap: ``min(quantity × unit_amount, cap)``.

    params: ``{"unit_amount": "0.001", "cap": "500.00"}``. The cap is an amount in the plan's
    currency, reached exactly: usage past it costs nothing more in the period.
    """
    amount = quantity * _decimal_param(params, "unit_amount")
    cap = _decimal_param(params, "cap")
    return cap if amount > cap else amount


def _validate_capped_per_unit(params: Mapping[str, Any]) -> list[tuple[str, str]]:
    problems = []
    for key in ("unit_amount", "cap"):
        if key not in params:
            problems.append((f"params.{key}", "is required"))
            continue
        try:
            value = _decimal_param(params, key)
        except (TypeError, InvalidOperation):
            problems.append((f"params.{key}", f"must be a decimal string, got {params[key]!r}"))
            continue
        if not value.is_finite() or value < 0:
            problems.append((f"params.{key}", f"must be a non-negative decimal, got {params[key]!r}"))
        elif value and value.adjusted() >= 12:  # the bounds of a plan's unit prices and amounts (docs/plans.md)
            problems.append((f"params.{key}", "is too large (at most 12 integer digits, below 1000000000000)"))
        elif value and value.normalize().as_tuple().exponent < -12:
            problems.append((f"params.{key}", "has more than 12 decimal places"))
    for key in sorted(set(params) - {"unit_amount", "cap"}):
        problems.append((f"params.{key}", "is not a parameter of rule 'capped_per_unit'"))
    return problems


capped_per_unit.validate_params = _validate_capped_per_unit  # type: ignore[attr-defined]
