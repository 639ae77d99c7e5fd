"""Metering models, a module per concern; import them all here so Django finds them."""

from metering.models.billing import (
    BillingRun,
    BillingRunStatus,
    FinalizedInvoiceError,
    Invoice,
    InvoiceLine,
    InvoiceSequence,
    InvoiceStatus,
    LineType,
)
from metering.models.metrics import Aggregation, Metric
from metering.models.usage import (
    DailyUsage,
    HourlyUsage,
    MonthlyUsage,
    RollupBackfill,
    SyncCursor,
    SyncOutcome,
    SyncRun,
    UnattributedUsage,
)

__all__ = [
    "BillingRun",
    "BillingRunStatus",
    "FinalizedInvoiceError",
    "Invoice",
    "InvoiceLine",
    "InvoiceSequence",
    "InvoiceStatus",
    "LineType",
    "Aggregation", "DailyUsage", "HourlyUsage", "Metric", "MonthlyUsage", "RollupBackfill", "SyncCursor", "SyncOutcome", "SyncRun", "UnattributedUsage"]
