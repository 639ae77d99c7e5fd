"""The plan builder's forms: a plan document (docs/plans.md) as a form, and back, exactly.

``document_initial(document)`` gives the forms' initial values; the forms' cleaned values give the document
again (``PlanBuilder.document()``): for a canonical document (what a plan version stores) the two are
identical, so opening a version in the builder and saving it without a change changes nothing.

The form checks only what a form must (lengths, a whole number of trial days, JSON params); every plan rule
is the plan format's own (``metering.pricing.parse_plan``), whose messages are put next to the field they
name (``charge 2 (api_calls), field 'tiers[1].up_to'`` on that tier's up_to).
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

from django import forms

from metering.pricing import MINOR_UNITS, DocumentError, parse_plan, plan_to_document
from metering.pricing.documents import MAX_CHARGES, MAX_TIERS, MODELS
from metering.pricing.rules import known_rules
from tenants.forms import loads_json_object

NUMBER_MAX_LENGTH = 64  # a decimal string of the plan format is at most 64 characters
PARAMS_MAX_LENGTH = 20_000  # a custom rule's params, as JSON text

_CODE_RE = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"


def _number(label: str, **kwargs) -> forms.CharField:
    return forms.CharField(label=label, required=False, max_length=NUMBER_MAX_LENGTH,
                           widget=forms.TextInput(attrs={"size": 12, "inputmode": "decimal", **kwargs.pop("attrs", {})}),
                           **kwargs)


class PlanFieldsForm(forms.Form):
    """The plan's own fields (its charges are the charge formset)."""

    code = forms.RegexField(regex=rf"^{_CODE_RE}$", max_length=64,
                            help_text="The plan's identifier: letters, digits, _ . -; it cannot change once saved.",
                            error_messages={"invalid": "Use 1 to 64 letters, digits, '_', '.' or '-', starting with a "
                                                       "letter or digit."})
    name = forms.CharField(max_length=200)
    currency = forms.ChoiceField(choices=[(code, code) for code in sorted(MINOR_UNITS)], initial="USD")
    interval = forms.ChoiceField(choices=[("month", "month"), ("year", "year")], initial="month")
    base_fee = _number("Base fee", help_text="Per interval; empty is 0.")
    trial_days = forms.IntegerField(required=False, min_value=0, max_value=3650, label="Trial days",
                                    help_text="Empty is 0.")
    minimum_commitment = _number("Minimum commitment", help_text="Empty: none.")
    included_credit = _number("Included credit", help_text="Granted each period, expiring at its end; empty is 0.")
    payment_terms_days = forms.IntegerField(
        required=False, min_value=0, max_value=365, label="Payment terms (days)",
        help_text="Empty: the tenant's own, else INVOICE_PAYMENT_TERMS_DAYS (docs/plans.md, \"Payment terms\").")
    is_public = forms.BooleanField(required=False, initial=True, label="Offered on the signup page")
    # The document's fields the builder has no inputs for, carried through the page unchanged (so saving
    # from the builder never drops them).
    kept = forms.CharField(required=False, widget=forms.HiddenInput)

    def __init__(self, *args, code_fixed: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.code_fixed = code_fixed
        if code_fixed is not None:
            self.fields["code"].disabled = True
            self.fields["code"].initial = code_fixed
            self.initial["code"] = code_fixed


class ChargeForm(forms.Form):
    """One charge; only the fields of its model are read (the page hides the others)."""

    metric = forms.ChoiceField(choices=())
    model = forms.ChoiceField(choices=[(m, m.replace("_", " ")) for m in MODELS])
    unit_amount = _number("Unit price")
    transform_divide_by = _number("Divide by", help_text="Optional: bill per block of this many.")
    transform_round = forms.ChoiceField(required=False, label="Round blocks",
                                        choices=[("", "—"), ("up", "up"), ("down", "down")])
    package_size = _number("Package size")
    package_amount = _number("Package price")
    free_units = _number("Free units")
    rule = forms.ChoiceField(required=False, choices=())
    params = forms.CharField(required=False, max_length=PARAMS_MAX_LENGTH, label="Params (JSON)",
                             widget=forms.Textarea(attrs={"rows": 2, "cols": 40, "class": "vLargeTextField"}))

    def __init__(self, *args, metric_codes: tuple[str, ...] = (), metric_names: dict[str, str] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        names = metric_names or {}
        self.fields["metric"].choices = [("", "—")] + [
            (code, f"{names[code]} ({code})" if names.get(code) else code) for code in metric_codes]
        self.fields["rule"].choices = [("", "—")] + [(name, name) for name in sorted(known_rules())]

    def clean_params(self):
        text = self.cleaned_data["params"].strip()
        return loads_json_object(text, 'The params are a JSON object, such as {"cap": "200.00"}.') if text else {}


class TierForm(forms.Form):
    """One row of a tier table (its column headers are the labels; each input also says its own)."""

    up_to = _number("Up to", help_text="Empty on the last tier: no end.",
                    attrs={"aria-label": "Up to (empty on the last tier: no end)"})
    unit_amount = _number("Unit price", attrs={"aria-label": "Unit price"})
    flat_amount = _number("Flat amount", attrs={"aria-label": "Flat amount"})


ChargeFormSet = forms.formset_factory(ChargeForm, extra=0, can_delete=True, max_num=MAX_CHARGES, validate_max=True,
                                      absolute_max=MAX_CHARGES)
TierFormSet = forms.formset_factory(TierForm, extra=0, can_delete=True, max_num=MAX_TIERS, validate_max=True,
                                    absolute_max=MAX_TIERS)

TIERED = ("graduated", "volume")


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _plain(value: Any) -> str:
    """A pasted document's exact decimals (loads_document reads 1.5 as Decimal) as the strings the format stores."""
    if isinstance(value, Decimal):
        return format(value, "f")
    raise TypeError(f"{type(value).__name__} is not JSON")


def document_initial(document: dict) -> tuple[dict, list[dict], list[list[dict]]]:
    """The forms' initial values for a plan document: (plan fields, one dict per charge, tiers per charge)."""
    plan = {
        "code": document.get("code", ""),
        "name": document.get("name", ""),
        "currency": document.get("currency", "USD"),
        "interval": document.get("interval", "month"),
        "base_fee": _text(document.get("base_fee")),
        "trial_days": document.get("trial_days") or 0,
        "minimum_commitment": _text(document.get("minimum_commitment")),
        "included_credit": _text(document.get("included_credit")),
        "payment_terms_days": document.get("payment_terms_days"),
        "kept": json.dumps({key: document[key] for key in KEPT_FIELDS if key in document}, default=_plain)
        if any(key in document for key in KEPT_FIELDS) else "",
    }
    charges, tiers = [], []
    for charge in document.get("charges") or []:
        transform = charge.get("transform") or {}
        charges.append({
            "metric": charge.get("metric", ""), "model": charge.get("model", ""),
            "unit_amount": _text(charge.get("unit_amount")),
            "transform_divide_by": _text(transform.get("divide_by")), "transform_round": transform.get("round", ""),
            "package_size": _text(charge.get("package_size")), "package_amount": _text(charge.get("package_amount")),
            "free_units": _text(charge.get("free_units")),
            "rule": charge.get("rule", ""),
            "params": json.dumps(charge["params"], default=_plain) if charge.get("model") == "custom" and "params" in charge
            else "",
        })
        tiers.append([{"up_to": _text(t.get("up_to")), "unit_amount": _text(t.get("unit_amount")),
                       "flat_amount": _text(t.get("flat_amount"))} for t in charge.get("tiers") or []])
    return plan, charges, tiers


def _put(doc: dict, key: str, value: str) -> None:
    if value not in (None, ""):
        doc[key] = value


# "plan 'pro', charge 2 (api_calls), field 'tiers[1].up_to': must be ..." -> (2, "tiers[1].up_to", "must be ...")
_CHARGE_RE = re.compile(r"^, charge (\d+)(?: \([^)]*\))?")
_FIELD_RE = re.compile(r"^, field '(.*?)': ")
_TIER_FIELD_RE = re.compile(r"^tiers\[(\d+)\]\.(up_to|unit_amount|flat_amount)$")
_CHARGE_FIELDS = {"metric": "metric", "model": "model", "unit_amount": "unit_amount", "package_size": "package_size",
                  "package_amount": "package_amount", "free_units": "free_units", "rule": "rule",
                  "transform": "transform_divide_by", "transform.divide_by": "transform_divide_by",
                  "transform.round": "transform_round", "tiers": None}
_PLAN_FIELDS = ("code", "name", "currency", "interval", "base_fee", "trial_days", "minimum_commitment", "included_credit",
                "payment_terms_days")
KEPT_FIELDS = ("marketplace_dimensions",)


class PlanBuilder:
    """The plan form, its charges and each charge's tiers, bound to one request's data (or to a document)."""

    def __init__(self, data=None, *, document: dict | None = None, metric_codes=(), code_fixed: str | None = None,
                 is_public: bool = True, metric_names: dict[str, str] | None = None):
        self.metric_codes = tuple(metric_codes)
        plan_initial, charges_initial, tiers_initial = document_initial(document or {"charges": []})
        plan_initial["is_public"] = is_public
        if code_fixed is not None:
            plan_initial["code"] = code_fixed
        self.plan = PlanFieldsForm(data, initial=plan_initial, code_fixed=code_fixed)
        kwargs = {"metric_codes": self.metric_codes, "metric_names": metric_names}
        self.charges = ChargeFormSet(data, initial=None if data is not None else charges_initial, prefix="charges",
                                     form_kwargs=kwargs)
        self.tiers: list[forms.BaseFormSet] = []
        for index in range(len(self.charges.forms)):
            initial = tiers_initial[index] if data is None and index < len(tiers_initial) else None
            self.tiers.append(TierFormSet(data, initial=initial, prefix=f"charges-{index}-tiers"))
        # The page's templates for a new charge (its prefix "charges-__prefix__") and a new tier
        # ("charges-__charge__-tiers-__prefix__"): the page's script puts the row numbers in.
        self.empty_charge = self.charges.empty_form
        self.empty_tiers = TierFormSet(prefix="charges-__prefix__-tiers")
        self.empty_tier = TierFormSet(prefix="charges-__charge__-tiers").empty_form
        self._document: dict | None = None
        self.spec = None

    # --- the rows, as the template shows them
    def charge_rows(self):
        return [{"form": form, "tiers": self.tiers[index], "index": index}
                for index, form in enumerate(self.charges.forms)]

    def _kept(self) -> list[tuple[forms.Form, list[forms.Form]]]:
        """The charges and tiers not removed, in order: the document's charges and tiers, numbered as it numbers them."""
        kept = []
        for form, tiers in zip(self.charges.forms, self.tiers, strict=True):
            if self.charges.can_delete and self.charges._should_delete_form(form):
                continue
            if not form.has_changed() and form.empty_permitted:
                continue
            rows = [t for t in tiers.forms
                    if not tiers._should_delete_form(t) and (t.has_changed() or not t.empty_permitted)]
            kept.append((form, rows))
        return kept

    def is_valid(self) -> bool:
        """The forms are valid and their document is a valid plan (its errors are put next to their fields)."""
        valid = self.plan.is_valid() & self.charges.is_valid()
        for tiers in self.tiers:
            valid &= tiers.is_valid()
        if not valid:
            return False
        document = self.document()
        try:
            self.spec = parse_plan(document, metric_codes=self.metric_codes)
        except DocumentError as exc:
            self._place(exc.errors, document)
            return False
        self._document = plan_to_document(self.spec)
        return True

    @property
    def has_errors(self) -> bool:
        """Whether any of the forms shows an error (after is_valid())."""
        return bool(self.plan.errors or self.charges.non_form_errors() or any(f.errors for f in self.charges.forms)
                    or any(t.non_form_errors() or any(f.errors for f in t.forms) for t in self.tiers))

    @property
    def canonical(self) -> dict:
        """The canonical document (after is_valid())."""
        return self._document

    @property
    def is_public(self) -> bool:
        return bool(self.plan.cleaned_data.get("is_public"))

    def document(self) -> dict:
        """The plan document the forms say, before validation (numbers as typed, as strings)."""
        data = self.plan.cleaned_data
        doc: dict[str, Any] = {"code": self.plan.code_fixed or data.get("code"), "name": data.get("name"),
                               "currency": data.get("currency"), "interval": data.get("interval")}
        _put(doc, "base_fee", data.get("base_fee"))
        doc["trial_days"] = data.get("trial_days") or 0
        _put(doc, "minimum_commitment", data.get("minimum_commitment"))
        _put(doc, "included_credit", data.get("included_credit"))
        if data.get("payment_terms_days") is not None:
            doc["payment_terms_days"] = data["payment_terms_days"]
        try:
            kept = json.loads(data.get("kept") or "{}")
        except ValueError:
            kept = {}
        if isinstance(kept, dict):
            doc.update({key: kept[key] for key in KEPT_FIELDS if key in kept})
        doc["charges"] = [self._charge_document(form.cleaned_data, [t.cleaned_data for t in tiers])
                          for form, tiers in self._kept()]
        return doc

    @staticmethod
    def _charge_document(data: dict, tiers: list[dict]) -> dict:
        model = data.get("model")
        doc: dict[str, Any] = {"metric": data.get("metric"), "model": model}
        if model == "per_unit":
            _put(doc, "unit_amount", data.get("unit_amount"))
            if data.get("transform_divide_by") or data.get("transform_round"):
                transform: dict[str, Any] = {}
                _put(transform, "divide_by", data.get("transform_divide_by"))
                _put(transform, "round", data.get("transform_round"))
                doc["transform"] = transform
        elif model == "package":
            for key in ("package_size", "package_amount", "free_units"):
                _put(doc, key, data.get(key))
        elif model in TIERED:
            rows = []
            for tier in tiers:
                row: dict[str, Any] = {"up_to": tier.get("up_to") or None}
                _put(row, "unit_amount", tier.get("unit_amount"))
                _put(row, "flat_amount", tier.get("flat_amount"))
                rows.append(row)
            doc["tiers"] = rows
        elif model == "custom":
            _put(doc, "rule", data.get("rule"))
            doc["params"] = data.get("params") or {}
        return doc

    def _place(self, messages: list[str], document: dict) -> None:
        """Each message of the plan format next to the field it names; what names no field, on the plan."""
        code = document.get("code")
        label = f"plan {code.strip()!r}" if isinstance(code, str) and code.strip() else "plan (without a code)"
        kept = self._kept()
        for message in messages:
            rest = message[len(label):] if message.startswith(label) else None
            if rest is None:
                self.plan.add_error(None, message)
                continue
            charge_match = _CHARGE_RE.match(rest)
            if charge_match:
                rest = rest[charge_match.end():]
            field_match = _FIELD_RE.match(rest)
            fieldname, text = (field_match.group(1), rest[field_match.end():]) if field_match else (None, rest.lstrip(": "))
            if not charge_match:
                target = fieldname if fieldname in _PLAN_FIELDS else None
                self.plan.add_error(target, text if target else message)
                continue
            position = int(charge_match.group(1)) - 1
            if position >= len(kept):
                self.plan.add_error(None, message)
                continue
            charge_form, tier_forms = kept[position]
            tier_match = _TIER_FIELD_RE.match(fieldname or "")
            if tier_match and int(tier_match.group(1)) < len(tier_forms):
                tier_forms[int(tier_match.group(1))].add_error(tier_match.group(2), text)
            elif fieldname and fieldname.startswith("params"):
                charge_form.add_error("params", f"{fieldname}: {text}")
            elif fieldname in _CHARGE_FIELDS and _CHARGE_FIELDS[fieldname]:
                charge_form.add_error(_CHARGE_FIELDS[fieldname], text)
            else:
                charge_form.add_error(None, f"{fieldname}: {text}" if fieldname else text)


def quantity_or_error(text: str) -> tuple[Decimal | None, str | None]:
    """A simulator quantity: a decimal, 0 or more, below 10^18, of at most 64 characters (a metric's quantity after
    its divisor can have many decimal places: the engine prices it exactly); (None, message) otherwise."""
    from decimal import InvalidOperation

    text = (text or "").strip()
    if not text:
        return Decimal(0), None
    if len(text) > NUMBER_MAX_LENGTH:
        return None, f"at most {NUMBER_MAX_LENGTH} characters"
    try:
        value = Decimal(text)
    except InvalidOperation:
        return None, f"{text[:20]!r} is not a number"
    if not value.is_finite() or value < 0:
        return None, "must be a number, 0 or more"
    if value and value.adjusted() >= 18:
        return None, "is too large (below 10^18)"
    return abs(value), None
