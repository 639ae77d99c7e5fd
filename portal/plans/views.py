"""The plan builder's pages (admin, staff only), registered in portal/urls.py before the admin's URLs.

- /admin/plans/new/ and /admin/plans/<code>/builder/: a plan version as a form, with the simulator beside it.
  "Simulate" prices the form's plan (unsaved) for the quantities given, or for a tenant's usage in a past
  month, through the pricing engine, next to another version of the plan for the same quantities; "Save"
  stores it through tenants.services.plans.plan_save (a new version when the current one is in use).
- /admin/plans/<code>/versions/: every version with its subscribers, two versions compared for the same
  quantities, and chosen subscriptions moved to a version from a date, after a preview of the invoice the
  change lands on (metering.selectors.billing.plan_change_preview), through subscription_change_plan.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone

from metering.pricing import (
    DocumentError,
    PricedPeriod,
    add_months,
    calendar_period,
    format_amount,
    format_plain,
    format_quantity,
    loads_document,
    price_plan,
    tier_breakdown,
    tiers_document,
)
from metering.selectors.billing import plan_change_preview
from metering.selectors.usage import period_quantities
from metering.services.billing.catalog import Catalog
from portal.kernel import ApplicationError
from portal.plans.forms import PlanBuilder, quantity_or_error
from tenants.models import Metric, Plan, Subscription, SubscriptionChange, SubscriptionStatus, Tenant
from tenants.services.plans import plan_save
from tenants.services.subscriptions import subscription_change_plan, subscription_change_withdraw

MOVE_HORIZON = timedelta(days=3653)  # a move's date is within ten years of today (periods stay computable)
IMPORT_MAX_LENGTH = 200_000  # a plan document pasted into the builder (the import command takes whole files)
_MONTH_RE = re.compile(r"^(\d{4})-(\d{2})$")


def _require(request, *perms: str) -> None:
    if not any(request.user.has_perm(perm) for perm in perms):
        raise PermissionDenied


def _metrics() -> dict[str, Metric]:
    return {metric.code: metric for metric in Metric.objects.order_by("code")}


def _builder_for(data=None, *, plan: Plan | None, metrics: dict[str, Metric], document: dict | None = None
                 ) -> PlanBuilder:
    """The builder of `plan` (None: a new plan), bound to `data` or showing `document`."""
    return PlanBuilder(data, document=document, metric_codes=metrics,
                       metric_names={code: metric.name for code, metric in metrics.items()},
                       code_fixed=plan.code if plan else None, is_public=plan.is_public if plan else True)


# --- the simulator ----------------------------------------------------------------------------------


def bill_view(priced: PricedPeriod, metrics: dict[str, Metric], title: str) -> dict:
    """A priced period as the simulator shows it: lines with their quantity, amount and tier breakdown."""
    currency = priced.currency
    lines = []
    for line in priced.lines:
        item = {"type": line.type, "description": line.description, "amount": format_amount(line.amount, currency),
                "metric": line.metric, "model": line.model, "quantity": None, "unit": "", "tiers": []}
        if line.type == "usage":
            metric = metrics.get(line.metric)
            item["description"] = f"{metric.name if metric else line.metric} ({line.model})"
            item["quantity"] = format_quantity(line.quantity)
            item["unit"] = metric.unit if metric else ""
            if line.charge is not None:
                item["tiers"] = tiers_document(tier_breakdown(line.charge, line.quantity, currency), currency)
        lines.append(item)
    bill = {"title": title, "currency": currency, "lines": lines, "total": format_amount(priced.total, currency),
            "total_value": priced.total, "period": (priced.period_start, priced.period_end), "adjusted": False}
    totals = priced.totals  # coupons, tax and credits, when the caller applied them (a subscription's invoice)
    if totals is not None and (totals.discounts or totals.shows_tax or totals.credits_applied):
        tax = totals.tax_terms
        bill.update({
            "adjusted": True, "subtotal": format_amount(totals.subtotal, currency),
            "discounts": [(d.label, format_amount(d.amount, currency)) for d in totals.discounts if d.amount],
            "tax": (f"{tax.name} ({format_plain(tax.percentage)} %{', included' if tax.inclusive else ''})",
                    format_amount(totals.tax, currency)) if totals.shows_tax else None,
            "total": format_amount(totals.total, currency), "total_value": totals.total,
            "credits": format_amount(totals.credits_applied, currency) if totals.credits_applied else "",
            "amount_due": format_amount(totals.amount_due, currency),
        })
    return bill


def simulate(spec, quantities: dict[str, Decimal], month: tuple[datetime, datetime], metrics, title: str) -> dict:
    """One plan priced at these quantities for the whole period of its interval (a calendar month or year) that
    holds `month`, as price_preview prices it: no trial, no proration."""
    start, end = calendar_period(month[0], spec.interval)
    priced = price_plan(spec, {code: quantities.get(code, Decimal(0)) for code in spec.metric_codes},
                        period_start=start, period_end=end)
    return bill_view(priced, metrics, title)


def _with_difference(bills: list[dict]) -> list[dict]:
    """Two bills side by side: the second gets its total less the first's (same currency only)."""
    if len(bills) == 2 and bills[0]["currency"] == bills[1]["currency"]:
        difference = bills[1]["total_value"] - bills[0]["total_value"]
        sign = "+" if difference > 0 else ""
        bills[1]["difference"] = f"{sign}{format_amount(difference, bills[1]['currency'])}"
    return bills


def _month_period(text: str, now: datetime) -> tuple[datetime, datetime] | str:
    """A past (or the current) calendar month from "YYYY-MM", or the reason it is not one."""
    match = _MONTH_RE.match((text or "").strip())
    if not match or not 1 <= int(match.group(2)) <= 12 or int(match.group(1)) < 2000:
        return "Choose a month such as 2026-10."
    start = datetime(int(match.group(1)), int(match.group(2)), 1, tzinfo=UTC)
    if start > now:
        return "Choose a past month (or this one): the future has no usage yet."
    return start, add_months(start, 1)


class Simulation:
    """The simulator's inputs from a request: quantities per metric, or a tenant and a month to read them from."""

    def __init__(self, data, metric_codes: list[str], now: datetime):
        self.metric_codes = metric_codes
        self.values = {code: (data.get(f"q-{code}") or "").strip()[:80] for code in metric_codes}
        self.errors: dict[str, str] = {}
        self.error = ""
        self.tenant_slug = (data.get("sim_tenant") or "").strip()[:63]
        self.month = (data.get("sim_month") or "").strip()[:7]
        self.period = calendar_period(now, "month")
        self.quantities: dict[str, Decimal] = {}
        self.source = ""
        if data.get("action") == "prefill":
            self._prefill(now)
        for code in metric_codes:
            value, problem = quantity_or_error(self.values[code])
            if problem:
                self.errors[code] = problem
            else:
                self.quantities[code] = value
        if self.month and not self.error and data.get("action") != "prefill":
            period = _month_period(self.month, now)
            if isinstance(period, tuple):
                self.period = period

    def _prefill(self, now: datetime) -> None:
        tenant = Tenant.objects.filter(slug=self.tenant_slug).first()
        if tenant is None:
            self.error = "Choose a tenant to take the usage of."
            return
        period = _month_period(self.month, now)
        if isinstance(period, str):
            self.error = period
            return
        try:
            found = period_quantities(subscription_or_tenant=tenant, metrics=self.metric_codes, start=period[0],
                                      end=period[1])
        except ApplicationError as exc:  # the lake did not answer (a unique_count metric over a part of a month)
            self.error = f"The usage could not be read: {exc.message}"
            return
        self.period = period
        self.values = {code: format_plain(found.get(code, Decimal(0))) for code in self.metric_codes}
        self.source = f"usage of {tenant.slug} in {period[0]:%Y-%m}"

    @property
    def valid(self) -> bool:
        return not self.errors and not self.error

    def rows(self, metrics: dict[str, Metric]) -> list[dict]:
        return [{"code": code, "name": metrics[code].name if code in metrics else code,
                 "unit": metrics[code].unit if code in metrics else "", "value": self.values.get(code, ""),
                 "error": self.errors.get(code, "")} for code in self.metric_codes]


def _simulator_context(request, now: datetime) -> dict:
    return {"tenants": list(Tenant.objects.order_by("slug").values_list("slug", flat=True)[:1000]),
            "months": [f"{add_months(calendar_period(now)[0], -i):%Y-%m}" for i in range(13)]}


# --- the builder ------------------------------------------------------------------------------------


def plan_builder(request, code: str | None = None):
    plan = get_object_or_404(Plan, code=code) if code is not None else None
    _require(request, "tenants.view_plan", "tenants.change_plan", "tenants.add_plan")
    metrics = _metrics()
    versions = list(plan.versions.order_by("-version")) if plan else []
    now = timezone.now()
    source = versions[0] if versions else None
    if source is not None and request.GET.get("version"):
        source = next((v for v in versions if str(v.version) == request.GET["version"]), source)
    if source is not None and request.GET.get("format") == "json":
        response = HttpResponse(json.dumps(source.document, indent=2), content_type="application/json")
        response["Content-Disposition"] = f'attachment; filename="{plan.code}-v{source.version}.json"'
        return response
    posted = request.method == "POST"
    action = request.POST.get("action", "") if posted else ""
    context = {"plan": plan, "versions": versions, "import_error": "", "import_text": "", "bills": [],
               "document_json": ""}

    if action == "load":
        builder, context["import_text"] = _load(request, plan, metrics, context)
    elif posted:
        builder = _builder_for(request.POST, plan=plan, metrics=metrics)
    else:
        builder = _builder_for(plan=plan, metrics=metrics, document=source.document if source else None)
    sim = Simulation(request.POST if posted and action != "load" else {}, list(metrics), now)
    wanted = request.POST.get("compare", "") if posted else (str(source.version) if source else "")
    compare_with = next((v for v in versions if str(v.version) == wanted), None)

    if posted and action in ("save", "simulate", "prefill"):
        if action == "save":
            _require(request, "tenants.change_plan" if plan else "tenants.add_plan")
        if builder.is_valid():
            if plan is None and Plan.objects.filter(code=builder.canonical["code"]).exists():
                builder.plan.add_error("code", "A plan with this code exists: open it in the builder to change it.")
            elif action == "save":
                try:
                    version, outcome = plan_save(document=builder.canonical, is_public=builder.is_public)
                except ApplicationError as exc:
                    for message in exc.extra.get("errors") or [exc.message]:
                        builder.plan.add_error(None, message)
                else:
                    messages.success(request, f"Plan {version.plan.code}: {outcome} (version {version.version}).")
                    return redirect(reverse("admin-plan-versions", args=[version.plan.code]))
            else:
                context["document_json"] = json.dumps(builder.canonical, indent=2)
                if sim.valid:
                    # The saved version first, then the form: the difference is what the change does.
                    bills = [simulate(builder.spec, sim.quantities, sim.period, metrics, "This form (not saved)")]
                    if compare_with is not None:
                        bills.insert(0, simulate(compare_with.to_spec(), sim.quantities, sim.period, metrics,
                                                 f"Version {compare_with.version} (saved)"))
                    context["bills"] = _with_difference(bills)

    context.update(_simulator_context(request, now))
    context.update({
        **admin.site.each_context(request),
        "title": f"Plan builder: {plan.code}" if plan else "Plan builder: a new plan",
        "builder": builder,
        "simulation": sim,
        "sim_rows": sim.rows(metrics),
        "compare_choice": str(compare_with.version) if compare_with else "",
        "can_save": request.user.has_perm("tenants.change_plan" if plan else "tenants.add_plan"),
        "source": source,
    })
    return TemplateResponse(request, "portal/plans/builder.html", context)


def _load(request, plan, metrics, context):
    """The builder filled from a pasted plan document (the JSON path into the form)."""
    text = request.POST.get("document", "")
    problem = ""
    document = None
    if len(text) > IMPORT_MAX_LENGTH:
        problem = f"The document is longer than {IMPORT_MAX_LENGTH:,} characters: import it with import_plans."
    else:
        try:
            document = loads_document(text)
        except DocumentError as exc:
            problem = f"Not valid JSON: {exc}"
        else:
            if not isinstance(document, dict) or not isinstance(document.get("charges", []), list) or not all(
                    isinstance(c, dict) for c in document.get("charges") or []) or not all(
                    isinstance(c.get("tiers", []), list) and all(isinstance(t, dict) for t in c.get("tiers") or [])
                    for c in document.get("charges") or []):
                problem = "A plan document is a JSON object with a list of charges (docs/plans.md)."
                document = None
            elif plan is not None and document.get("code") != plan.code:
                problem = f"This is plan {plan.code!r}: the document's code must be {plan.code!r}."
                document = None
    context["import_error"] = problem
    if document is None:
        current = plan.current_version if plan else None
        builder = _builder_for(plan=plan, metrics=metrics, document=current.document if current else None)
        return builder, text[:IMPORT_MAX_LENGTH]
    try:
        builder = _builder_for(plan=plan, metrics=metrics, document=document)
    except (TypeError, ValueError, AttributeError):
        context["import_error"] = "This document does not fit the builder: check it against docs/plans.md."
        builder = _builder_for(plan=plan, metrics=metrics)
    return builder, ""


# --- versions and moves -----------------------------------------------------------------------------


class MoveForm(forms.Form):
    subscriptions = forms.TypedMultipleChoiceField(coerce=int, choices=(), widget=forms.CheckboxSelectMultiple,
                                                   error_messages={"required": "Choose the subscriptions to move."})
    to_version = forms.TypedChoiceField(coerce=int, choices=(), label="Move to version")
    at = forms.DateTimeField(label="From (UTC)", widget=forms.DateTimeInput(attrs={"type": "datetime-local"},
                                                                           format="%Y-%m-%dT%H:%M"),
                             input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"])

    def __init__(self, *args, subscriptions=(), versions=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["subscriptions"].choices = [(s.pk, str(s.pk)) for s in subscriptions]
        self.fields["to_version"].choices = [(v.version, f"v{v.version}") for v in versions]

    def clean_at(self):
        at = self.cleaned_data["at"]
        if timezone.is_naive(at):
            at = timezone.make_aware(at, UTC)
        now = timezone.now()
        if not now - MOVE_HORIZON <= at <= now + MOVE_HORIZON:
            raise forms.ValidationError("Choose a date within ten years of today.")
        return at


def plan_versions(request, code: str):
    plan = get_object_or_404(Plan, code=code)
    _require(request, "tenants.view_plan", "tenants.change_plan")
    metrics = _metrics()
    now = timezone.now()
    versions = list(plan.versions.order_by("-version"))
    by_number = {v.version: v for v in versions}
    subscriptions = list(Subscription.objects.filter(plan_version__plan=plan, status=SubscriptionStatus.ACTIVE)
                         .select_related("tenant", "plan_version__plan").order_by("tenant__slug"))
    scheduled = {change.subscription_id: change for change in SubscriptionChange.objects.filter(
        subscription__in=subscriptions, changed_at__gt=now).select_related("to_version")}
    for sub in subscriptions:
        sub.scheduled_change = scheduled.get(sub.pk)  # a move still to come: it is on its version until then
    counts: dict[int, int] = {}
    for sub in subscriptions:
        counts[sub.plan_version_id] = counts.get(sub.plan_version_id, 0) + 1
    rows = [{"version": v, "subscribers": counts.get(v.pk, 0), "charges": ", ".join(
        f"{c['metric']} ({c['model']})" for c in v.document.get("charges", []))} for v in versions]

    # Two versions compared for the same quantities (GET: a bookmarkable comparison).
    compare = None
    if versions:
        a = by_number.get(_int(request.GET.get("a")), versions[-1] if len(versions) > 1 else versions[0])
        b = by_number.get(_int(request.GET.get("b")), versions[0])
        sim = Simulation(request.GET, list(metrics), now)
        bills = []
        if sim.valid and ("compare" in request.GET or request.GET.get("action") == "prefill"):
            bills = _with_difference([simulate(v.to_spec(), sim.quantities, sim.period, metrics, f"Version {v.version}")
                                      for v in (a, b)])
        compare = {"a": a.version, "b": b.version, "simulation": sim, "rows": sim.rows(metrics), "bills": bills}

    if request.method == "POST" and request.POST.get("action") == "withdraw":
        _require(request, "tenants.change_subscription")
        return _withdraw(request, plan, scheduled)

    move_form = MoveForm(request.POST or None, subscriptions=subscriptions, versions=versions,
                         initial={"to_version": versions[0].version if versions else None,
                                  "at": now.replace(second=0, microsecond=0)})
    previews, refusals = [], []
    if request.method == "POST":
        _require(request, "tenants.change_subscription")
        if move_form.is_valid():
            target = by_number[move_form.cleaned_data["to_version"]]
            at = move_form.cleaned_data["at"]
            chosen = [s for s in subscriptions if s.pk in set(move_form.cleaned_data["subscriptions"])]
            if request.POST.get("action") == "move":
                moving = [sub for sub in chosen if sub.plan_version_id != target.pk]  # the others are on it already
                try:
                    with transaction.atomic():
                        for sub in moving:
                            try:
                                subscription_change_plan(subscription=sub, plan_version=target, at=at)
                            except ApplicationError as exc:  # none moves: say whose move was refused
                                raise ApplicationError(f"{sub.tenant.slug}: {exc.message}") from exc
                except ApplicationError as exc:
                    move_form.add_error(None, exc.message)
                else:
                    messages.success(request, f"Moved {len(moving)} subscription(s) to {target} from "
                                              f"{at:%Y-%m-%d %H:%M} UTC.")
                    return redirect(reverse("admin-plan-versions", args=[plan.code]))
            else:
                catalog = Catalog()
                for sub in chosen:
                    if sub.plan_version_id == target.pk:
                        refusals.append(f"{sub.tenant.slug} is on {target} already.")
                        continue
                    try:
                        before, after = plan_change_preview(subscription=sub, plan_version=target, at=at,
                                                            catalog=catalog)
                    except ApplicationError as exc:
                        refusals.append(f"{sub.tenant.slug}: {exc.message}")
                        continue
                    previews.append({"subscription": sub, "period": (before.period_start, before.period_end),
                                     "bills": _with_difference([bill_view(before, metrics, f"On {sub.plan_version}"),
                                                                bill_view(after, metrics, f"Moved to {target}")])})
    context = {
        **admin.site.each_context(request),
        "title": f"Versions of plan {plan.code}",
        "plan": plan, "rows": rows, "subscriptions": subscriptions, "move_form": move_form, "previews": previews,
        "refusals": refusals, "compare": compare, "versions": versions,
        "chosen": set(move_form.cleaned_data.get("subscriptions", [])) if move_form.is_bound and move_form.is_valid()
        else set(),
        "can_move": request.user.has_perm("tenants.change_subscription"),
        **_simulator_context(request, now),
    }
    return TemplateResponse(request, "portal/plans/versions.html", context)


def _withdraw(request, plan: Plan, scheduled: dict[int, SubscriptionChange]):
    """Withdraw a move still to come that staff scheduled here (a tenant's own request is withdrawn where it waits)."""
    change = next((c for c in scheduled.values() if c.pk == _int(request.POST.get("change"))), None)
    if change is None:
        messages.error(request, "That move has taken effect or was withdrawn already.")
    elif SubscriptionChange.objects.filter(pk=change.pk, request__isnull=False).exists():
        messages.error(request, "That move is a tenant's request: withdraw it on the request (Admin → Subscription "
                                "requests).")
    else:
        try:
            subscription_change_withdraw(change=change)
        except ApplicationError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, f"Withdrawn: the move to {change.to_version} from "
                                      f"{change.changed_at:%Y-%m-%d %H:%M} UTC.")
    return redirect(reverse("admin-plan-versions", args=[plan.code]))


def _int(text) -> int | None:
    try:
        return int(str(text)[:12])
    except (TypeError, ValueError):
        return None
