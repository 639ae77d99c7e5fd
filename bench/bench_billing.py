"""Benchmark of a billing run: N subscriptions with three usage charges each, billed and finalized.

Run as ``python bench/bench_billing.py [--subscriptions 10000] [--no-extras]``. By default every subscription
also has what comes after the lines (docs/plans.md): two coupons (10 % forever, then 5.00 once), the default
tax rate (20 %, exclusive), a prepaid grant of 10.00 and the plan's included credit of 5.00 a period, so each
invoice draws credits from two grants; ``--no-extras`` bills the lines alone. It uses PostgreSQL when
DATABASE_URL points at it (CI's server: ``DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres``;
the bench creates and drops its own database ``bench_billing``), else a temporary SQLite file. It
prints the seeding time, the billing time and invoices per second (issue 5's target: 10,000
subscriptions in under 60 s on PostgreSQL).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PLANS = {
    "metrics": [
        {"code": "api_calls", "name": "API calls", "aggregation": "count", "filters": {"status": ["2xx"]}},
        {"code": "errors", "name": "Errors", "aggregation": "count", "filters": {"status": ["5xx"]}},
        {"code": "data_out_mb", "name": "Data out", "aggregation": "sum", "field": "response_length",
         "divisor": "1000000", "unit": "MB"},
    ],
    "plans": [
        {"code": "bench", "name": "Bench", "currency": "USD", "interval": "month", "base_fee": "49.00",
         "minimum_commitment": "100.00",
         "charges": [
             {"metric": "api_calls", "model": "graduated",
              "tiers": [{"up_to": 10000, "unit_amount": "0"}, {"up_to": 1000000, "unit_amount": "0.0005"},
                        {"up_to": None, "unit_amount": "0.0002", "flat_amount": "25.00"}]},
             {"metric": "errors", "model": "package", "package_size": 100, "package_amount": "1.00", "free_units": 50},
             {"metric": "data_out_mb", "model": "per_unit", "unit_amount": "0.09"},
         ]},
    ],
}


def _prepare_database(name: str) -> str:
    url = os.environ.get("DATABASE_URL", "")
    if url.startswith("postgres"):
        import psycopg

        admin_url = url.rsplit("/", 1)[0] + "/postgres"
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
        os.environ["DATABASE_URL"] = url.rsplit("/", 1)[0] + "/" + name
        return "PostgreSQL"
    folder = tempfile.mkdtemp(prefix="bench-billing-")
    os.environ["DATABASE_URL"] = f"sqlite:///{folder}/bench.sqlite3"
    os.environ["PORTAL_VAR_DIR"] = folder
    return "SQLite"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscriptions", type=int, default=10_000)
    parser.add_argument("--no-extras", action="store_true", help="no coupons, tax or credits")
    parser.add_argument("--database", default="bench_billing", help="the PostgreSQL database made and dropped")
    args = parser.parse_args()
    engine = _prepare_database(args.database)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    os.environ["EMAIL_URL"] = "dummymail://"  # the bench measures billing, not printing 10,000 emails
    # Billing records each invoice's email and tells a worker; there is none here, and the tasks must not
    # be left in var/celery for a later `make demo` worker: an in-process broker that forgets them.
    os.environ["CELERY_BROKER_URL"] = "memory://"
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection, transaction

    from metering.models import CreditEntry, CreditGrant, HourlyUsage, Invoice
    from metering.services.billing.run import billing_run
    from tenants.models import (
        Coupon,
        EmailDelivery,
        Metric,
        Plan,
        Subscription,
        SubscriptionCoupon,
        TaxRate,
        Tenant,
    )
    from tenants.services.plans import plans_import

    call_command("migrate", verbosity=0)
    began = time.perf_counter()
    extras = not args.no_extras
    if extras:
        PLANS["plans"][0]["included_credit"] = "5.00"
    plans_import(document=PLANS)
    version = Plan.objects.get(code="bench").current_version
    metrics = list(Metric.objects.all())
    october = datetime(2026, 10, 1, tzinfo=UTC)
    n = args.subscriptions
    with transaction.atomic():
        tenants = Tenant.objects.bulk_create(
            Tenant(slug=f"bench-{i:05d}", name=f"Bench {i}", contact_email=f"billing@bench-{i}.example", status="active")
            for i in range(n)
        )
        subscriptions = Subscription.objects.bulk_create(
            Subscription(tenant=t, plan_version=version, started_at=october, billing_cycle="calendar") for t in tenants
        )
        if extras:
            TaxRate.objects.create(name="VAT 20 %", percentage=20, is_default=True)
            coupons = [Coupon.objects.create(code="TEN", name="Ten", kind="percent", percent_off=10, duration="forever",
                                             times_redeemed=n),
                       Coupon.objects.create(code="FIVE", name="Five", kind="fixed", amount_off=5, currency="USD",
                                             duration="once", times_redeemed=n)]
            SubscriptionCoupon.objects.bulk_create(
                SubscriptionCoupon(subscription=s, coupon=c, applied_at=october, via="staff")
                for s in subscriptions for c in coupons)
            CreditGrant.objects.bulk_create(
                CreditGrant(tenant=t, currency="USD", amount=10, remaining=10, source="staff") for t in tenants)
        rows = []
        for i, tenant in enumerate(tenants):
            for day in range(0, 30, 3):
                hour = october + timedelta(days=day, hours=i % 24)
                for metric in metrics:
                    value = {"api_calls": 1500 + 37 * i, "errors": 3 + i % 11, "data_out_mb": 2_000_000 + 1000 * i}[metric.code]
                    rows.append(HourlyUsage(tenant=tenant, metric=metric, hour=hour, value=value))
            if len(rows) >= 50_000:
                HourlyUsage.objects.bulk_create(rows)
                rows = []
        HourlyUsage.objects.bulk_create(rows)
    seeded = time.perf_counter() - began
    print(f"{engine}: seeded {n} subscriptions with {HourlyUsage.objects.count()} hourly rows in {seeded:.1f} s")

    began = time.perf_counter()
    result = billing_run(as_of=datetime(2026, 11, 1, 2, tzinfo=UTC), sync=False, finalize_now=True)
    elapsed = time.perf_counter() - began
    created, finalized = len(result.created), len(result.finalized)
    assert created == n and finalized == n and Invoice.objects.count() == n, (created, finalized)
    assert EmailDelivery.objects.filter(kind="invoice").count() == n  # every invoice's email is recorded
    what = "3 charges, 2 coupons, tax and 2 credit grants each" if extras else "3 charges each"
    print(f"{engine}: billed {created} subscriptions ({what}) and finalized {finalized} invoices "
          f"in {elapsed:.1f} s: {created / elapsed:.0f} invoices/s")
    if extras:
        invoices = Invoice.objects.all()
        assert not invoices.filter(discount=0).exists() and not invoices.filter(tax=0).exists()
        assert not invoices.filter(credits_applied__lt=15).exists(), "every invoice drew its 15.00 of credits"
        assert CreditEntry.objects.count() == 2 * n
    began = time.perf_counter()
    again = billing_run(as_of=datetime(2026, 11, 1, 3, tzinfo=UTC), sync=False)
    print(f"{engine}: a second run found nothing to bill ({len(again.created)} created) in {time.perf_counter() - began:.1f} s")
    connection.close()
    if engine == "PostgreSQL":
        import psycopg

        with psycopg.connect(os.environ["DATABASE_URL"].rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{args.database}"')


if __name__ == "__main__":
    main()
