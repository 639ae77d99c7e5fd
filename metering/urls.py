"""URLs of the metering app: the metered demo API (under /demo-api/, so {base}/random/strings works)."""

from django.urls import path

from metering.demo_api import RandomStringsView

urlpatterns = [
    path("demo-api/random/strings", RandomStringsView.as_view(), name="demo-random-strings"),
]
