"""The OpenAPI schema validates and describes every endpoint; the interactive docs are served from local files."""

import pytest
from drf_spectacular.validation import validate_schema
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


@pytest.fixture
def schema():
    response = APIClient().get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    return response.json()


def test_schema_validates_and_covers_only_api_v1(schema):
    validate_schema(schema)
    assert schema["paths"] and all(path.startswith("/api/v1/") for path in schema["paths"])
    assert "/api/v1/usage/" in schema["paths"] and "/api/v1/admin/usage/top/" in schema["paths"]


def test_every_operation_is_described(schema):
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            where = f"{method.upper()} {path}"
            assert operation.get("description"), f"{where} has no description"
            success = [code for code in operation["responses"] if code.startswith("2")]
            assert success, f"{where} documents no success response"
            assert all(operation["responses"][code].get("content") for code in success), where
            for code in ("401", "403", "429"):
                assert code in operation["responses"], f"{where} does not document {code}"
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "query" and parameter["name"] not in ("page", "page_size", "format"):
                    assert parameter.get("description"), f"{where}: ?{parameter['name']} is not described"
            assert operation.get("security"), f"{where} names no authentication"


def test_usage_parameters_and_csv_are_in_the_schema(schema):
    operation = schema["paths"]["/api/v1/usage/"]["get"]
    names = {p["name"] for p in operation["parameters"]}
    assert {"start", "end", "granularity", "metric", "page", "page_size"} <= names
    granularity = next(p for p in operation["parameters"] if p["name"] == "granularity")
    assert granularity["schema"]["enum"] == ["hour", "day", "month"]
    assert set(operation["responses"]["200"]["content"]) >= {"application/json", "text/csv"}
    bucket = schema["components"]["schemas"]["UsageBucket"]["properties"]
    assert bucket["value"]["type"] == "string" and bucket["start"]["format"] == "date-time"


def test_interactive_docs_use_local_assets():
    response = APIClient().get("/api/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "drf_spectacular_sidecar/swagger-ui-dist" in html
    assert "cdn." not in html and "unpkg" not in html
