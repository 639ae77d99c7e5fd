"""The Metric model now lives in tenants (its 0006): the usage tables' foreign keys point at it there, and the
model leaves metering's state. The database does not change: the table is the same one (``metering_metric``).
"""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('metering', '0008_monthly_usage'),
        ('tenants', '0006_metric_moved_from_metering'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(state_operations=[
        migrations.AlterField(
            model_name='dailyusage',
            name='metric',
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='daily_usage', to='tenants.metric'),
        ),
        migrations.AlterField(
            model_name='monthlyusage',
            name='metric',
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='monthly_usage', to='tenants.metric'),
        ),
        migrations.AlterField(
            model_name='hourlyusage',
            name='metric',
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='hourly_usage', to='tenants.metric'),
        ),
        migrations.AlterField(
            model_name='unattributedusage',
            name='metric',
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='unattributed_usage', to='tenants.metric'),
        ),
        migrations.DeleteModel(
            name='Metric',
        ),
        ]),
    ]
