"""JSON typed by people (admin forms, API bodies) that cannot crash the process: nesting and size bounded.

Python's json recurses: a body nested 100,000 deep raises RecursionError, which Django and DRF do not
catch (a 500). Here it is a validation error like any syntax error, and a document nested deeper than
any the portal stores is refused before code that walks it recursively (serializers, the database's
JSON encoder) sees it.
"""

from __future__ import annotations

import codecs
import json

from django import forms
from django.core.exceptions import ValidationError
from rest_framework import parsers
from rest_framework.exceptions import ParseError
from rest_framework.settings import api_settings
from rest_framework.utils.json import strict_constant

from metering.pricing.documents import nesting_depth

MAX_DEPTH = 32  # the deepest JSON the portal takes in; its documents need under 10 levels


def loads(text: str | bytes, *, max_depth: int = MAX_DEPTH, **kwargs):
    """json.loads, with ValueError (never RecursionError) for JSON nested deeper than ``max_depth``."""
    try:
        value = json.loads(text, **kwargs)
    except RecursionError:
        raise ValueError(f"nested more than {max_depth} levels deep") from None
    if nesting_depth(value, limit=max_depth) > max_depth:
        raise ValueError(f"nested more than {max_depth} levels deep")
    return value


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser (the API's request bodies), answering 400 for JSON nested too deep."""

    def parse(self, stream, media_type=None, parser_context=None):
        encoding = parsers.get_encoding(parser_context or {})
        try:
            text = codecs.getreader(encoding)(stream).read()
            parse_constant = strict_constant if api_settings.STRICT_JSON else None
            return loads(text, parse_constant=parse_constant)
        except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors too
            raise ParseError(f"JSON parse error - {exc}") from None


class JSONFormField(forms.JSONField):
    """A model's JSONField in a form (the admin): JSON nested too deep, or with a number of thousands of
    digits (which Python refuses to convert), is a form error like any invalid JSON."""

    def to_python(self, value):
        if isinstance(value, str) and not self.disabled and value not in self.empty_values:
            try:
                loads(value, cls=self.decoder)
            except ValueError as exc:
                raise ValidationError(f"Enter a valid JSON: {exc}.", code="invalid") from None
        return super().to_python(value)

    def bound_data(self, data, initial):
        try:
            return super().bound_data(data, initial)
        except (RecursionError, ValueError):  # redisplaying the refused input must not crash either
            return forms.fields.InvalidJSONInput(data)
