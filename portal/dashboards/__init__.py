"""Dashboards: the provider's (an admin page) and the tenant's (the tenant area), drawn with the vendored Chart.js."""
