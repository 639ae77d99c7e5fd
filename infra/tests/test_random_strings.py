"""The metered demo API's Lambda (infra/lambdas/random_strings/index.py), called as API Gateway would."""

from __future__ import annotations

import importlib.util
import json
import string

import pytest

from infra.config import RANDOM_STRINGS_SOURCE_DIR

spec = importlib.util.spec_from_file_location("random_strings_index", RANDOM_STRINGS_SOURCE_DIR / "index.py")
index = importlib.util.module_from_spec(spec)
spec.loader.exec_module(index)


def call(**params):
    event = {"queryStringParameters": {k: str(v) for k, v in params.items()} or None}
    response = index.handler(event, None)
    return response["statusCode"], json.loads(response["body"])


def test_defaults_one_letter():
    status, body = call()
    assert status == 200
    assert len(body) == 1 and len(body[0]) == 1 and body[0] in string.ascii_letters


@pytest.mark.parametrize(
    ("chars", "alphabet"),
    [("letters", string.ascii_letters), ("lowercase", string.ascii_lowercase),
     ("uppercase", string.ascii_uppercase), ("digits", string.digits)],
)
def test_alphabets(chars, alphabet):
    status, body = call(chars=chars, len=20, num=5)
    assert status == 200 and len(body) == 5
    assert all(len(s) == 20 and set(s) <= set(alphabet) for s in body)


def test_num_and_len_are_clamped():
    assert [len(s) for s in call(num=1000, len=7)[1]] == [7] * 100
    assert call(num=0, len=0)[1][0] != "" and len(call(num=-5, len=99)[1][0]) == 20


@pytest.mark.parametrize("params", [{"chars": "emoji"}, {"num": "many"}, {"len": "1.5"}])
def test_bad_requests(params):
    status, body = call(**params)
    assert status == 400 and body["message"]


def test_response_is_json_for_api_gateway():
    response = index.handler({"queryStringParameters": None}, None)
    assert response["headers"]["Content-Type"] == "application/json"
