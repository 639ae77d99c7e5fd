"""The Metric model moves from the metering app to the catalog in tenants (issue 14: tenants below metering).

Only Django's idea of where the model lives changes: the table keeps its name (``metering_metric``), its rows,
its constraints and the foreign keys that point at it, so nothing is written but the content type, which
moves with the model (the admin's log and the permissions granted on metrics keep pointing at it).
metering's 0009 then drops the model from its own state.
"""

import django.db.models.deletion
from decimal import Decimal
from django.db import migrations, models


def _move(apps, schema_editor, source: str, target: str) -> None:
    ContentType = apps.get_model("contenttypes", "ContentType")
    db = schema_editor.connection.alias
    if ContentType.objects.using(db).filter(app_label=target, model="metric").exists():
        return  # already there (a database that never had the old one, once post_migrate ran)
    ContentType.objects.using(db).filter(app_label=source, model="metric").update(app_label=target)


def move_content_type(apps, schema_editor):
    _move(apps, schema_editor, "metering", "tenants")


def move_content_type_back(apps, schema_editor):
    _move(apps, schema_editor, "tenants", "metering")


class Migration(migrations.Migration):

    dependencies = [
        ('tenants', '0005_charge_spec_help_names_docs_plans'),
        ('metering', '0008_monthly_usage'),
        ('contenttypes', '0002_remove_content_type_name'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(state_operations=[
        migrations.CreateModel(
            name='Metric',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('code', models.SlugField(help_text='Stable identifier used by plan charges.', max_length=64, unique=True)),
                ('name', models.CharField(max_length=200)),
                ('aggregation', models.CharField(choices=[('count', 'count'), ('sum', 'sum'), ('max', 'max'), ('unique_count', 'unique count')], max_length=20)),
                ('field', models.CharField(blank=True, help_text='Column of the access-log table; empty for count.', max_length=64)),
                ('filters', models.JSONField(blank=True, default=dict)),
                ('divisor', models.DecimalField(decimal_places=6, default=Decimal('1'), max_digits=24)),
                ('unit', models.CharField(blank=True, max_length=40)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('updated_at', models.DateTimeField(auto_now=True)),
            ],
            options={
                'db_table': 'metering_metric',
                'ordering': ['code'],
                'constraints': [models.CheckConstraint(condition=models.Q(('aggregation__in', ['count', 'sum', 'max', 'unique_count'])), name='metric_aggregation_known'), models.CheckConstraint(condition=models.Q(('divisor__gt', 0)), name='metric_divisor_positive'), models.CheckConstraint(condition=models.Q(models.Q(('aggregation', 'count'), ('field', '')), models.Q(models.Q(('aggregation', 'count'), _negated=True), models.Q(('field', ''), _negated=True)), _connector='OR'), name='metric_field_iff_not_count')],
            },
        ),
        migrations.AlterField(
            model_name='charge',
            name='metric',
            field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='charges', to='tenants.metric'),
        ),
        ]),
        migrations.RunPython(move_content_type, move_content_type_back, elidable=False),
    ]
