"""The Metric model moved from metering to tenants: a database migrated before the move keeps every metric,
the foreign keys to it (charges, usage) and its content type (the admin log and permissions), and the move
runs backwards too."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("tenants", "0005_charge_spec_help_names_docs_plans"), ("metering", "0008_monthly_usage")]
AFTER = [("tenants", "0006_metric_moved_from_metering"), ("metering", "0009_metric_moved_to_tenants")]


def _migrate(targets):
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    return MigrationExecutor(connection).loader.project_state(targets).apps


def _leaves():
    return MigrationExecutor(connection).loader.graph.leaf_nodes()


@pytest.mark.django_db(transaction=True)
def test_a_database_migrated_before_the_move_keeps_its_metrics_charges_usage_and_content_type():
    try:
        old = _migrate(BEFORE)
        ContentType = old.get_model("contenttypes", "ContentType")
        Permission = old.get_model("auth", "Permission")
        ContentType.objects.filter(model="metric").delete()  # as on a database that predates the move
        old_type = ContentType.objects.create(app_label="metering", model="metric")
        Permission.objects.create(content_type=old_type, codename="view_metric", name="Can view metric")

        Metric = old.get_model("metering", "Metric")
        metric = Metric.objects.create(code="api_calls", name="API calls", aggregation="count", unit="calls")
        tenant = old.get_model("tenants", "Tenant").objects.create(slug="acme", name="Acme", contact_email="a@acme.example")
        plan = old.get_model("tenants", "Plan").objects.create(code="pro", name="Pro")
        version = old.get_model("tenants", "PlanVersion").objects.create(
            plan=plan, version=1, document={"code": "pro"}, name="Pro", currency="USD", base_fee=Decimal("10"))
        old.get_model("tenants", "Charge").objects.create(plan_version=version, position=0, metric=metric,
                                                          model="per_unit", spec={"unit_amount": "0.01"})
        old.get_model("metering", "HourlyUsage").objects.create(
            tenant=tenant, metric=metric, hour=datetime(2026, 11, 1, 10, tzinfo=UTC), value=Decimal("42"))

        new = _migrate(AFTER)
        NewMetric = new.get_model("tenants", "Metric")
        moved = NewMetric.objects.get(code="api_calls")
        assert (moved.pk, moved.name, moved.unit) == (metric.pk, "API calls", "calls")
        assert new.get_model("tenants", "Charge").objects.get().metric_id == moved.pk
        assert new.get_model("metering", "HourlyUsage").objects.get().metric_id == moved.pk
        new_type = new.get_model("contenttypes", "ContentType").objects.get(model="metric")
        assert (new_type.pk, new_type.app_label) == (old_type.pk, "tenants")
        assert new.get_model("auth", "Permission").objects.get(codename="view_metric").content_type_id == old_type.pk

        # A charge still protects its metric, through the same table.
        with pytest.raises(Exception, match="(?i)protected|foreign key|constraint"):
            moved.delete()

        back = _migrate(BEFORE)
        assert back.get_model("metering", "Metric").objects.get(code="api_calls").pk == metric.pk
        assert back.get_model("contenttypes", "ContentType").objects.get(model="metric").app_label == "metering"
    finally:
        _migrate(_leaves())


@pytest.mark.django_db
def test_the_current_models_read_the_same_table():
    from metering.models import HourlyUsage
    from tenants.models import Charge, Metric

    assert Metric._meta.db_table == "metering_metric"
    assert Metric._meta.app_label == "tenants"
    assert Charge._meta.get_field("metric").related_model is Metric
    assert HourlyUsage._meta.get_field("metric").related_model is Metric
