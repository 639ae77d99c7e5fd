"""Admin for metrics: what is counted, part of the catalog with plans and their charges. Writes go through
the metric services (tenants/services/metrics.py)."""

from django import forms
from django.contrib import admin

from tenants.admin_writes import ServiceWriteAdmin
from tenants.forms import JSONFormField
from tenants.models import Metric
from tenants.services.metrics import metric_create, metric_update


class MetricForm(forms.ModelForm):
    """Input only: the metric services validate the metric as a document and save it."""

    class Meta:
        model = Metric
        fields = ("code", "name", "event", "aggregation", "field", "filters", "divisor", "unit")
        field_classes = {"filters": JSONFormField}  # JSON nested too deep is a form error, not a crash
        help_texts = {
            "filters": 'Optional: {"status": ["2xx"], "http_method": ["GET"], "resource_path_prefix": ["/v1"]}; '
                       'for an events metric {"properties.model": ["large"]}. '
                       'The format and bounds of every field: <a href="/admin/docs/plans/">docs/plans.md</a>.',
        }


@admin.register(Metric)
class MetricAdmin(ServiceWriteAdmin):
    form = MetricForm
    list_display = ("code", "name", "source", "aggregation", "field", "unit", "plans_using")
    list_filter = ("aggregation",)
    search_fields = ("code", "name")

    def save_model(self, request, obj, form, change):
        values = {name: form.cleaned_data.get(name) for name in MetricForm.Meta.fields}
        saved = metric_update(metric=obj, **values) if change else metric_create(**values)
        self.saved_as(obj, saved)

    @admin.display(description="counts")
    def source(self, metric):
        return f"events {metric.event}" if metric.event else "access log"

    @admin.display(description="charges using it")
    def plans_using(self, metric):
        return metric.charges.count()
