"""The REST API's JSON parser: request bodies nested too deep are a 400, never a RecursionError (a 500).

The bound itself is ``metering.pricing.documents.json_loads_bounded``, which the admin's JSON form field
(``tenants.forms.JSONFormField``) uses too.
"""

from __future__ import annotations

import codecs

from rest_framework import parsers
from rest_framework.exceptions import ParseError
from rest_framework.settings import api_settings
from rest_framework.utils.json import strict_constant

from metering.pricing.documents import json_loads_bounded


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser (the API's request bodies), answering 400 for JSON nested too deep."""

    def parse(self, stream, media_type=None, parser_context=None):
        encoding = parsers.get_encoding(parser_context or {})
        try:
            text = codecs.getreader(encoding)(stream).read()
            parse_constant = strict_constant if api_settings.STRICT_JSON else None
            return json_loads_bounded(text, parse_constant=parse_constant)
        except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors too
            raise ParseError(f"JSON parse error - {exc}") from None
