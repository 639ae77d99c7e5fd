"""The deployed pipeline as configuration: settings taken from the active environment's stack outputs."""

from __future__ import annotations

import logging

from django.db import DatabaseError

logger = logging.getLogger(__name__)

# Portal settings whose infra/outputs.py name differs (infra calls the API endpoint METERED_API_URL).
_OUTPUT_NAMES = {"METERED_API_BASE_URL": "METERED_API_URL"}


def active_config() -> dict[str, str]:
    """{setting: value} from the active environment's last successful deploy; {} when there is none.

    The portal must keep working when the table is not there (before `migrate`) or the database may not be
    used (some tests); then the environment variables alone configure it.
    """
    from portal.deployments.models import PipelineEnvironment

    try:
        row = PipelineEnvironment.objects.filter(is_active=True).values_list("config", flat=True).first()
    except (DatabaseError, RuntimeError) as exc:  # RuntimeError: pytest-django's "Database access not allowed"
        logger.debug("No pipeline configuration (%s); using settings", exc)
        return {}
    return dict(row or {})


def deployed_setting(name: str) -> str | None:
    """The active environment's deployed value of portal setting `name`, or None (registered with
    ``portal.kernel.register_pipeline_config`` when the deployments app starts)."""
    return active_config().get(_OUTPUT_NAMES.get(name, name))
