"""The billing read cache: what a billing run reads once instead of once per subscription.

Metrics by code, each plan version parsed once, and period quantities fetched for many tenants in one
grouped query then handed out once each (a later pricing of the same window reads fresh usage, as
finalizing a draft must).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from metering.selectors.usage import period_quantities_many
from tenants.models import Metric, PlanVersion


class Catalog:
    """Metrics and parsed plan versions of one run (or one pricing), and its prefetched quantities."""

    def __init__(self):
        self.metrics = {metric.code: metric for metric in Metric.objects.all()}
        self._specs: dict[int, object] = {}
        self._quantities: dict[tuple, dict[str, Decimal]] = {}
        self._coupons = None
        self._taxes = None

    @property
    def coupons(self):
        """The subscriptions' coupons and the periods they discounted (metering.services.billing.order)."""
        if self._coupons is None:
            from metering.services.billing.order import CouponBook

            self._coupons = CouponBook()
        return self._coupons

    @property
    def taxes(self):
        if self._taxes is None:
            from metering.services.billing.order import TaxBook

            self._taxes = TaxBook()
        return self._taxes

    def spec(self, version: PlanVersion):
        if version.pk not in self._specs:
            self._specs[version.pk] = version.to_spec()
        return self._specs[version.pk]

    def metric_names(self) -> dict[str, str]:
        return {code: metric.name for code, metric in self.metrics.items()}

    def prefetch_quantities(self, tenants, codes: tuple[str, ...], window: tuple[datetime, datetime]) -> None:
        """Fetch the quantities of many tenants over one window at once, for quantities() to hand out."""
        found = period_quantities_many(
            tenants=tenants, metrics=[self.metrics[code] for code in codes], start=window[0], end=window[1]
        )
        for tenant_id, quantities in found.items():
            self._quantities[(tenant_id, codes, window)] = quantities

    def quantities(self, tenant, codes: tuple[str, ...], window: tuple[datetime, datetime]) -> dict[str, Decimal]:
        # Prefetched figures are handed out once, so a later pricing of the same window reads fresh usage.
        found = self._quantities.pop((tenant.pk, codes, window), None)
        if found is None:
            self.prefetch_quantities([tenant], codes, window)
            found = self._quantities.pop((tenant.pk, codes, window))
        return found
