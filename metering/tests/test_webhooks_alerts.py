"""The alerts' webhook channel (metering.services.alerts emits; tenants.webhooks records and delivers): a crossed
threshold, a failing sync and a late pipeline reach the subscribed endpoints, signed, with their documented data."""

import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from standardwebhooks import Webhook

from metering.models import SyncCursor
from metering.services.alerts import usage_alert_create
from metering.tasks import check_pipeline
from metering.tests.test_alerts import CATALOG, acme, post_tokens, sync  # noqa: F401  (acme: a fixture)
from tenants.models import WebhookEvent
from tenants.tasks import deliver_webhook
from tenants.webhooks import events
from tenants.webhooks.endpoints import webhook_endpoint_create


@pytest.fixture
def queued(monkeypatch):
    ids: list[int] = []
    monkeypatch.setattr(events, "enqueue", lambda delivery_ids: ids.extend(delivery_ids))
    return ids


def payloads(type_):
    return [json.loads(e.payload) for e in WebhookEvent.objects.filter(type=type_).order_by("pk")]


def test_a_crossed_threshold_with_the_webhook_channel_reaches_the_tenants_endpoint(acme, receiver, queued,  # noqa: F811
                                                                                   django_capture_on_commit_callbacks):
    _endpoint, secret = webhook_endpoint_create(tenant=acme["tenant"], url=receiver.url,
                                                event_types=["spend.threshold_reached", "usage.threshold_reached"])
    usage_alert_create(tenant=acme["tenant"], kind="spend", threshold="12.50", channel="webhook")
    post_tokens(acme["api"], "t1", 4000)  # the bill: 10.00 + 4.00 = 14.00
    with django_capture_on_commit_callbacks(execute=True):
        sync()
    (payload,) = payloads("spend.threshold_reached")
    assert payload["data"]["tenant"] == "acme" and payload["data"]["kind"] == "spend"
    assert payload["data"]["threshold"] == "12.5" and payload["data"]["value"] == "14"
    deliver_webhook.apply(args=[queued[0]]).get()
    (request,) = receiver.wait_for(1)
    assert Webhook(secret).verify(request.body, request.headers)["type"] == "spend.threshold_reached"


def test_a_failing_sync_and_a_late_pipeline_reach_provider_endpoints(db, settings, tmp_path, receiver):
    settings.LAKE_BACKEND = "local"
    settings.ALERTS_STAFF_EMAILS = ["ops@provider.example"]
    settings.LAKE_WAREHOUSE_DIR = str(tmp_path / "nowhere")  # no lake: the sync fails
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps(CATALOG))
    call_command("import_plans", str(catalog), stdout=StringIO())
    webhook_endpoint_create(tenant=None, url=receiver.url, event_types=["sync.failed", "pipeline.late"])
    with pytest.raises(CommandError):
        call_command("sync_usage", stdout=StringIO(), stderr=StringIO())
    (failed,) = payloads("sync.failed")
    assert failed["data"]["outcome"] == "failed" and "lake" in failed["data"]["error"]
    SyncCursor.objects.update_or_create(name="local", defaults={"synced_until": timezone.now() - timedelta(hours=3)})
    assert check_pipeline()["notice"] is not None
    (late,) = payloads("pipeline.late")
    assert late["data"]["backend"] == "local" and late["data"]["late_after_minutes"] == settings.PIPELINE_LATE_ALERT_MINUTES
