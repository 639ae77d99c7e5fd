"""Factories for tenants, plans and subscriptions (factory_boy), shared by every app's tests."""

from datetime import UTC, datetime

import factory

from tenants.models import Subscription, Tenant, TenantStatus
from tenants.services.plans import plans_import

SAMPLE_FILE = {
    "metrics": [
        {"code": "api_calls", "name": "API calls", "aggregation": "count", "filters": {"status": ["2xx"]}},
        {"code": "data_out_mb", "name": "Data out", "aggregation": "sum", "field": "response_length",
         "divisor": "1000000", "unit": "MB"},
    ],
    "plans": [
        {"code": "pro", "name": "Pro", "currency": "USD", "interval": "month", "base_fee": "49.00",
         "trial_days": 14, "minimum_commitment": "100.00",
         "charges": [
             {"metric": "api_calls", "model": "graduated",
              "tiers": [{"up_to": 10000, "unit_amount": "0"},
                        {"up_to": 1000000, "unit_amount": "0.0005"},
                        {"up_to": None, "unit_amount": "0.0002", "flat_amount": "25.00"}]},
             {"metric": "data_out_mb", "model": "per_unit", "unit_amount": "0.09"},
         ]},
        {"code": "starter", "name": "Starter", "currency": "USD", "interval": "month",
         "charges": [{"metric": "api_calls", "model": "per_unit", "unit_amount": "0.001"}]},
    ],
}


def import_sample_plans():
    """Import SAMPLE_FILE and return {code: current PlanVersion}."""
    from tenants.models import Plan

    plans_import(document=SAMPLE_FILE)
    return {plan.code: plan.current_version for plan in Plan.objects.all()}


class TenantFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Tenant
        django_get_or_create = ("slug",)

    slug = factory.Sequence(lambda n: f"tenant-{n}")
    name = factory.LazyAttribute(lambda o: o.slug.replace("-", " ").title())
    contact_email = factory.LazyAttribute(lambda o: f"billing@{o.slug}.example")
    status = TenantStatus.ACTIVE


class SubscriptionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Subscription

    tenant = factory.SubFactory(TenantFactory)
    started_at = datetime(2026, 10, 1, tzinfo=UTC)
