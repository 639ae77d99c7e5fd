"""API keys for machines (issue 15): hashed keys of a tenant, with scopes; the invariants in the database."""

import django.db.models.deletion
import django.db.models.functions.text
import django.db.models.lookups
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('tenants', '0006_metric_moved_from_metering'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='ApiKey',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('name', models.CharField(help_text='What the key is for (shown in lists).', max_length=100)),
                ('prefix', models.CharField(editable=False, help_text="The key's first part (mk_<prefix>_…): shown, and how the key is found.", max_length=8, unique=True)),
                ('secret_hash', models.CharField(editable=False, help_text='SHA-256 of the whole key (hex).', max_length=64)),
                ('scopes', models.JSONField(help_text='What the key may do: a non-empty list of events:write and usage:read.')),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('last_used_at', models.DateTimeField(blank=True, help_text='Recorded at most once a minute (so a busy key does not write on every request).', null=True)),
                ('revoked_at', models.DateTimeField(blank=True, null=True)),
                ('created_by', models.ForeignKey(blank=True, help_text='The login that made the key (none: a command).', null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                ('revoked_by', models.ForeignKey(blank=True, help_text='The login that revoked the key (none: a command).', null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                ('tenant', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='api_keys', to='tenants.tenant')),
            ],
            options={
                'verbose_name': 'API key',
                'ordering': ['tenant', '-created_at'],
                'constraints': [models.CheckConstraint(condition=models.Q(('prefix__regex', '^[a-z0-9]{8}$')), name='api_key_prefix_shape'), models.CheckConstraint(condition=models.Q(('secret_hash__regex', '^[0-9a-f]{64}$')), name='api_key_hash_shape'), models.CheckConstraint(condition=models.Q(django.db.models.lookups.GreaterThanOrEqual(django.db.models.functions.text.Length('name'), 1), django.db.models.lookups.LessThanOrEqual(django.db.models.functions.text.Length('name'), 100)), name='api_key_name_length'), models.CheckConstraint(condition=models.Q(('scopes__in', [['events:write'], ['usage:read'], ['events:write', 'usage:read']])), name='api_key_scopes_known'), models.CheckConstraint(condition=models.Q(('revoked_at__isnull', True), ('revoked_at__gte', models.F('created_at')), _connector='OR'), name='api_key_revoked_after_created'), models.CheckConstraint(condition=models.Q(('last_used_at__isnull', True), ('last_used_at__gte', models.F('created_at')), _connector='OR'), name='api_key_used_after_created'), models.CheckConstraint(condition=models.Q(('revoked_by__isnull', True), ('revoked_at__isnull', False), _connector='OR'), name='api_key_revoked_by_only_if_revoked')],
            },
        ),
    ]
