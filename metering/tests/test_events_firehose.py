"""EVENTS_BACKEND=firehose: accepted events go to a Firehose Direct PUT stream with PutRecordBatch (moto),
in calls of at most 500 records and 4 MiB, the failed records retried, then a clear failure (503, nothing accepted)."""

from __future__ import annotations

import json
from datetime import timedelta

import boto3
import pytest
from django.utils import timezone
from moto import mock_aws

from metering.event_sink import (
    FIREHOSE_MAX_BYTES,
    EventDeliveryError,
    FirehoseEventSink,
    firehose_batches,
    get_event_sink,
    reset_event_sink,
)
from metering.models import EventReceipt
from metering.tests.api_fixtures import *  # noqa: F403

REGION = "us-east-1"
STREAM = "saas-metering-events"
BUCKET = "events-bucket"


@pytest.fixture
def firehose(settings, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("EVENTS_FIREHOSE_STREAM", STREAM)  # set explicitly: no deployed value is asked for
    settings.EVENTS_FIREHOSE_STREAM = STREAM
    settings.AWS_REGION = REGION
    settings.EVENTS_BACKEND = "firehose"
    settings.API_THROTTLE_RATE = "100000/minute"
    with mock_aws():
        boto3.client("s3", region_name=REGION).create_bucket(Bucket=BUCKET)
        boto3.client("firehose", region_name=REGION).create_delivery_stream(
            DeliveryStreamName=STREAM, DeliveryStreamType="DirectPut",
            ExtendedS3DestinationConfiguration={"RoleARN": "arn:aws:iam::123456789012:role/firehose",
                                                "BucketARN": f"arn:aws:s3:::{BUCKET}"})
        reset_event_sink()
        yield
        reset_event_sink()


def delivered() -> list[dict]:
    """The records moto's stream wrote to its S3 destination."""
    s3 = boto3.client("s3", region_name=REGION)
    lines = []
    for obj in s3.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        lines += s3.get_object(Bucket=BUCKET, Key=obj["Key"])["Body"].read().decode().splitlines()
    return [json.loads(line) for line in lines if line]


def event(tid, **extra):
    return {"transaction_id": tid, "code": "llm.completion",
            "timestamp": (timezone.now() - timedelta(minutes=1)).isoformat(), **extra}


def test_accepted_events_are_put_to_the_stream_once(world, firehose):
    client = world.client("acme")
    answer = client.post("/api/v1/events/", {"events": [event("f-1", properties={"tokens": 5, "model": "large"}),
                                                        event("f-2"), {"code": "x"}]}, format="json")
    assert answer.status_code == 202 and answer.json()["accepted"] == 2
    client.post("/api/v1/events/", {"events": [event("f-1")]}, format="json")  # a duplicate: not sent again
    records = sorted(delivered(), key=lambda r: r["transaction_id"])
    assert [r["transaction_id"] for r in records] == ["f-1", "f-2"]
    first = records[0]
    assert set(first) == {"transaction_id", "tenant_id", "code", "timestamp", "properties", "received_at"}
    assert first["tenant_id"] == "acme" and first["code"] == "llm.completion"
    assert first["properties"] == '{"model":"large","tokens":5}'
    assert first["timestamp"].endswith("Z") and first["received_at"].endswith("Z")


def test_batches_respect_the_record_and_size_limits():
    assert [len(b) for b in firehose_batches([b"x"] * 1201)] == [500, 500, 201]
    big = [b"y" * (1024 * 1024)] * 9  # 9 MiB: at most 4 MiB a call
    batches = firehose_batches(big)
    assert all(sum(map(len, b)) <= FIREHOSE_MAX_BYTES for b in batches) and sum(map(len, batches)) == 9


def test_a_large_batch_is_sent_in_several_calls(world, firehose, monkeypatch):
    sink = get_event_sink()
    calls = []
    original = sink.client.put_record_batch
    monkeypatch.setattr(sink.client, "put_record_batch",
                        lambda **kw: calls.append(len(kw["Records"])) or original(**kw))
    answer = world.client("acme").post("/api/v1/events/", {"events": [event(f"b-{i}") for i in range(1000)]},
                                       format="json")
    assert answer.json()["accepted"] == 1000
    assert calls == [500, 500]
    assert len(delivered()) == 1000


class FlakyClient:
    """PutRecordBatch answering some records with an ErrorCode, `failures` times, then accepting all."""

    def __init__(self, failures: int):
        self.failures = failures
        self.calls: list[list[dict]] = []

    def put_record_batch(self, *, DeliveryStreamName, Records):
        self.calls.append([json.loads(r["Data"]) for r in Records])
        if len(self.calls) <= self.failures:
            responses = [{"ErrorCode": "ServiceUnavailableException", "ErrorMessage": "slow down"} if i % 2 == 0
                         else {"RecordId": f"r{i}"} for i in range(len(Records))]
            return {"FailedPutCount": sum(1 for r in responses if "ErrorCode" in r), "RequestResponses": responses}
        return {"FailedPutCount": 0, "RequestResponses": [{"RecordId": "ok"} for _ in Records]}


def test_only_the_failed_records_are_retried():
    client = FlakyClient(failures=1)
    sink = FirehoseEventSink(stream=STREAM, client=client, backoff=0)
    sink.put_records([{"transaction_id": f"t{i}"} for i in range(4)])
    assert [[r["transaction_id"] for r in call] for call in client.calls] == [["t0", "t1", "t2", "t3"], ["t0", "t2"]]


def test_records_still_failing_fail_the_request_and_nothing_is_accepted(world, firehose, monkeypatch):
    client = FlakyClient(failures=99)
    monkeypatch.setattr(get_event_sink(), "_client", client)
    monkeypatch.setattr(get_event_sink(), "backoff", 0)
    answer = world.client("acme").post("/api/v1/events/", {"events": [event("x-1"), event("x-2")]}, format="json")
    assert answer.status_code == 503
    assert len(client.calls) == 4  # the attempts, then a clear failure
    assert not EventReceipt.objects.exists()  # the client's retry will be accepted, not a duplicate
    with pytest.raises(EventDeliveryError, match="refused 1 of 2 events after 4 attempts"):
        FirehoseEventSink(stream=STREAM, client=FlakyClient(failures=99), backoff=0).put_records(
            [{"transaction_id": "a"}, {"transaction_id": "b"}])


def test_the_stream_must_be_configured(settings):
    from django.core.exceptions import ImproperlyConfigured

    with pytest.raises(ImproperlyConfigured, match="EVENTS_FIREHOSE_STREAM"):
        FirehoseEventSink(stream="")
