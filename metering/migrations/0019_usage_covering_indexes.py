"""Reads of usage answered from the indexes alone (index-only scans), for tables whose rows of one tenant or one
day are spread over the whole heap.

- hourly: on PostgreSQL the unique (tenant, metric, hour) index also carries ``value``. A tenant's month of
  hours (the usage API, billing, the tenant's dashboard) is ~1,440 rows on ~730 heap pages at 10,000 tenants
  (each hour's rows of every tenant are written together): with the value in the index the read is a dozen
  index pages. The constraint keeps its name and columns (ON CONFLICT infers it as before); SQLite cannot
  declare a unique constraint with INCLUDE (Django would drop it there), so this is PostgreSQL only and the
  model state is unchanged.
- daily: the (day) index becomes (day, metric) carrying tenant and value, so that the provider's dashboard
  groups a range of days of every tenant from the index (SQLite builds it without the included columns).
"""

from django.db import migrations, models

HOURLY_TABLE = "metering_hourlyusage"


def cover_hourly_value(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(f"ALTER TABLE {HOURLY_TABLE} DROP CONSTRAINT hourly_usage_one_per_hour")
    schema_editor.execute(f"ALTER TABLE {HOURLY_TABLE} ADD CONSTRAINT hourly_usage_one_per_hour "
                          "UNIQUE (tenant_id, metric_id, hour) INCLUDE (value)")


def uncover_hourly_value(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(f"ALTER TABLE {HOURLY_TABLE} DROP CONSTRAINT hourly_usage_one_per_hour")
    schema_editor.execute(f"ALTER TABLE {HOURLY_TABLE} ADD CONSTRAINT hourly_usage_one_per_hour "
                          "UNIQUE (tenant_id, metric_id, hour)")


class Migration(migrations.Migration):

    dependencies = [
        ('metering', '0018_billing_run_chunks'),
    ]

    operations = [
        migrations.RunPython(cover_hourly_value, uncover_hourly_value),
        migrations.RemoveIndex(model_name='dailyusage', name='daily_usage_day'),
        migrations.AddIndex(
            model_name='dailyusage',
            index=models.Index(fields=['day', 'metric'], include=('tenant', 'value'), name='daily_usage_day'),
        ),
    ]
