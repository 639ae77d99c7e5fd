"""Metering models, a module per concern; import them all here so Django finds them."""

from metering.models.metrics import Aggregation, Metric

__all__ = ["Aggregation", "Metric"]
