"""Benchmark of a billing run: N subscriptions with three usage charges each, billed and finalized.

Run as ``python bench/bench_billing.py [--subscriptions 10000] [--workers 0 1 2] [--no-extras]``. By default
every subscription also has what comes after the lines (docs/plans.md): two coupons (10 % forever, then 5.00
once), the default tax rate (20 %, exclusive), a prepaid grant of 10.00 and the plan's included credit of 5.00
a period, so each invoice draws credits from two grants; ``--no-extras`` bills the lines alone. It uses PostgreSQL
when DATABASE_URL points at it (CI's server: ``DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres``;
the bench creates and drops its own database, ``--database``, default ``bench_billing``), else a temporary
SQLite file. For each ``--workers`` figure it bills the same data afresh: 0 runs the run in this process
(``billing_run``, as ``manage.py run_billing`` does); N >= 1 starts N Celery worker processes (solo pool) on
the Redis broker of CELERY_BROKER_URL, sends them the beat's task (``run_billing``, which splits the run
into chunks the workers share) and times it until the run is settled. It prints the seeding time, and per
figure the billing time, invoices per second, the CPU seconds of the billing process(es) during the run (a
worker's start-up left out) and the load average (issue 19's target: 10,000 subscriptions
under 25 s with one worker process).
"""

from __future__ import annotations

import argparse
import os
import subprocess
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
        os.environ["DATABASE_URL"] = url.rsplit("/", 1)[0] + f"/{name}"
        return "PostgreSQL"
    folder = tempfile.mkdtemp(prefix="bench-billing-")
    os.environ["DATABASE_URL"] = f"sqlite:///{folder}/bench.sqlite3"
    os.environ["PORTAL_VAR_DIR"] = folder
    return "SQLite"


def _start_workers(count: int, queue: str, folder: Path) -> list[subprocess.Popen]:
    """`count` Celery worker processes (solo pool) on `queue`, on the bench's database; returned once ready."""
    workers = []
    for index in range(count):
        log = folder / f"worker-{index}.log"
        workers.append((subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "portal", "worker", "--pool=solo", "--concurrency=1", "-Q", queue,
             "-n", f"bench{index}@%h", "--without-heartbeat", "--without-gossip", "--without-mingle",
             "--loglevel=INFO"],
            cwd=ROOT, env=dict(os.environ), stdout=log.open("w"), stderr=subprocess.STDOUT), log))
    deadline = time.monotonic() + 120
    for proc, log in workers:
        while "ready" not in log.read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"a Celery worker did not start:\n{log.read_text()}")
            time.sleep(0.2)
    return [proc for proc, _log in workers]


def _stop_workers(workers: list[subprocess.Popen]) -> None:
    for proc in workers:
        proc.terminate()
    for proc in workers:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def _forget_invoices() -> None:
    """Back to the seeded state: no invoice, run, number, email or credit drawn (the next figure bills the same
    data)."""
    from django.db import models

    from metering.models import BillingRun, CreditEntry, CreditGrant, Invoice, InvoiceLine, InvoiceSequence
    from tenants.models import EmailDelivery

    EmailDelivery.objects.all().delete()
    CreditEntry.objects.all().delete()  # the credits drawn, and the plans' included credit granted, undone
    CreditGrant.objects.exclude(source="staff").delete()
    CreditGrant.objects.update(remaining=models.F("amount"))
    InvoiceLine.objects.all().delete()
    Invoice.objects.all().delete()
    InvoiceSequence.objects.all().delete()
    BillingRun.objects.all().delete()


def _bill(workers: int, as_of: datetime, folder: Path, queue: str):
    """One billing of everything with `workers` worker processes (0: in this process): (run, seconds)."""
    from metering.models import BillingRun, BillingRunStatus
    from metering.services.billing.run import billing_run

    if workers == 0:
        began, cpu = time.perf_counter(), time.process_time()
        result = billing_run(as_of=as_of, sync=False, finalize_now=True)
        return result.run, time.perf_counter() - began, time.process_time() - cpu
    from metering.tasks import run_billing

    processes = _start_workers(workers, queue, folder)
    try:
        started_cpu = sum(_cpu_seconds(proc.pid) for proc in processes)  # the workers' start-up, not the run's
        began = time.perf_counter()
        run_billing.apply_async(kwargs={"as_of": as_of.isoformat(), "finalize_now": True, "sync": False}, queue=queue)
        while not BillingRun.objects.exclude(status=BillingRunStatus.RUNNING).exists():
            if any(proc.poll() is not None for proc in processes):
                raise SystemExit("a Celery worker stopped during the run")
            time.sleep(0.05)
        elapsed = time.perf_counter() - began
        cpu = sum(_cpu_seconds(proc.pid) for proc in processes) - started_cpu
    finally:
        _stop_workers(processes)
    return BillingRun.objects.get(), elapsed, cpu


def _cpu_seconds(pid: int) -> float:
    """User and system CPU seconds a process has used (Linux's /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def seed(n: int, extras: bool) -> None:
    """The bench's data: `n` tenants on the bench plan, a month of hourly usage each, and with `extras` two
    coupons, the default tax rate and a prepaid grant each (also used by profiling scripts)."""
    from django.db import transaction

    from metering.models import CreditGrant, HourlyUsage
    from tenants.models import Coupon, Metric, Plan, Subscription, SubscriptionCoupon, TaxRate, Tenant
    from tenants.services.plans import plans_import

    if extras:
        PLANS["plans"][0]["included_credit"] = "5.00"
    plans_import(document=PLANS)
    version = Plan.objects.get(code="bench").current_version
    metrics = list(Metric.objects.all())
    october = datetime(2026, 10, 1, tzinfo=UTC)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscriptions", type=int, default=10_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[0],
                        help="worker processes per figure (0: the run in this process); several figures bill the "
                             "same data afresh each")
    parser.add_argument("--database", default="bench_billing", help="the PostgreSQL database to create and drop")
    parser.add_argument("--no-extras", action="store_true", help="no coupons, tax or credits")
    args = parser.parse_args()
    if any(args.workers) and not os.environ.get("CELERY_BROKER_URL", "").startswith("redis://"):
        raise SystemExit("--workers N (N >= 1) needs Celery workers on Redis: set CELERY_BROKER_URL=redis://...")
    engine = _prepare_database(args.database)
    folder = Path(tempfile.mkdtemp(prefix="bench-billing-"))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    os.environ["EMAIL_URL"] = "dummymail://"  # the bench measures billing, not printing 10,000 emails
    queue = f"bench-billing-{os.getpid()}"
    if any(args.workers):
        # Billing records each invoice's email and tells a worker; the bench's workers only bill: the emails'
        # tasks go to a queue nobody reads, emptied at the end.
        os.environ["CELERY_TASK_DEFAULT_QUEUE"] = f"{queue}-emails"
    else:
        # No worker: an in-process broker that forgets the emails' tasks (none left in var/celery for a
        # later `make demo` worker).
        os.environ["CELERY_BROKER_URL"] = "memory://"
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from metering.models import CreditEntry, HourlyUsage, Invoice
    from tenants.models import EmailDelivery

    call_command("migrate", verbosity=0)
    began = time.perf_counter()
    extras = not args.no_extras
    n = args.subscriptions
    seed(n, extras)
    seeded = time.perf_counter() - began
    print(f"{engine}: seeded {n} subscriptions with {HourlyUsage.objects.count()} hourly rows in {seeded:.1f} s")
    if engine == "PostgreSQL":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")  # the planner sees the seeded tables as a day's autovacuum would leave them

    as_of = datetime(2026, 11, 1, 2, tzinfo=UTC)
    for index, workers in enumerate(args.workers):
        if index:
            _forget_invoices()
        run, elapsed, cpu = _bill(workers, as_of, folder, queue)
        created, finalized = run.invoices_created, run.invoices_finalized
        assert run.status == "done" and created == n and finalized == n and Invoice.objects.count() == n, (
            run.status, run.errors[:300], created, finalized)
        assert Invoice.objects.filter(number__isnull=False).count() == n  # every invoice finalized, numbered
        assert EmailDelivery.objects.filter(kind="invoice").count() == n  # every invoice's email is recorded
        if extras:
            invoices = Invoice.objects.all()
            assert not invoices.filter(discount=0).exists() and not invoices.filter(tax=0).exists()
            assert not invoices.filter(credits_applied__lt=15).exists(), "every invoice drew its 15.00 of credits"
            assert CreditEntry.objects.count() == 2 * n
        who = "in this process" if workers == 0 else f"with {workers} worker process{'es' if workers > 1 else ''}"
        load = ", ".join(f"{figure:.2f}" for figure in os.getloadavg())
        what = "3 charges, 2 coupons, tax and 2 credit grants each" if extras else "3 charges each"
        print(f"{engine}: billed {created} subscriptions ({what}) and finalized {finalized} invoices {who} "
              f"in {elapsed:.1f} s: {created / elapsed:.0f} invoices/s ({run.chunks.count()} chunks; {cpu:.1f} CPU s "
              f"in the billing process{'es' if workers > 1 else ''}; load average {load})", flush=True)
    began = time.perf_counter()
    from metering.services.billing.run import billing_run

    again = billing_run(as_of=datetime(2026, 11, 1, 3, tzinfo=UTC), sync=False)
    print(f"{engine}: a second run found nothing to bill ({len(again.created)} created) in {time.perf_counter() - began:.1f} s")
    if any(args.workers):
        from portal.celery import app

        with app.connection_for_write() as conn:
            conn.default_channel.queue_purge(f"{queue}-emails")
    connection.close()
    if engine == "PostgreSQL":
        import psycopg

        with psycopg.connect(os.environ["DATABASE_URL"].rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{args.database}"')


if __name__ == "__main__":
    main()
