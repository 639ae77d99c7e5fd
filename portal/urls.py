"""The portal's URLs: the admin, the account pages, the home page; apps add theirs below."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path, re_path
from django.views.generic import RedirectView

from portal import views
from portal.dashboards import alerts as tenant_alerts
from portal.dashboards import credits as tenant_credits
from portal.dashboards import events as tenant_events
from portal.dashboards import revenue
from portal.dashboards import subscription as tenant_subscription
from portal.dashboards import tenant as tenant_dashboard
from portal.dashboards import views as dashboard_views
from portal.plans import views as plan_views

admin.site.site_header = "Metering portal"
admin.site.site_title = "Metering portal"
admin.site.index_title = "Provider administration"

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("account/login/", auth_views.LoginView.as_view(), name="login"),
    # Signed out, a tenant user is back on the sign-in page (not on the admin's "Logged out" page).
    path("account/logout/", auth_views.LogoutView.as_view(next_page="login"), name="logout"),
    path("admin/dashboard/", admin.site.admin_view(dashboard_views.provider_dashboard), name="admin-dashboard"),
    path("admin/revenue/", admin.site.admin_view(revenue.revenue_page), name="admin-revenue"),
    path("admin/plans/new/", admin.site.admin_view(plan_views.plan_builder), name="admin-plan-new"),
    path("admin/plans/<str:code>/builder/", admin.site.admin_view(plan_views.plan_builder), name="admin-plan-builder"),
    path("admin/plans/<str:code>/versions/", admin.site.admin_view(plan_views.plan_versions),
         name="admin-plan-versions"),
    path("admin/docs/plans/", admin.site.admin_view(views.plans_doc), name="admin-plans-doc"),
    # Metrics moved to the catalog (the tenants app): links and bookmarks to their old admin pages still work.
    re_path(r"^admin/metering/metric/(?P<rest>.*)$",
            RedirectView.as_view(url="/admin/tenants/metric/%(rest)s", permanent=True, query_string=True)),
    path("admin/", admin.site.urls),
    path("invoices/", include("metering.invoice_urls")),
    path("api/", include("metering.api.urls")),
    path("tenant/dashboard/", tenant_dashboard.tenant_dashboard, name="tenant-dashboard"),
    path("tenant/events/", tenant_events.tenant_events, name="tenant-events"),
    path("tenant/subscription/", tenant_subscription.tenant_subscription, name="tenant-subscription"),
    path("tenant/credits/", tenant_credits.tenant_credits, name="tenant-credits"),
    path("tenant/alerts/", tenant_alerts.tenant_alerts, name="tenant-alerts"),
    path("tenant/alerts/<int:pk>/delete/", tenant_alerts.tenant_alert_delete, name="tenant-alert-delete"),
    path("", include("tenants.urls")),
    path("", include("metering.urls")),
]
