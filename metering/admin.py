"""Admin for metrics (and, as they land, usage, sync runs and invoices)."""

from django import forms
from django.contrib import admin

from metering.models import Metric


class MetricForm(forms.ModelForm):
    class Meta:
        model = Metric
        fields = ("code", "name", "aggregation", "field", "filters", "divisor", "unit")

    def clean(self):
        cleaned = super().clean()
        if self.errors:
            return cleaned
        from metering.pricing.documents import DocumentError, parse_metric

        probe = Metric(**{k: cleaned.get(k) for k in self.Meta.fields if k in cleaned})
        probe.field = probe.field or ""
        probe.unit = probe.unit or ""
        probe.filters = probe.filters or {}
        try:
            parse_metric(probe.raw_document())
        except DocumentError as exc:
            raise forms.ValidationError([forms.ValidationError(e) for e in exc.errors]) from exc
        return cleaned


@admin.register(Metric)
class MetricAdmin(admin.ModelAdmin):
    form = MetricForm
    list_display = ("code", "name", "aggregation", "field", "unit", "plans_using")
    list_filter = ("aggregation",)
    search_fields = ("code", "name")

    @admin.display(description="charges using it")
    def plans_using(self, metric):
        return metric.charges.count()
