"""The API's formats: CSV for the usage and invoice endpoints (`Accept: text/csv` or `?format=csv`), one
row per result; the browsable API for a browser on every endpoint; 406 naming the formats otherwise."""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal

from django.http import Http404
from rest_framework import exceptions, negotiation, renderers
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


class BrowsableAPIRenderer(renderers.BrowsableAPIRenderer):
    """DRF's browsable API (what a browser's `Accept: text/html` or `?format=api` gets), for every endpoint.

    DRF builds a filter form from the view's queryset whenever a response looks like a list, even when
    the view has no filter backend to put in it; views that compute their rows (usage buckets, top
    tenants) have no queryset, and DRF's form then failed with a server error. No backend, no form.
    """

    def get_filter_form(self, data, view, request):
        if not getattr(view, "filter_backends", None):
            return None
        return super().get_filter_form(data, view, request)


class ContentNegotiation(negotiation.DefaultContentNegotiation):
    """A format the endpoint does not have, by `Accept` or `?format=`, is 406 naming the formats it has
    (DRF answers 404 to an unknown `?format=`, and a 406 that names nothing to an `Accept`)."""

    def select_renderer(self, request, renderers, format_suffix=None):
        try:
            return super().select_renderer(request, renderers, format_suffix)
        except (exceptions.NotAcceptable, Http404):
            formats = ", ".join(f"{renderer.media_type} (?format={renderer.format})" for renderer in renderers)
            raise exceptions.NotAcceptable(
                f"This endpoint does not answer in the format asked for; it answers {formats}."
            ) from None
