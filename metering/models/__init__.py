"""Metering models, a module per concern; import them all here so Django finds them.

Metrics are part of the catalog: ``tenants.models.Metric``."""

from metering.models.alerts import (
    AlertChannel,
    AlertKind,
    StaffNotice,
    StaffNoticeKind,
    UsageAlert,
    UsageAlertFiring,
)
from metering.models.billing import (
    BillingChunkStatus,
    BillingRun,
    BillingRunChunk,
    BillingRunStatus,
    FinalizedInvoiceError,
    Invoice,
    InvoiceDiscount,
    InvoiceLine,
    InvoiceSequence,
    InvoiceStatus,
    LineType,
)
from metering.models.credit_notes import (
    CreditNote,
    CreditNoteLine,
    CreditNoteOutcome,
    ImmutableCreditNoteError,
)
from metering.models.credits import CreditEntry, CreditEntryKind, CreditGrant, CreditLedgerError, CreditSource
from metering.models.events import EventReceipt, EventRejection
from metering.models.marketplace import MarketplaceRecordStatus, MarketplaceUsageRecord
from metering.models.payments import InvoicePayment, InvoiceReminder
from metering.models.usage import (
    DailyTotal,
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
    "AlertChannel", "AlertKind", "StaffNotice", "StaffNoticeKind", "UsageAlert", "UsageAlertFiring",
    "BillingChunkStatus",
    "BillingRun",
    "BillingRunChunk",
    "BillingRunStatus",
    "CreditNote", "CreditNoteLine", "CreditNoteOutcome", "ImmutableCreditNoteError",
    "EventReceipt",
    "EventRejection",
    "FinalizedInvoiceError",
    "CreditEntry", "CreditEntryKind", "CreditGrant", "CreditLedgerError", "CreditSource",
    "Invoice",
    "InvoiceDiscount",
    "InvoiceLine",
    "InvoiceSequence",
    "InvoicePayment",
    "InvoiceReminder",
    "InvoiceStatus",
    "LineType",
    "MarketplaceRecordStatus", "MarketplaceUsageRecord",
    "DailyTotal", "DailyUsage", "HourlyUsage", "MonthlyUsage", "RollupBackfill", "SyncCursor", "SyncOutcome", "SyncRun", "UnattributedUsage"]
