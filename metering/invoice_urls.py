"""URLs of invoice and credit note documents."""

from django.urls import path

from metering import views

urlpatterns = [
    path("<uuid:public_id>/", views.invoice_document, name="invoice-document"),
    path("<uuid:public_id>/pdf/", views.invoice_pdf, name="invoice-pdf"),
    path("credit-notes/<uuid:public_id>/", views.credit_note_document, name="credit-note-document"),
    path("credit-notes/<uuid:public_id>/pdf/", views.credit_note_pdf, name="credit-note-pdf"),
]
