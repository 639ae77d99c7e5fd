"""Plans as documents (docs/plans.md): save with versioning, import a file, export everything."""

from dataclasses import dataclass, field
from decimal import Decimal

from django.db import transaction

from metering.pricing.documents import (
    DocumentError,
    metric_to_document,
    parse_metric,
    parse_plan,
    parse_plan_file,
    plan_to_document,
)
from portal.kernel import ApplicationError
from tenants.models import Charge, Metric, Plan, PlanVersion, Subscription, SubscriptionChange


@dataclass
class ImportReport:
    """What an import did, per code: created, updated, new version or unchanged."""

    metrics: dict[str, str] = field(default_factory=dict)
    plans: dict[str, str] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return any(v != "unchanged" for v in (*self.metrics.values(), *self.plans.values()))

    def lines(self) -> list[str]:
        return [f"metric {code}: {what}" for code, what in self.metrics.items()] + [
            f"plan {code}: {what}" for code, what in self.plans.items()
        ]


def metric_save(*, spec) -> tuple[Metric, str]:
    doc = metric_to_document(spec)
    values = {
        "name": spec.name,
        "event": spec.event,
        "aggregation": spec.aggregation,
        "field": spec.field or "",
        "filters": doc.get("filters", {}),
        "divisor": Decimal(spec.divisor),
        "unit": spec.unit or "",
    }
    metric = Metric.objects.filter(code=spec.code).first()
    if metric is None:
        return Metric.objects.create(code=spec.code, **values), "created"
    if metric.to_document() == doc:
        return metric, "unchanged"
    for key, value in values.items():
        setattr(metric, key, value)
    metric.save()
    return metric, "updated"


def _version_in_use(version: PlanVersion) -> bool:
    return (
        Subscription.objects.filter(plan_version=version).exists()
        or SubscriptionChange.objects.filter(from_version=version).exists()
        or SubscriptionChange.objects.filter(to_version=version).exists()
    )


def _write_version(version: PlanVersion, spec, document: dict) -> None:
    version.document = document
    version.name = spec.name
    version.currency = spec.currency
    version.interval = spec.interval
    version.base_fee = spec.base_fee
    version.trial_days = spec.trial_days
    version.minimum_commitment = spec.minimum_commitment
    version.save()
    version.charges.all().delete()
    metrics = {m.code: m for m in Metric.objects.filter(code__in=[c.metric for c in spec.charges])}
    Charge.objects.bulk_create(
        Charge(
            plan_version=version,
            position=position,
            metric=metrics[charge_doc["metric"]],
            model=charge_doc["model"],
            spec={k: v for k, v in charge_doc.items() if k not in ("metric", "model")},
        )
        for position, charge_doc in enumerate(document["charges"], start=1)
    )


def plan_save(*, document: dict, is_public: bool | None = None) -> tuple[PlanVersion, str]:
    """Validate and store a plan document.

    Editing a plan whose current version has (or had) subscribers makes a new version, so those
    subscriptions keep their prices until moved; otherwise the current version is edited in place.
    """
    try:
        spec = parse_plan(document, metric_codes=Metric.objects.values_list("code", flat=True))
    except DocumentError as exc:
        raise ApplicationError(str(exc), {"errors": exc.errors}) from exc
    canonical = plan_to_document(spec)
    with transaction.atomic():
        plan, created = Plan.objects.select_for_update().get_or_create(code=spec.code, defaults={"name": spec.name})
        plan_fields = []
        if plan.name != spec.name:
            plan.name = spec.name
            plan_fields.append("name")
        if is_public is not None and plan.is_public != is_public:
            plan.is_public = is_public
            plan_fields.append("is_public")
        if plan_fields:
            plan.save(update_fields=[*plan_fields, "updated_at"])
        current = plan.current_version
        if current is not None and current.document == canonical:
            return current, "unchanged"
        if current is None:
            version, outcome = PlanVersion(plan=plan, version=1), "created"
        elif _version_in_use(current):
            version, outcome = PlanVersion(plan=plan, version=current.version + 1), f"new version {current.version + 1}"
        else:
            version, outcome = current, "updated"
        _write_version(version, spec, canonical)
    return version, outcome


def plans_import(*, document) -> ImportReport:
    """Import a plans file (one plan, or {"metrics": [...], "plans": [...]}) all or nothing."""
    try:
        metric_specs, plan_specs = parse_plan_file(
            document, existing_metric_codes=set(Metric.objects.values_list("code", flat=True))
        )
    except DocumentError as exc:
        raise ApplicationError(str(exc), {"errors": exc.errors}) from exc
    report = ImportReport()
    with transaction.atomic():
        for spec in metric_specs:
            report.metrics[spec.code] = metric_save(spec=spec)[1]
        for spec in plan_specs:
            report.plans[spec.code] = plan_save(document=plan_to_document(spec))[1]
    return report


def plans_export() -> dict:
    """Every metric and the current version of every plan, in the import format."""
    plans = []
    for plan in Plan.objects.order_by("code"):
        current = plan.current_version
        if current is not None:
            plans.append(current.document)
    return {
        "metrics": [metric.to_document() for metric in Metric.objects.order_by("code")],
        "plans": plans,
    }


def metric_document_save(*, document: dict) -> tuple[Metric, str]:
    try:
        spec = parse_metric(document)
    except DocumentError as exc:
        raise ApplicationError(str(exc), {"errors": exc.errors}) from exc
    return metric_save(spec=spec)
