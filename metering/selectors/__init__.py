"""Reads of the metering app, by subject:

- ``usage``: a tenant's quantity of each metric over a period (what an invoice of that period bills)
  and the hour, day and month bucket arithmetic; its names are re-exported here.
- ``events``: the events that arrived (receipts) and the recent rejections.
- ``billing``: the projected bill of the current period (import it from metering.selectors.billing:
  it prices through metering.services.billing, which reads usage from here).
"""

from metering.selectors.usage import (
    ADDITIVE,
    backfill_pending,
    bucket_end,
    bucket_start,
    covers_to_bucket_end,
    hour_bounds,
    period_quantities,
    period_quantities_many,
    start_whole_period_figures,
    usage_version,
    usage_version_and_backfill,
    whole_bucket,
    whole_period_figures,
)

__all__ = [
    "ADDITIVE",
    "backfill_pending",
    "bucket_end",
    "bucket_start",
    "covers_to_bucket_end",
    "hour_bounds",
    "period_quantities",
    "period_quantities_many",
    "usage_version",
    "usage_version_and_backfill",
    "whole_bucket",
    "start_whole_period_figures",
    "whole_period_figures",
]
