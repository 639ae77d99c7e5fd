"""Usage in the portal database: hourly rows per tenant and metric, their daily and monthly rollups, unattributed usage, sync state.

Values are the metric's raw aggregate (events, bytes, distinct values...) BEFORE its divisor: the
divisor is applied when a figure is read, never stored (metering.selectors.period_quantities for
billing and the current totals, metering.api.selectors.scaled for the API's buckets, and the
dashboards' and the admin's display), so that changing a metric's divisor does not need a resync.
Every row holds its bucket's exact figure (docs/plans.md): count and sum metrics add up from hours to
days and months; a max metric's day or month is the largest of its hours; a unique_count metric's day
or month is the distinct count over the whole day or month, which the usage sync asks of the lake
(distinct values in a month are not the sum of those of its days). The one exception: the distinct
counts of a month listed in RollupBackfill (synced before they were exact) wait for the sync to
compute them, and meanwhile the period quantities of that month ask the lake.
"""

from django.db import models
from django.db.models import F, Q


class HourlyUsage(models.Model):
    # Two indexes, each paying for itself: the unique (tenant, metric, hour) constraint's serves a tenant's
    # reads (API, billing), and (hour) the sync's window (its rewrite, stale rows and day rollups) across all
    # tenants, which without it read every row of the window's metrics: 21.6 million a month at 10,000
    # tenants (docs/scaling.md). The foreign keys are kept by Django (PROTECT, CASCADE), not by the
    # database: its per-row checks were half the cost of writing a month's rows (measured in
    # bench/bench_sync.py), and only the usage sync writes these rows, from the tenants and metrics it has
    # just read inside its transaction.
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.PROTECT, related_name="hourly_usage",
                               db_index=False, db_constraint=False)
    metric = models.ForeignKey("tenants.Metric", on_delete=models.CASCADE, related_name="hourly_usage",
                               db_index=False, db_constraint=False)
    hour = models.DateTimeField(help_text="Start of the hour (UTC).")
    value = models.DecimalField(max_digits=30, decimal_places=6, help_text="Raw aggregate, before the divisor.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-hour", "tenant", "metric"]
        verbose_name_plural = "hourly usage"
        indexes = [models.Index(fields=["hour"], name="hourly_usage_hour")]
        constraints = [
            # On PostgreSQL its index also carries value (migration 0019: INCLUDE, which SQLite cannot declare):
            # a tenant's hours are read from the index alone.
            models.UniqueConstraint(fields=["tenant", "metric", "hour"], name="hourly_usage_one_per_hour"),
            models.CheckConstraint(condition=Q(value__gte=0), name="hourly_usage_value_non_negative"),
        ]

    def __str__(self):
        return f"{self.tenant_id} {self.metric_id} {self.hour:%Y-%m-%d %H:00} = {self.value}"


class DailyUsage(models.Model):
    """A tenant's UTC day per metric: what the dashboards chart by day and the API's day buckets serve.

    Written by the usage sync only, for every day its window touches, in the transaction that writes
    the hourly rows (metering.services.sync.daily_usage_refresh), so a day never disagrees with its
    hours. ``value`` is the day's exact figure, raw like the hourly values (before the divisor): the
    sum of its hours for count and sum metrics, the largest hour for max metrics, and for
    unique_count metrics the distinct count over the whole day, from the lake. ``peak`` is the day's
    largest hourly value (its busiest hour).
    """

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.PROTECT, related_name="daily_usage",
                               db_index=False)  # the unique (tenant, metric, day) index serves tenant lookups
    metric = models.ForeignKey("tenants.Metric", on_delete=models.CASCADE, related_name="daily_usage")
    day = models.DateField(help_text="The UTC day.")
    value = models.DecimalField(max_digits=30, decimal_places=6,
                                help_text="The day's figure, before the divisor: the sum of its hours (count, "
                                          "sum), the largest hour (max), the distinct count over the day "
                                          "(unique_count).")
    peak = models.DecimalField(max_digits=30, decimal_places=6, help_text="The day's largest hourly value.")

    class Meta:
        ordering = ["-day", "tenant", "metric"]
        verbose_name_plural = "daily usage"
        constraints = [
            models.UniqueConstraint(fields=["tenant", "metric", "day"], name="daily_usage_one_per_day"),
            models.CheckConstraint(condition=Q(value__gte=0), name="daily_usage_value_non_negative"),
            models.CheckConstraint(condition=Q(peak__gte=0) & Q(peak__lte=F("value")),
                                   name="daily_usage_peak_within_value"),
        ]
        # (day, metric) with tenant and value: a range of days of every tenant (the provider's dashboard) is read
        # from the index alone on PostgreSQL (migration 0019).
        indexes = [models.Index(fields=["day", "metric"], include=["tenant", "value"], name="daily_usage_day")]

    def __str__(self):
        return f"{self.tenant_id} {self.metric_id} {self.day:%Y-%m-%d} = {self.value}"


class DailyTotal(models.Model):
    """Every tenant's usage of a count or sum metric on a UTC day, added up: the provider dashboard's daily
    chart of all tenants, read as a row a day rather than as the day's row of every tenant (300,000 rows a
    month at 10,000 tenants).

    Written by the usage sync only, with the days (metering.services.sync.daily_usage_refresh), in the same
    transaction: ``value`` is the sum of the day's DailyUsage values, before the divisor.
    """

    metric = models.ForeignKey("tenants.Metric", on_delete=models.CASCADE, related_name="daily_totals",
                               db_index=False)  # the unique (metric, day) index serves metric lookups
    day = models.DateField(help_text="The UTC day.")
    value = models.DecimalField(max_digits=30, decimal_places=6,
                                help_text="The day's usage of every tenant added up, before the divisor.")

    class Meta:
        ordering = ["-day", "metric"]
        constraints = [
            models.UniqueConstraint(fields=["metric", "day"], name="daily_total_one_per_day"),
            models.CheckConstraint(condition=Q(value__gte=0), name="daily_total_value_non_negative"),
        ]

    def __str__(self):
        return f"{self.metric_id} {self.day:%Y-%m-%d} = {self.value}"

class MonthlyUsage(models.Model):
    """A tenant's UTC calendar month per metric: the API's month buckets, and the quantity an invoice
    of a calendar month bills for max and unique_count metrics.

    Written by the usage sync only, for every month its window touches, with the days: ``value`` is
    the month's exact figure before the divisor (the sum of its days for count and sum, the largest
    day for max, the distinct count over the whole month from the lake for unique_count).
    """

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.PROTECT, related_name="monthly_usage",
                               db_index=False)  # the unique (tenant, metric, month) index serves tenant lookups
    metric = models.ForeignKey("tenants.Metric", on_delete=models.CASCADE, related_name="monthly_usage")
    month = models.DateField(help_text="The month's first day (UTC).")
    value = models.DecimalField(max_digits=30, decimal_places=6,
                                help_text="The month's figure, before the divisor: the sum of its days (count, "
                                          "sum), the largest day (max), the distinct count over the month "
                                          "(unique_count).")

    class Meta:
        ordering = ["-month", "tenant", "metric"]
        verbose_name_plural = "monthly usage"
        constraints = [
            models.UniqueConstraint(fields=["tenant", "metric", "month"], name="monthly_usage_one_per_month"),
            models.CheckConstraint(condition=Q(value__gte=0), name="monthly_usage_value_non_negative"),
        ]
        indexes = [models.Index(fields=["month"], name="monthly_usage_month")]

    def __str__(self):
        return f"{self.tenant_id} {self.metric_id} {self.month:%Y-%m} = {self.value}"


class RollupBackfill(models.Model):
    """A month whose distinct counts (unique_count metrics, by day and for the month) the usage sync
    still has to compute from the lake: listed by the migration that made those figures exact, for
    the usage synced before it. Until then the period quantities of that month ask the lake."""

    month = models.DateField(unique=True, help_text="The month's first day (UTC).")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-month"]

    def __str__(self):
        return f"backfill {self.month:%Y-%m}"


class UnattributedUsage(models.Model):
    """Usage whose tenant is unknown: no tenant_id naming a tenant and no tenant user owning ``user``.

    Kept (never dropped) so that the provider sees it in the admin and can fix the attribution (e.g.
    by adding the tenant user) and resync. ``tenant_id`` and ``user`` are what the log had ('' when
    it had nothing)."""

    tenant_key = models.CharField(max_length=128, blank=True, help_text="The log's tenant_id ('' if none).")
    user_key = models.CharField(max_length=128, blank=True, help_text="The log's user ('' if none).")
    metric = models.ForeignKey("tenants.Metric", on_delete=models.CASCADE, related_name="unattributed_usage")
    hour = models.DateTimeField()
    value = models.DecimalField(max_digits=30, decimal_places=6)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-hour", "tenant_key", "user_key", "metric"]
        verbose_name_plural = "unattributed usage"
        constraints = [
            models.UniqueConstraint(fields=["tenant_key", "user_key", "metric", "hour"],
                                    name="unattributed_usage_one_per_hour"),
            models.CheckConstraint(condition=Q(value__gte=0), name="unattributed_usage_value_non_negative"),
        ]

    def __str__(self):
        return f"{self.tenant_key or '-'}/{self.user_key or '-'} {self.metric_id} {self.hour:%Y-%m-%d %H:00}"


class SyncCursor(models.Model):
    """How far the usage sync got, per lake backend: the end of the last window synced."""

    name = models.CharField(max_length=40, unique=True)
    synced_until = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return f"{self.name}: {self.synced_until}"


class SyncOutcome(models.TextChoices):
    RUNNING = "running", "running"
    SUCCEEDED = "succeeded", "succeeded"
    FAILED = "failed", "failed"


class SyncRun(models.Model):
    """One run of the usage sync: its window, what it read and wrote, how long it took, how it ended."""

    backend = models.CharField(max_length=20)
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_seconds = models.FloatField(null=True, blank=True)
    rows_read = models.PositiveIntegerField(default=0, help_text="Groups returned by the lake query.")
    rows_written = models.PositiveIntegerField(default=0, help_text="Hourly rows inserted or updated.")
    unattributed_rows = models.PositiveIntegerField(default=0)
    attempts = models.PositiveSmallIntegerField(default=1)
    outcome = models.CharField(max_length=10, choices=SyncOutcome.choices, default=SyncOutcome.RUNNING)
    error = models.TextField(blank=True)
    triggered_by = models.CharField(max_length=40, blank=True)
    heartbeat_at = models.DateTimeField(
        null=True, blank=True,
        help_text="Last sign of life of the worker running it; a running sync whose heartbeat is older than "
                  "RUN_STALE_AFTER_SECONDS is marked failed.")

    class Meta:
        ordering = ["-started_at"]
        constraints = [
            models.CheckConstraint(condition=Q(window_end__gt=F("window_start")), name="sync_run_window_ordered"),
            models.CheckConstraint(condition=Q(outcome__in=SyncOutcome.values), name="sync_run_outcome_known"),
        ]

    def __str__(self):
        return f"sync {self.window_start:%Y-%m-%d %H:%M} – {self.window_end:%Y-%m-%d %H:%M} ({self.outcome})"
