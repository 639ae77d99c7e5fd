"""Metrics over posted events, through the entry points: metrics and a plan imported with import_plans,
events posted to POST /api/v1/events/ with API keys made by api_key_create, the usage sync run by
sync_usage, usage read from GET /api/v1/usage/ and /api/v1/usage/current/, invoices made by run_billing,
the tenant's dashboard page. Figures are worked out by hand in the comments."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from metering.event_sink import reset_event_sink
from metering.lake.events import LocalEventsTable
from metering.lake.local import LocalLake
from metering.models import DailyUsage, HourlyUsage, Invoice, MonthlyUsage
from tenants.models import Metric, PlanVersion
from tenants.services.subscriptions import subscription_create
from tenants.tests.factories import TenantFactory

OCT = datetime(2026, 10, 1, tzinfo=UTC)
NOV = datetime(2026, 11, 1, tzinfo=UTC)

CATALOG = {
    "metrics": [
        {"code": "tokens_k", "name": "Tokens (large model)", "event": "llm.completion", "aggregation": "sum",
         "field": "properties.tokens", "filters": {"properties.model": ["large"]}, "divisor": "1000",
         "unit": "k tokens"},
        {"code": "completions", "name": "Completions", "event": "llm.completion", "aggregation": "count"},
        {"code": "models_used", "name": "Models used", "event": "llm.completion", "aggregation": "unique_count",
         "field": "properties.model"},
        {"code": "storage_peak", "name": "Peak storage", "event": "storage.snapshot", "aggregation": "max",
         "field": "properties.gb", "unit": "GB"},
        {"code": "seats", "name": "Seats", "event": "seats.changed", "aggregation": "latest",
         "field": "properties.seats"},
    ],
    "plans": [
        {"code": "ai", "name": "AI", "currency": "USD", "interval": "month", "base_fee": "10.00", "charges": [
            {"metric": "tokens_k", "model": "per_unit", "unit_amount": "0.02"},
            {"metric": "completions", "model": "per_unit", "unit_amount": "0.001"},
            {"metric": "seats", "model": "per_unit", "unit_amount": "5.00"},
        ]},
    ],
}


def ev(tid, code, when, **properties):
    return {"transaction_id": tid, "code": code, "timestamp": when, "properties": properties}


ACME_EVENTS = [
    ev("c1", "llm.completion", "2026-10-03T10:00:00Z", tokens=1200, model="large"),
    ev("c2", "llm.completion", "2026-10-03T10:30:00Z", tokens=800, model="small"),
    ev("c3", "llm.completion", "2026-10-05T08:15:00.250Z", tokens="3000", model="large"),  # a string holding a number
    ev("c4", "llm.completion", "2026-10-05T09:00:00Z", tokens="lots", model="large"),  # not a number: not summed
    ev("c5", "llm.completion", "2026-10-06T09:00:00Z", tokens=-50, model="large"),  # negative: not summed
    ev("s1", "storage.snapshot", "2026-10-03T00:00:00Z", gb=1.5),
    ev("s2", "storage.snapshot", "2026-10-04T00:00:00Z", gb=7.25),
    ev("s3", "storage.snapshot", "2026-10-05T00:00:00Z", gb=2),
    ev("n1", "seats.changed", "2026-10-02T10:00:00Z", seats=10),
    ev("n2", "seats.changed", "2026-10-20T10:00:00Z", seats=12),
    ev("n3", "seats.changed", "2026-10-28T09:00:00Z", seats=3),
    ev("n4", "seats.changed", "2026-10-28T09:30:00Z", seats="unknown"),  # not a number: the 3 stands
]
# tokens_k: large-model tokens 1200 + 3000 = 4200 → 4.2 k → 4.2 × 0.02 = 0.084 → 0.08
# completions: 5 → 0.005 → 0.01 (half-up); seats: the last value, 3 → 15.00; base fee 10.00 → total 25.09
GLOBEX_EVENTS = [
    ev("n1", "seats.changed", "2026-10-10T12:00:00Z", seats=5),
    ev("n2", "seats.changed", "2026-10-29T12:00:00Z", seats=0),  # down to nothing: bills 0 seats
]


@pytest.fixture
def world(db, settings, tmp_path):
    settings.LAKE_WAREHOUSE_DIR = str(tmp_path / "lake")
    settings.LAKE_BACKEND = "local"
    settings.EVENTS_BACKEND = "local"
    settings.EVENTS_MAX_PAST_DAYS = 3650  # the events are of October 2026, whatever today is
    settings.API_THROTTLE_RATE = "100000/minute"
    reset_event_sink()
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps(CATALOG))
    call_command("import_plans", str(catalog), stdout=StringIO())
    version = PlanVersion.objects.get(plan__code="ai")
    clients = {}
    for slug in ("acme", "globex"):
        tenant = TenantFactory(slug=slug)
        subscription_create(tenant=tenant, plan_version=version, started_at=OCT, with_trial=False)
        out = StringIO()
        call_command("api_key_create", "--tenant", slug, "--name", "backend", stdout=out)
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {out.getvalue().splitlines()[-1]}")
        clients[slug] = client
    yield clients
    reset_event_sink()


def post(client, events):
    answer = client.post("/api/v1/events/", json.dumps({"events": events}), content_type="application/json")
    assert answer.status_code == 202, answer.content
    return answer.json()


def sync():
    reset_event_sink()  # what a web process buffered is in the table (the sync also recovers spools)
    call_command("sync_usage", "--start", "2026-10-01T00:00:00Z", "--end", "2026-11-01T00:00:00Z",
                 stdout=StringIO())


def usage(client, **params):
    answer = client.get("/api/v1/usage/", params)
    assert answer.status_code == 200, answer.content
    return {(row["metric"], row["start"]): row["value"] for row in answer.json()["results"]}


def test_events_metrics_sync_serve_and_bill(world):
    assert post(world["acme"], ACME_EVENTS)["accepted"] == len(ACME_EVENTS)
    assert post(world["globex"], GLOBEX_EVENTS)["accepted"] == 2
    reset_event_sink()
    # The pipeline delivers at least once: a redelivered copy of c1 and of n3 in the lake counts once.
    table = LocalEventsTable.from_settings()
    copies = [r for r in table.rows() if r["tenant_id"] == "acme" and r["transaction_id"] in ("c1", "n3")]
    table.append_arrow(table.to_arrow(copies))
    sync()

    month = {"granularity": "month", "start": "2026-10-01T00:00:00Z", "end": "2026-11-01T00:00:00Z"}
    assert usage(world["acme"], **month) == {
        ("completions", "2026-10-01T00:00:00Z"): "5",
        ("models_used", "2026-10-01T00:00:00Z"): "2",
        ("seats", "2026-10-01T00:00:00Z"): "3",
        ("storage_peak", "2026-10-01T00:00:00Z"): "7.25",
        ("tokens_k", "2026-10-01T00:00:00Z"): "4.2",
    }
    days = usage(world["acme"], metric="seats", granularity="day", start="2026-10-01T00:00:00Z",
                 end="2026-11-01T00:00:00Z")
    assert days == {("seats", "2026-10-02T00:00:00Z"): "10", ("seats", "2026-10-20T00:00:00Z"): "12",
                    ("seats", "2026-10-28T00:00:00Z"): "3"}
    hours = usage(world["acme"], metric="tokens_k", granularity="hour", start="2026-10-03T00:00:00Z",
                  end="2026-10-06T00:00:00Z")
    assert hours == {("tokens_k", "2026-10-03T10:00:00Z"): "1.2", ("tokens_k", "2026-10-05T08:00:00Z"): "3"}
    # A gauge that went down to 0 is 0, not its earlier value.
    assert usage(world["globex"], metric="seats", **month) == {("seats", "2026-10-01T00:00:00Z"): "0"}
    globex_seats = Metric.objects.get(code="seats")
    assert MonthlyUsage.objects.get(tenant__slug="globex", metric=globex_seats).value == 0
    assert DailyUsage.objects.get(tenant__slug="globex", metric=globex_seats, day="2026-10-29").value == 0

    # Idempotent: a second sync writes the same rows.
    before = sorted(HourlyUsage.objects.values_list("tenant_id", "metric_id", "hour", "value"))
    sync()
    assert sorted(HourlyUsage.objects.values_list("tenant_id", "metric_id", "hour", "value")) == before

    call_command("run_billing", "--period", "2026-10", "--as-of", "2026-11-01T06:00:00Z", "--finalize-now",
                 stdout=StringIO())
    acme = Invoice.objects.get(subscription__tenant__slug="acme", period_start=OCT)
    lines = {line.description.split(" ")[0]: line.amount for line in acme.lines.all()}
    assert acme.total == Decimal("25.09"), lines
    globex = Invoice.objects.get(subscription__tenant__slug="globex", period_start=OCT)
    assert globex.total == Decimal("10.00")


def test_an_events_metric_before_any_event_reads_zero(world, settings):
    # The access-log table exists (the lake is there); the events table was never written.
    LocalLake(warehouse=settings.LAKE_WAREHOUSE_DIR, database=settings.LAKE_DATABASE,
              table=settings.LAKE_TABLE).append([{
                  "request_id": "r1", "ip": "10.0.0.1", "user": None, "request_time": "2026-10-03T10:00:00Z",
                  "http_method": "GET", "resource_path": "/x", "status": 200, "protocol": "HTTP/1.1",
                  "response_length": 10, "tenant_id": "acme"}])
    sync()
    month = {"granularity": "month", "start": "2026-10-01T00:00:00Z", "end": "2026-11-01T00:00:00Z"}
    assert usage(world["acme"], **month) == {}
    assert not HourlyUsage.objects.exists()


def test_metric_documents_of_events_are_checked(world, tmp_path):
    bad = {"metrics": [
        {"code": "a", "event": "Not A Code", "aggregation": "count"},
        {"code": "b", "event": "x", "aggregation": "sum", "field": "response_length"},
        {"code": "c", "aggregation": "latest", "field": "properties.seats"},
        {"code": "d", "event": "x", "aggregation": "sum", "field": "properties.bad-name"},
        {"code": "e", "event": "x", "aggregation": "count", "filters": {"status": ["2xx"]}},
    ]}
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    err = StringIO()
    with pytest.raises(Exception) as failure:
        call_command("import_plans", str(path), stdout=StringIO(), stderr=err)
    text = str(failure.value) + err.getvalue()
    assert "metric 'a', field 'event': must be an event code" in text
    assert "metric 'b', field 'field': must name a property of the event" in text
    assert "metric 'c', field 'aggregation': 'latest' is for metrics over posted events" in text
    assert "metric 'd', field 'field'" in text
    assert "metric 'e', field 'filters.status': is not a filter of an events metric" in text
    assert not Metric.objects.filter(code__in=["a", "b", "c", "d", "e"]).exists()


def test_the_plan_documents_events_example_is_what_billing_bills(db, settings, tmp_path):
    """docs/plans.md, "Metrics over posted events": its events, sent with send_events, synced and billed,
    give the invoice of its price_preview run."""
    from metering.tests.test_plans_doc import DOC, FILES, RUNS

    settings.LAKE_WAREHOUSE_DIR = str(tmp_path / "lake")
    settings.EVENTS_BACKEND = "local"
    settings.EVENTS_MAX_PAST_DAYS = 3650
    reset_event_sink()
    text = DOC.read_text()
    block = text[text.index("(`october.jsonl`"):]
    block = block[block.index("```jsonl\n") + len("```jsonl\n"):]
    events = tmp_path / "october.jsonl"
    events.write_text(block[:block.index("```")])
    catalog = tmp_path / "assistant.json"
    catalog.write_text(FILES["assistant.json"])
    call_command("import_plans", str(catalog), stdout=StringIO())
    tenant = TenantFactory(slug="acme")
    subscription_create(tenant=tenant, plan_version=PlanVersion.objects.get(plan__code="assistant"), started_at=OCT,
                        with_trial=False)
    out = StringIO()
    call_command("send_events", str(events), "--tenant", "acme", stdout=out, stderr=StringIO())
    assert out.getvalue().splitlines()[0] == "accepted 8, duplicates 1, rejected 0"
    sync()
    call_command("run_billing", "--period", "2026-10", "--as-of", "2026-11-01T06:00:00Z", "--finalize-now",
                 stdout=StringIO())
    invoice = Invoice.objects.get(subscription__tenant=tenant, period_start=OCT)
    [expected] = [output for command, output in RUNS if "assistant.json" in command]
    billed = [(line.type, line.metric_code or None, f"{line.amount:.2f}") for line in invoice.lines.order_by("position")]
    assert billed == [(line["type"], line.get("metric"), line["amount"]) for line in expected["lines"]]
    assert f"{invoice.total:.2f}" == expected["total"]
