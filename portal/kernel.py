"""The little every app needs from the project, and nothing else: this module imports no app.

- ``ApplicationError``: an expected failure with a message fit to show a user. Services raise it; the
  REST API's handler (``portal.errors``), the admin and the commands turn it into an answer.
- ``end_sentence``: the portal's sentences around names it does not control.
- ``pipeline_setting``: a setting the deployed pipeline may provide (the Cognito pool, the Athena
  workgroup, the metered API's endpoint). The deployments app registers, when it starts, where the
  deployed values come from (``register_pipeline_config``); identity and the lake ask here, never the
  deployments app, so the apps stay below the project.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from django.conf import settings


class ApplicationError(Exception):
    """An expected failure with a message fit to show a user (and optional structured extra)."""

    status_code = 400  # the REST API's answer; a subclass for a failure that is not the caller's says so

    def __init__(self, message: str, extra: dict | None = None):
        super().__init__(message)
        self.message = message
        self.extra = extra or {}


SENTENCE_ENDS = (".", "!", "?", "…")


def end_sentence(text: str) -> str:
    """`text` ended with a full stop, unless it ends with one already ("Example SaaS Inc." stays as it is)."""
    text = str(text).rstrip()
    return text if text.endswith(SENTENCE_ENDS) else f"{text}."


# --- the deployed pipeline's settings ----------------------------------------------------------------

# A source answers a setting's name with its deployed value, or None when it has none.
PipelineConfigSource = Callable[[str], "str | None"]
_sources: list[PipelineConfigSource] = []
_UNSET = object()


def register_pipeline_config(source: PipelineConfigSource) -> None:
    """Make `source` consulted by ``pipeline_setting`` (once, however often an app's ready() runs)."""
    if source not in _sources:
        _sources.append(source)


def pipeline_setting(name: str, default=_UNSET):
    """The value of setting `name`: an explicitly set environment variable wins, then the deployed
    pipeline's value (from the registered sources), then settings (whose defaults suit the embedded mode)."""
    if name not in os.environ:
        for source in _sources:
            value = source(name)
            if value not in (None, ""):
                return value
    if default is _UNSET:
        return getattr(settings, name)
    return getattr(settings, name, default)
