"""Admin for metrics: what is counted, part of the catalog with plans and their charges."""

from django import forms
from django.contrib import admin

from tenants.forms import JSONFormField
from tenants.models import Metric


class MetricForm(forms.ModelForm):
    class Meta:
        model = Metric
        fields = ("code", "name", "aggregation", "field", "filters", "divisor", "unit")
        field_classes = {"filters": JSONFormField}  # JSON nested too deep is a form error, not a crash
        help_texts = {
            "filters": 'Optional: {"status": ["2xx"], "http_method": ["GET"], "resource_path_prefix": ["/v1"]}. '
                       'The format and bounds of every field: <a href="/admin/docs/plans/">docs/plans.md</a>.',
        }

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
