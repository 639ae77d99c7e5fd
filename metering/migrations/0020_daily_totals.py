"""Every tenant's day of a count or sum metric added up (DailyTotal), kept by the usage sync with the days; filled
here from the daily rows already there (one INSERT ... SELECT ... GROUP BY: seconds for 10,000 tenants' months)."""

from datetime import date

import django.db.models.deletion
from django.db import migrations, models


def fill(apps, schema_editor):
    from metering.services.sync import rollup_day_totals

    daily, total = apps.get_model("metering", "DailyUsage"), apps.get_model("metering", "DailyTotal")
    rollup_day_totals(daily, total, first=date(1970, 1, 1), last=date(9999, 12, 31), using=schema_editor.connection.alias)


class Migration(migrations.Migration):

    dependencies = [
        ('metering', '0019_usage_covering_indexes'),
        ('tenants', '0015_time_zones'),
    ]

    operations = [
        migrations.CreateModel(
            name='DailyTotal',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('day', models.DateField(help_text='The UTC day.')),
                ('value', models.DecimalField(decimal_places=6, help_text="The day's usage of every tenant added up, before the divisor.", max_digits=30)),
                ('metric', models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='daily_totals', to='tenants.metric')),
            ],
            options={
                'ordering': ['-day', 'metric'],
                'constraints': [models.UniqueConstraint(fields=('metric', 'day'), name='daily_total_one_per_day'), models.CheckConstraint(condition=models.Q(('value__gte', 0)), name='daily_total_value_non_negative')],
            },
        ),
        migrations.RunPython(fill, migrations.RunPython.noop),
    ]
