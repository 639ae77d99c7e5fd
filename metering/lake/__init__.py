"""The usage lake: ``get_lake()`` returns the backend that ``settings.LAKE_BACKEND`` names (the access-log
table); ``metering.lake.events`` is the posted events' table."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from metering.lake.base import HourlyRow, Lake, LakeError, LakeTimeout

__all__ = ["HourlyRow", "Lake", "LakeError", "LakeTimeout", "get_lake"]


def get_lake() -> Lake:
    """The configured lake: ``local`` (pyiceberg + DuckDB under LAKE_WAREHOUSE_DIR) or ``athena``."""
    backend = settings.LAKE_BACKEND
    if backend == "local":
        from metering.lake.local import LocalLake

        return LocalLake(warehouse=settings.LAKE_WAREHOUSE_DIR, database=settings.LAKE_DATABASE,
                         table=settings.LAKE_TABLE, duckdb_memory_limit=settings.LAKE_DUCKDB_MEMORY_LIMIT,
                         events_table=settings.LAKE_EVENTS_TABLE)
    if backend == "athena":
        from metering.lake.athena import AthenaLake

        return AthenaLake.from_settings()
    raise ImproperlyConfigured(f"LAKE_BACKEND must be 'local' or 'athena', not {backend!r}")
