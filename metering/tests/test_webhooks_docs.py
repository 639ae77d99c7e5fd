"""docs/webhooks.md documents every event type the portal sends, each with an example whose `data` has exactly
the fields the payload has; the README's configuration table names every WEBHOOKS_ setting."""

import json
import re
from pathlib import Path

import pytest
from django.conf import settings

from tenants.webhooks.registry import EVENT_TYPES

DOCS = Path(__file__).resolve().parents[2] / "docs/webhooks.md"
README = Path(__file__).resolve().parents[2] / "README.md"
NOT_SENT_YET: set[str] = set()


def examples() -> dict[str, dict]:
    found = {}
    for name, body in re.findall(r"### `([a-z_.]+)`\n.*?```json\n(.*?)\n```", DOCS.read_text(), re.S):
        found[name] = json.loads(body)
    return found


def test_every_sent_type_has_an_example_of_its_own_type():
    docs = examples()
    assert set(docs) == set(EVENT_TYPES) - NOT_SENT_YET
    for name, example in docs.items():
        assert example["type"] == name and set(example) == {"type", "timestamp", "data"}
    text = DOCS.read_text()
    assert all(f"`{name}`" in text for name in EVENT_TYPES)  # the others are listed, marked not sent yet


@pytest.mark.django_db
def test_the_examples_have_the_fields_of_the_real_payloads():
    from metering.api import serializers

    fields = {"invoice": set(serializers.InvoiceDetailSerializer.Meta.fields),
              "tenant": set(serializers.TenantSerializer.Meta.fields),
              "subscription": set(serializers.SubscriptionSerializer.Meta.fields),
              "threshold": set(serializers.AlertFiringSerializer.Meta.fields),
              "sync_run": set(serializers.SyncRunSerializer.Meta.fields),
              "pipeline": {"backend", "synced_until", "late_after_minutes"}}
    for name, example in examples().items():
        assert set(example["data"]) == fields[EVENT_TYPES[name].resource], name


def test_the_readme_names_every_webhooks_setting():
    readme = README.read_text()
    names = [name for name in dir(settings) if name.startswith("WEBHOOKS_")]
    assert len(names) >= 6
    assert all(f"`{name}`" in readme for name in names)
    assert "docs/webhooks.md" in readme
