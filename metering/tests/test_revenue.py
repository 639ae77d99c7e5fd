"""Revenue a provider can read, against figures worked out by hand from a small history: MRR and ARR, revenue by
month and plan, new and churned tenants, net revenue retention; through the staff page (HTML, CSV, JSON) and
the admin API, per currency and never added across currencies."""

import csv
import io
import itertools
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from metering.models import Invoice, InvoiceLine, InvoiceStatus, LineType
from metering.selectors.revenue import add_months, revenue_report
from tenants.models import Subscription, SubscriptionStatus
from tenants.services.plans import plan_save
from tenants.tests.factories import TenantFactory

pytestmark = pytest.mark.django_db


def _at(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


NUMBERS = itertools.count(1)


def invoice(subscription, month: date, *, base: str, usage: str, status=InvoiceStatus.FINALIZED):
    end = add_months(month, 1)
    made = Invoice.objects.create(
        tenant=subscription.tenant, subscription=subscription, period_start=_at(month), period_end=_at(end),
        currency=subscription.plan_version.currency, subtotal=Decimal(base) + Decimal(usage), total=Decimal(base) + Decimal(usage),
        finalize_after=_at(end))
    InvoiceLine.objects.create(invoice=made, position=1, type=LineType.BASE_FEE, description="base",
                               amount=Decimal(base), period_start=made.period_start, period_end=made.period_end)
    InvoiceLine.objects.create(invoice=made, position=2, type=LineType.USAGE, description="usage",
                               amount=Decimal(usage), period_start=made.period_start, period_end=made.period_end)
    if status != InvoiceStatus.DRAFT:  # lines are written to a draft only; then it is sent
        Invoice.objects.filter(pk=made.pk).update(status=status, number=f"T-{next(NUMBERS)}", finalized_at=_at(end),
                                                  payment_terms_days=30, due_date=end + timedelta(days=30))
    return made


@pytest.fixture
def history():
    """This month M: A (pro, 49.00/month) since M-13; B (pro) from M-2 to the middle of M-1; C (yearly 1200.00 EUR)
    since M-1; D (pro) in its trial until next month."""
    month = timezone.now().date().replace(day=1)
    pro, _ = plan_save(document={"code": "pro", "name": "Pro", "currency": "USD", "interval": "month",
                                 "base_fee": "49.00"})
    yearly, _ = plan_save(document={"code": "yearly", "name": "Yearly", "currency": "EUR", "interval": "year",
                                    "base_fee": "1200.00"})

    def subscribe(slug, version, start, end=None, trial_end=None):
        return Subscription.objects.create(
            tenant=TenantFactory(slug=slug), plan_version=version, started_at=_at(start), trial_ends_at=trial_end,
            ends_at=end, status=SubscriptionStatus.ENDED if end else SubscriptionStatus.ACTIVE)

    a = subscribe("a", pro, add_months(month, -13))
    b = subscribe("b", pro, add_months(month, -2), end=_at(add_months(month, -1)) + timedelta(days=14))
    subscribe("c", yearly, add_months(month, -1))
    subscribe("d", pro, month, trial_end=_at(add_months(month, 1)) + timedelta(days=2))
    invoice(a, add_months(month, -13), base="49.00", usage="51.00")  # 100.00, a year and more ago
    invoice(a, add_months(month, -1), base="49.00", usage="71.00")  # 120.00
    invoice(a, add_months(month, -2), base="49.00", usage="0.00", status=InvoiceStatus.VOID)  # never counts
    invoice(b, add_months(month, -2), base="49.00", usage="11.00")  # 60.00
    invoice(b, add_months(month, -1), base="24.50", usage="0.00", status=InvoiceStatus.PAID)  # prorated, paid
    return month


def test_the_figures_worked_out_by_hand(history):
    month = history
    usd, = [r for r in revenue_report() if r.currency == "USD"]
    eur, = [r for r in revenue_report() if r.currency == "EUR"]
    rows = {m.month: m for m in usd.months}
    assert len(usd.months) == 12 and usd.months[-1].month == month
    # Revenue: the finalized and paid totals by the period's month; the void invoice never.
    assert rows[add_months(month, -1)].revenue == Decimal("144.50")  # A's 120.00 + B's prorated 24.50
    assert rows[add_months(month, -2)].revenue == Decimal("60.00")
    assert rows[add_months(month, -1)].by_plan == {"pro": Decimal("144.50")}
    # MRR at this month's end: A's 49.00 (B ended, D still in its trial) + usage of M, M-1, M-2: (0 + 71 + 11) / 3.
    assert usd.current.mrr == Decimal("76.33") and usd.current.arr == Decimal("915.96")
    # Last month's: A and B... B ended in the middle of it: A's 49.00 + (71 + 11 + 0) / 3 = 76.33 too.
    assert rows[add_months(month, -1)].mrr == Decimal("76.33")
    assert rows[add_months(month, -2)].mrr == Decimal("101.67")  # A and B running: 98.00 + (11 + 0 + 0) / 3
    # New tenants: B two months ago, D this month (A started before the twelve months shown); churned: B.
    assert [(m.month, m.new_tenants, m.churned_tenants) for m in usd.months if m.new_tenants or m.churned_tenants] == [
        (add_months(month, -2), 1, 0), (add_months(month, -1), 0, 1), (month, 1, 0)]
    # NRR: A had 100.00 in the twelve months before the last twelve, 120.00 in them; B had nothing before.
    assert usd.nrr == Decimal("1.2")
    # EUR apart: a yearly plan's fee counts a twelfth a month; no invoice, so no revenue and no NRR.
    assert eur.current.mrr == Decimal("100.00") and eur.nrr is None and eur.months[-2].new_tenants == 1


def test_staff_read_it_as_a_page_csv_json_and_the_api(history, client, django_user_model):
    staff = django_user_model.objects.create_superuser("boss", "boss@example.com", "pw-for-tests-1")
    client.force_login(staff)
    page = client.get("/admin/revenue/").content.decode()
    for shown in ("76.33 USD", "915.96 USD", "120.0 %", "100.00 EUR", "— (no revenue a year before)",
                  "Net revenue retention (NRR)", "the monthly base fee of every subscription running then"):
        assert shown in page, shown
    assert "/admin/revenue/" in client.get("/admin/dashboard/").content.decode()  # linked from the dashboard
    rows = list(csv.DictReader(io.StringIO(client.get("/admin/revenue/?format=csv").content.decode())))
    last = f"{add_months(history, -1):%Y-%m}"
    assert {(r["currency"], r["month"], r["revenue"], r["plan"], r["plan_revenue"]) for r in rows
            if r["month"] == last and r["currency"] == "USD"} == {("USD", last, "144.50", "pro", "144.50")}
    api = APIClient()
    api.force_authenticate(staff)
    body = api.get("/api/v1/admin/revenue/").json()
    usd, = [c for c in body["currencies"] if c["currency"] == "USD"]
    assert (usd["mrr"], usd["arr"], usd["nrr"]) == ("76.33", "915.96", "1.2000")
    assert "MRR" in body["definitions"]
    assert client.get("/api/v1/admin/revenue/").status_code == 200  # the session works as well
    tenant_user = django_user_model.objects.create_user("ann", "ann@example.com", "pw-for-tests-1")
    api.force_authenticate(tenant_user)
    assert api.get("/api/v1/admin/revenue/").status_code == 403
