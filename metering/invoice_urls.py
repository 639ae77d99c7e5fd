"""URLs of invoice documents."""

from django.urls import path

from metering import views

urlpatterns = [
    path("<uuid:public_id>/", views.invoice_document, name="invoice-document"),
    path("<uuid:public_id>/pdf/", views.invoice_pdf, name="invoice-pdf"),
]
