"""The provider's dashboard: an admin page (staff only), registered in portal/urls.py before the admin's URLs."""

from django.contrib import admin
from django.template.response import TemplateResponse

from portal.dashboards import selectors
from portal.dashboards.forms import DashboardFilterForm


def provider_dashboard(request):
    form = DashboardFilterForm(request.GET or None)
    start, end, tenant = form.filters()
    context = {
        **admin.site.each_context(request),
        "title": "Dashboard",
        "form": form,
        "start": start,
        "end": end,
        "tenant": tenant,
        **selectors.provider_dashboard(start=start, end=end, tenant=tenant),
    }
    return TemplateResponse(request, "portal/dashboards/provider.html", context)
