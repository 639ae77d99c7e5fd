"""Benchmark of the pricing engine: how many (plan, quantities) pairs per second one core prices.

Run as ``python bench/bench_pricing.py [--pairs N] [--check]``. It needs no Django settings and no
database: plans are parsed from documents once, then each pair is priced into a full period's
invoice lines (base fee, one usage line per charge, commitment true-up). ``--check`` exits 1 when
100,000 pairs would take 2 seconds or more (issue 3's target).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.pop("DJANGO_SETTINGS_MODULE", None)  # the engine must not need Django

from metering.pricing import parse_plan, price_charge, price_plan  # noqa: E402

PLAN_DOCUMENTS = [
    {
        "code": "pro", "name": "Pro", "currency": "USD", "interval": "month",
        "base_fee": "49.00", "minimum_commitment": "100.00",
        "charges": [
            {"metric": "api_calls", "model": "graduated", "tiers": [
                {"up_to": 10000, "unit_amount": "0"},
                {"up_to": 1000000, "unit_amount": "0.0005"},
                {"up_to": None, "unit_amount": "0.0002", "flat_amount": "25.00"},
            ]},
            {"metric": "data_out_mb", "model": "per_unit", "unit_amount": "0.09"},
        ],
    },
    {
        "code": "scale", "name": "Scale", "currency": "EUR", "interval": "month", "base_fee": "199.00",
        "charges": [
            {"metric": "api_calls", "model": "volume", "tiers": [
                {"up_to": 100000, "unit_amount": "0.001", "flat_amount": "10"},
                {"up_to": 5000000, "unit_amount": "0.0006"},
                {"up_to": None, "unit_amount": "0.0004"},
            ]},
            {"metric": "data_out_mb", "model": "package", "package_size": 1000, "package_amount": "5.00",
             "free_units": 10000},
            {"metric": "active_ips", "model": "per_unit", "unit_amount": "0.50",
             "transform": {"divide_by": 10, "round": "up"}},
        ],
    },
    {
        "code": "tokyo", "name": "Tokyo", "currency": "JPY", "interval": "month", "base_fee": "5000",
        "charges": [
            {"metric": "api_calls", "model": "graduated", "tiers": [
                {"up_to": 1000, "unit_amount": "0", "flat_amount": "100"},
                {"up_to": None, "unit_amount": "0.35"},
            ]},
        ],
    },
]

METRICS = ("api_calls", "data_out_mb", "active_ips")


def make_pairs(count: int, seed: int = 3) -> list:
    rng = random.Random(seed)
    plans = [parse_plan(doc) for doc in PLAN_DOCUMENTS]
    pairs = []
    for _ in range(count):
        quantities = {
            "api_calls": Decimal(rng.randrange(0, 3_000_000)),
            "data_out_mb": Decimal(rng.randrange(0, 5_000_000)) / 100,  # fractional quantities too
            "active_ips": Decimal(rng.randrange(0, 500)),
        }
        pairs.append((rng.choice(plans), quantities))
    return pairs


def bench_periods(pairs: list) -> tuple[float, Decimal]:
    start_at = datetime(2026, 11, 1, tzinfo=UTC)
    end_at = datetime(2026, 12, 1, tzinfo=UTC)
    active = datetime(2026, 11, 10, 12, tzinfo=UTC)  # half the pairs start mid-month: proration
    total = Decimal(0)
    started = time.perf_counter()
    for index, (plan, quantities) in enumerate(pairs):
        priced = price_plan(
            plan, quantities, period_start=start_at, period_end=end_at,
            active_start=active if index & 1 else None,
        )
        total += priced.total
    return time.perf_counter() - started, total


def bench_charges(pairs: list) -> float:
    started = time.perf_counter()
    for plan, quantities in pairs:
        currency = plan.currency
        for charge in plan.charges:
            price_charge(charge, quantities[charge.metric], currency)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=100_000)
    parser.add_argument("--check", action="store_true", help="exit 1 if 100,000 pairs take 2 s or more")
    args = parser.parse_args()

    pairs = make_pairs(args.pairs)
    bench_periods(pairs[:2000])  # warm up
    elapsed, total = bench_periods(pairs)
    rate = len(pairs) / elapsed
    charge_elapsed = bench_charges(pairs)
    print(f"priced {len(pairs):,} (plan, quantities) pairs into invoices in {elapsed:.3f} s: "
          f"{rate:,.0f} pairs/s on one core (sum of totals {total})")
    print(f"price_charge alone over the same pairs: {charge_elapsed:.3f} s, "
          f"{len(pairs) / charge_elapsed:,.0f} pairs/s")
    projected = 100_000 / rate
    print(f"100,000 pairs: {projected:.3f} s (target < 2 s)")
    if args.check and projected >= 2:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
