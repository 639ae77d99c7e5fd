"""Invoices, their lines, the projected bill and the plan through the API; CSV for usage and invoices."""

import csv
import io

import pytest

from metering.models import Invoice, InvoiceStatus
from metering.pricing import format_amount
from metering.selectors.billing import projected_bill
from metering.tests.api_fixtures import *  # noqa: F403

pytestmark = pytest.mark.django_db


def test_invoice_list_and_detail(world):
    client = world.client("acme")
    invoice = world.invoices["acme"]
    body = client.get("/api/v1/invoices/").json()
    assert body["count"] == 1
    row = body["results"][0]
    assert row["id"] == str(invoice.public_id)
    assert row["number"] == invoice.number and row["status"] == "finalized" and row["tenant"] == "acme"
    assert row["total"] == "100.00" and isinstance(row["total"], str)
    assert row["period_start"] == "2026-10-01T00:00:00Z" and row["period_end"] == "2026-11-01T00:00:00Z"

    detail = client.get(f"/api/v1/invoices/{invoice.public_id}/").json()
    assert [(line["type"], line["amount"]) for line in detail["lines"]] == [
        (line.type, format_amount(line.amount, invoice.currency)) for line in invoice.lines.order_by("position")
    ]
    assert detail["lines"][0]["amount"] == "49.00"
    lines = client.get(f"/api/v1/invoices/{invoice.public_id}/lines/").json()
    assert lines["count"] == invoice.lines.count()


def test_drafts_are_not_shown_to_tenants_and_filters_work(world):
    client = world.client("acme")
    Invoice.objects.filter(pk=world.invoices["acme"].pk).update(status=InvoiceStatus.DRAFT, number=None)
    assert client.get("/api/v1/invoices/").json()["count"] == 0
    assert client.get(f"/api/v1/invoices/{world.invoices['acme'].public_id}/").status_code == 404
    Invoice.objects.filter(pk=world.invoices["acme"].pk).update(status=InvoiceStatus.PAID, number="INV-X")
    assert client.get("/api/v1/invoices/", {"status": "paid"}).json()["count"] == 1
    assert client.get("/api/v1/invoices/", {"status": "void"}).json()["count"] == 0
    assert client.get("/api/v1/invoices/", {"start": "2026-10-15"}).json()["count"] == 0
    assert client.get("/api/v1/invoices/", {"start": "2026-10-01", "end": "2026-10-02"}).json()["count"] == 1
    bad = client.get("/api/v1/invoices/", {"status": "lost"})
    assert bad.status_code == 400 and "status" in bad.json()


def test_projected_bill_is_the_billing_services(world):
    body = world.client("acme").get("/api/v1/projected-bill/").json()
    priced = projected_bill(tenant=world.tenants["acme"])
    assert body["currency"] == "USD" and body["plans"] == ["pro"]
    assert body["total"] == f"{priced.total:.2f}"
    assert [line["type"] for line in body["lines"]] == [line.type for line in priced.lines]
    assert all(isinstance(line["amount"], str) and len(line["amount"].split(".")[1]) == 2 for line in body["lines"])


def test_plan(world):
    body = world.client("globex").get("/api/v1/plan/").json()
    assert body["subscription"]["plan"] == "starter" and body["subscription"]["tenant"] == "globex"
    assert body["subscription"]["started_at"] == "2026-10-01T00:00:00Z"
    assert body["plan"]["document"]["charges"][0]["metric"] == "api_calls"


def test_no_subscription_is_404_with_a_reason(world):
    from tenants.services.subscriptions import subscription_end

    subscription_end(subscription=world.tenants["acme"].subscriptions.get())
    for path in ("/api/v1/plan/", "/api/v1/projected-bill/"):
        response = world.client("acme").get(path)
        assert response.status_code == 404 and "no active subscription" in response.json()["detail"]


def test_users_of_the_tenant(world):
    body = world.client("acme").get("/api/v1/users/").json()
    assert [u["email"] for u in body["results"]] == ["ann@acme.example"]
    user = world.users["acme"]
    assert world.client("acme").get(f"/api/v1/users/{user.pk}/").json()["role"] == "owner"


def _csv(response):
    assert response["Content-Type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(response.content.decode())))


def test_usage_as_csv_by_format_or_accept(world):
    client = world.client("acme")
    params = {"metric": "api_calls", "start": "2026-10-01", "end": "2026-10-03"}
    by_format = _csv(client.get("/api/v1/usage/", {**params, "format": "csv"}))
    by_accept = _csv(client.get("/api/v1/usage/", params, HTTP_ACCEPT="text/csv"))
    assert by_format == by_accept == [
        {"metric": "api_calls", "unit": "", "start": "2026-10-01T00:00:00Z", "value": "240"},
        {"metric": "api_calls", "unit": "", "start": "2026-10-02T00:00:00Z", "value": "240"},
    ]


def test_csv_pages_carry_a_link_header(world):
    response = world.client("acme").get("/api/v1/usage/", {"granularity": "hour", "start": "2026-10-01",
                                                           "end": "2026-10-03", "format": "csv"})
    assert len(_csv(response)) == 50
    assert 'rel="next"' in response["Link"] and "page=2" in response["Link"]


def test_invoices_and_lines_as_csv(world):
    client = world.client("acme")
    invoice = world.invoices["acme"]
    rows = _csv(client.get("/api/v1/invoices/", HTTP_ACCEPT="text/csv"))
    assert [(r["number"], r["total"]) for r in rows] == [(invoice.number, "100.00")]
    lines = _csv(client.get(f"/api/v1/invoices/{invoice.public_id}/lines/?format=csv"))
    assert [r["type"] for r in lines] == [line.type for line in invoice.lines.order_by("position")]
