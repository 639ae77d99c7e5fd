"""CSV for the usage and invoice endpoints (`Accept: text/csv` or `?format=csv`): one row per result."""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal

from rest_framework.renderers import BaseRenderer


class CSVRenderer(BaseRenderer):
    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        if data is None:
            return b""
        if isinstance(data, dict) and isinstance(data.get("results"), list):
            rows = data["results"]  # a page: its rows (the Link header names the next page)
        elif isinstance(data, list):
            rows = data
        else:
            rows = [data]
        columns: dict[str, None] = {}
        for row in rows:
            columns.update(dict.fromkeys(row))
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(columns), lineterminator="\r\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({key: _cell(value) for key, value in row.items()})
        return out.getvalue().encode(self.charset)


def _cell(value):
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    if isinstance(value, Decimal):
        return format(value, "f")  # str() could write 4E+1: a spreadsheet would read a number in another notation
    return value
