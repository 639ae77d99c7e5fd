"""A chart as data: what the page's JavaScript draws and what its text table shows, from one object."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

# Colour-blind-safe palette (Okabe-Ito), then a neutral grey for "other".
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]
OTHER_COLOUR = "#9AA5B1"


@dataclass
class Series:
    label: str
    values: list[Decimal]
    colour: str = ""
    axis: str = ""  # series with different axes are drawn against separate y axes (amounts in different currencies)


@dataclass
class Chart:
    """One chart: a kind (bar, line, doughnut), labels along x, one or more series of values."""

    id: str
    title: str
    kind: str
    labels: list[str]
    series: list[Series] = field(default_factory=list)
    stacked: bool = False
    unit: str = ""
    horizontal: bool = False
    note: str = ""

    def __post_init__(self):
        for i, series in enumerate(self.series):
            series.colour = series.colour or PALETTE[i % len(PALETTE)]

    @property
    def has_data(self) -> bool:
        return any(v for s in self.series for v in s.values)

    @property
    def rows(self) -> list[tuple[str, list[Decimal]]]:
        """The table's rows: one per label, one cell per series (the same numbers the chart draws)."""
        return [(label, [s.values[i] for s in self.series]) for i, label in enumerate(self.labels)]

    def as_json(self) -> dict:
        # Values go as strings: exact for the table-minded reader, and Chart.js parses numeric strings.
        return {
            "kind": self.kind,
            "title": self.title,
            "labels": self.labels,
            "stacked": self.stacked,
            "horizontal": self.horizontal,
            "unit": self.unit,
            "series": [{"label": s.label, "values": [format_number(v) for v in s.values], "colour": s.colour,
                        "axis": s.axis} for s in self.series],
        }


def format_number(value: Decimal | int | None, places: int | None = None) -> str:
    """A plain decimal string with no exponent and no trailing zeros (or exactly `places` decimals)."""
    if value is None:
        return ""
    value = Decimal(value)
    if places is not None:
        return f"{value.quantize(Decimal(1).scaleb(-places)):f}"
    text = f"{value:f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"
