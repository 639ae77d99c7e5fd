"""The provider's dashboard: staff only, the right figures as charts and text, filters, a fixed number of queries."""

import json
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib.staticfiles import finders
from django.db import connection
from django.db.models import F
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from metering.lake import get_lake
from metering.models import DailyTotal, DailyUsage, HourlyUsage
from metering.services.sync import daily_usage_refresh
from portal.dashboards import sample
from portal.dashboards.forms import default_range
from tenants.models import Metric
from tenants.tests.factories import TenantFactory, import_sample_plans

URL = "/admin/dashboard/"


@pytest.fixture
def staff_client(client, django_user_model):
    user = django_user_model.objects.create_superuser("boss", "boss@example.com", "Corr3ct-Horse-Battery!")
    client.force_login(user)
    return client


@pytest.fixture
def plans(db):
    return import_sample_plans()


@pytest.fixture(autouse=True)
def lake(settings, tmp_path):
    """A private local lake: a unique_count metric's figure over a range of days is asked of it."""
    settings.LAKE_BACKEND = "local"
    settings.LAKE_WAREHOUSE_DIR = str(tmp_path / "lake")
    return get_lake()


def seeded(plans, count, *, days=3, prefix="tenant"):
    metrics = sample.sample_metrics()
    started = timezone.now() - timedelta(days=90)
    tenants = sample.seed_tenants(count=count, plan_versions=[plans["pro"], plans["starter"]], started_at=started,
                                  prefix=prefix)
    today = timezone.now().date()
    sample.seed_hourly_usage(tenants=tenants, metrics=metrics, end=today, days=days, lake=get_lake())
    months = [(today.replace(day=1) - timedelta(days=31 * i)).replace(day=1) for i in (2, 1, 0)]
    sample.seed_invoices(tenants=tenants, months=months)
    sample.seed_pipeline(now=timezone.now(), metric=metrics[0])
    return tenants, metrics


def chart_data(html, chart_id):
    match = re.search(rf'<script id="{chart_id}-data" type="application/json">(.*?)</script>', html, re.S)
    assert match, f"no json_script for {chart_id}"
    return json.loads(match.group(1))


def test_the_vendored_chart_library_is_served_from_static_files():
    path = finders.find("vendor/chartjs/chart.umd.min.js")
    assert path, "Chart.js is not in the portal's static files"
    head = open(path, encoding="utf-8").read(200)
    assert "Chart.js v4." in head and "MIT" in head
    assert finders.find("vendor/chartjs/LICENSE.md") and finders.find("portal/dashboards.js")


def test_only_staff_see_the_dashboard(client, django_user_model, db):
    response = client.get(URL)
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    user = django_user_model.objects.create_user("someone", "s@example.com", "Corr3ct-Horse-Battery!")
    client.force_login(user)
    response = client.get(URL)
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_the_admin_index_links_to_the_dashboard(staff_client):
    response = staff_client.get("/admin/")
    assert response.status_code == 200
    assert 'href="/admin/dashboard/"' in response.content.decode()


def test_dashboard_shows_usage_charts_with_the_same_figures_as_text(staff_client, plans):
    tenants, metrics = seeded(plans, 3)
    response = staff_client.get(URL)
    assert response.status_code == 200
    html = response.content.decode()
    # No CDN: the library comes from the portal's own static files.
    assert "/static/vendor/chartjs/chart.umd.min.js" in html
    assert "cdn" not in html.lower()
    start, end = default_range()
    calls = Metric.objects.get(code="api_calls")
    data = chart_data(html, "usage-api_calls")
    assert data["kind"] == "bar" and data["stacked"] is True
    assert data["labels"][0] == start.isoformat() and data["labels"][-1] == end.isoformat()
    # The stacked series add up to the database's daily totals.
    today = end.isoformat()
    index = data["labels"].index(today)
    drawn = sum(Decimal(s["values"][index]) for s in data["series"])
    day_start = datetime.combine(end, datetime.min.time(), tzinfo=UTC)
    expected = sum(HourlyUsage.objects.filter(metric=calls, hour__gte=day_start,
                                              hour__lt=day_start + timedelta(days=1)).values_list("value", flat=True))
    assert drawn == expected
    assert {s["label"] for s in data["series"]} == {t.slug for t in tenants}
    # The same numbers are in the figures table.
    assert f"<th scope=\"row\">{today}</th>" in html
    # Data out is shown in MB (raw bytes divided by the metric's divisor).
    out = chart_data(html, "usage-data_out_mb")
    raw = sum(HourlyUsage.objects.filter(metric__code="data_out_mb", tenant=tenants[0], hour__gte=day_start)
              .values_list("value", flat=True))
    series = next(s for s in out["series"] if s["label"] == tenants[0].slug)
    assert Decimal(series["values"][index]) == (raw / Decimal(1_000_000)).quantize(Decimal("0.001"))
    # A unique_count metric is not stacked (hourly figures do not add up).
    assert chart_data(html, "usage-active_ips")["stacked"] is False


def test_top_tenants_revenue_invoices_unattributed_and_pipeline(staff_client, plans):
    tenants, _ = seeded(plans, 3)
    html = staff_client.get(URL).content.decode()
    # Top tenants: the busiest first (the sample makes later tenants busier).
    top = html[html.index('id="top-tenants"'):]
    assert top.index(tenants[2].slug) < top.index(tenants[0].slug)
    assert "Ranked by API calls." in top and "–" not in top[:top.index("</table>")]  # every figure filled
    # Revenue: finalized and paid only, by month (one series per currency) and by plan (the table under the
    # chart); drafts are not revenue.
    revenue = chart_data(html, "revenue")
    assert [s["label"] for s in revenue["series"]] == ["USD"]
    card = html[html.index('id="revenue-card"'):html.index('id="invoices-card"')]
    assert set(re.findall(r'<th scope="row">(\w+)</th><td class="num">\d+</td><td class="num">USD ', card)) == {
        "pro", "starter"}
    assert revenue["unit"] == "USD" and len(revenue["labels"]) >= 12
    total = sum(Decimal(v) for s in revenue["series"] for v in s["values"])
    # 3 tenants x 2 billed months, totals 100 + tenant index.
    assert total == Decimal("2") * (Decimal("100") + Decimal("101") + Decimal("102"))
    invoices = chart_data(html, "invoices")
    counts = dict(zip(invoices["labels"], invoices["series"][0]["values"], strict=True))
    assert counts["Draft"] == "3"
    # Unattributed usage and the pipeline's health.
    assert "5e6f7a8b-orphan" in html
    assert "LakeError: the lake did not answer" in html
    assert "dash-state-ok" in html
    assert "Synced up to" in html


def test_revenue_in_several_currencies_is_never_added_up(staff_client, plans):
    """EUR and JPY invoices beside USD ones: one series per currency (each on its own axis), totals per currency,
    each amount with its currency's minor digits."""
    from tenants.services.plans import plan_save

    tenants, _ = seeded(plans, 2)  # USD: 2 tenants x 2 billed months, 100 + tenant index
    for code, currency in (("euro", "EUR"), ("yen", "JPY")):
        version, _ = plan_save(document={"code": code, "name": code.title(), "currency": currency,
                                         "interval": "month", "base_fee": "10"})
        others = sample.seed_tenants(count=1, plan_versions=[version], started_at=timezone.now() - timedelta(days=90),
                                     prefix=code)
        today = timezone.now().date()
        months = [(today.replace(day=1) - timedelta(days=31 * i)).replace(day=1) for i in (2, 1, 0)]
        sample.seed_invoices(tenants=others, months=months, total=Decimal("1000"))
    html = staff_client.get(URL).content.decode()
    revenue = chart_data(html, "revenue")
    assert [(s["label"], s["axis"]) for s in revenue["series"]] == [("EUR", "EUR"), ("JPY", "JPY"), ("USD", "USD")]
    assert revenue["stacked"] is False and revenue["unit"] == ""
    totals = {s["label"]: sum(Decimal(v) for v in s["values"]) for s in revenue["series"]}
    assert totals == {"EUR": Decimal("2000"), "JPY": Decimal("2000"), "USD": Decimal("402")}
    card = html[html.index('id="revenue-card"'):html.index('id="invoices-card"')]
    assert "EUR 2000.00" in card and "JPY 2000<" in card and "JPY 2000.00" not in card
    # The invoices table: one total per state and currency, in the currency's digits.
    states = html[html.index('id="invoices-card"'):]
    assert "JPY 1000<" in states and "EUR 1000.00" in states and "USD 201.00" in states


def test_the_tenant_filter_narrows_every_chart(staff_client, plans):
    tenants, _ = seeded(plans, 3)
    response = staff_client.get(URL, {"tenant": tenants[1].slug})
    html = response.content.decode()
    assert response.status_code == 200
    data = chart_data(html, "usage-api_calls")
    assert [s["label"] for s in data["series"]] == [tenants[1].slug]
    revenue = chart_data(html, "revenue")
    assert sum(Decimal(v) for s in revenue["series"] for v in s["values"]) == Decimal("202")


def test_a_date_range_narrows_the_charts(staff_client, plans):
    seeded(plans, 2)
    end = timezone.now().date()
    start = end - timedelta(days=1)
    data = chart_data(staff_client.get(URL, {"start": start.isoformat(), "end": end.isoformat()}).content.decode(),
                      "usage-api_calls")
    assert data["labels"] == [start.isoformat(), end.isoformat()]


@pytest.mark.parametrize("params, message", [
    ({"start": "yesterday"}, "Enter a valid date"),
    ({"start": "2026-11-20", "end": "2026-11-01"}, "The start date must not be after the end date"),
    ({"start": "2020-01-01", "end": "2026-11-01"}, "at most 366 days"),
    ({"tenant": "no-such-tenant"}, "Select a valid choice"),
    ({"start": "2026-13-45"}, "Enter a valid date"),
])
def test_bad_filters_give_a_message_not_an_error(staff_client, plans, params, message):
    response = staff_client.get(URL, params)
    assert response.status_code == 200
    html = response.content.decode()
    assert message in html
    assert "shows the last 30 days for all tenants" in html
    start, end = default_range()
    assert chart_data(html, "revenue")  # the page still renders, with the defaults
    assert f'value="{start.isoformat()}"' in html


def test_an_empty_portal_renders(staff_client, db):
    response = staff_client.get(URL)
    assert response.status_code == 200
    assert "No metrics are defined yet." in response.content.decode()
    assert "never run" in response.content.decode()


def count_queries(client):
    with CaptureQueriesContext(connection) as queries:
        response = client.get(URL)
    assert response.status_code == 200
    return len(queries), [q["sql"] for q in queries.captured_queries]


def test_the_number_of_queries_does_not_grow_with_the_tenants(staff_client, plans):
    seeded(plans, 3, days=2, prefix="few")
    few, _ = count_queries(staff_client)
    seeded(plans, 30, days=2, prefix="many")
    many, sql = count_queries(staff_client)
    assert few == many, "\n".join(sql)
    # And with a tenant selected.
    with CaptureQueriesContext(connection) as filtered:
        staff_client.get(URL, {"tenant": "many-0003"})
    TenantFactory(slug="one-more")
    with CaptureQueriesContext(connection) as filtered_more:
        staff_client.get(URL, {"tenant": "many-0003"})
    assert len(filtered) == len(filtered_more)


def test_the_usage_cache_is_renewed_by_new_rows_and_new_sync_runs(staff_client, plans, settings):
    from django.core.cache import cache

    cache.clear()
    settings.DASHBOARD_CACHE_SECONDS = 300
    tenants, metrics = seeded(plans, 2, days=1)
    calls = next(m for m in metrics if m.code == "api_calls")

    def today_total():
        data = chart_data(staff_client.get(URL).content.decode(), "usage-api_calls")
        return sum(Decimal(s["values"][-1]) for s in data["series"])

    first = today_total()
    assert today_total() == first  # served from the cache
    today = timezone.now().date()
    # As the sync writes a day: the tenant's row and every tenant's total, in one transaction.
    DailyUsage.objects.filter(tenant=tenants[0], metric=calls, day=today).update(value=F("value") + 1000)
    DailyTotal.objects.filter(metric=calls, day=today).update(value=F("value") + 1000)
    assert today_total() == first  # an update in place is picked up by the next sync run...
    sample.seed_pipeline(now=timezone.now(), metric=calls)
    assert today_total() == first + 1000  # ...which renews the figures
    newcomer = TenantFactory(slug="newcomer")
    hour = timezone.now().replace(minute=0, second=0, microsecond=0)
    HourlyUsage.objects.create(tenant=newcomer, metric=calls, hour=hour, value=Decimal(5))
    assert today_total() == first + 1000  # hours count once rolled up...
    daily_usage_refresh(start=hour, end=hour + timedelta(hours=1))
    assert today_total() == first + 5  # ...and the rollup's new daily rows renew the figures (recomputed: -1000)
    cache.clear()


def test_tenants_beyond_the_top_five_stack_as_other_tenants(staff_client, plans):
    tenants, _ = seeded(plans, 7, days=2)
    html = staff_client.get(URL).content.decode()
    data = chart_data(html, "usage-api_calls")
    labels = [s["label"] for s in data["series"]]
    assert len(labels) == 6 and labels[-1] == "Other tenants"
    end = default_range()[1]
    day_start = datetime.combine(end, datetime.min.time(), tzinfo=UTC)
    for offset, index in ((0, -1), (1, -2)):
        start = day_start - timedelta(days=offset)
        expected = sum(HourlyUsage.objects.filter(metric__code="api_calls", hour__gte=start,
                                                  hour__lt=start + timedelta(days=1)).values_list("value", flat=True))
        assert sum(Decimal(s["values"][index]) for s in data["series"]) == expected
    # Busiest hours do not add up: the top tenants only, no "other" line.
    ips = chart_data(html, "usage-active_ips")
    assert ips["kind"] == "line" and "Other tenants" not in [s["label"] for s in ips["series"]]


def test_the_top_tenants_are_those_of_a_ranking_of_every_tenant(staff_client, db):
    """The top tenants are ranked in the database (each metric's first ten by a top-N sort): the page shows
    what ranking every tenant's figure would, ties broken by the older tenant, for a metric that adds up,
    a largest value and a last value, with each named tenant's figure in every metric."""
    from portal.dashboards.selectors import display_quantity

    calls = Metric.objects.create(code="calls", name="Calls", aggregation="count")
    peak = Metric.objects.create(code="peak", name="Peak", aggregation="max", field="connections")
    seats = Metric.objects.create(code="seats", name="Seats", event="seats.changed", aggregation="latest",
                                  field="properties.seats")
    tenants = [TenantFactory(slug=f"rank-{i:02d}") for i in range(14)]
    hour = timezone.now().replace(minute=0, second=0, microsecond=0) - timedelta(days=2)
    rows = []
    for i, tenant in enumerate(tenants):
        for h in range(30):
            # Ties on purpose: pairs of tenants share their figures (i // 2), some tenants skip a metric.
            rows.append(HourlyUsage(tenant=tenant, metric=calls, hour=hour + timedelta(hours=h),
                                    value=Decimal((i // 2) * 3 + h % 2)))
            if i % 5:
                rows.append(HourlyUsage(tenant=tenant, metric=peak, hour=hour + timedelta(hours=h),
                                        value=Decimal((7 - i // 2) if h == 11 else 1)))
            rows.append(HourlyUsage(tenant=tenant, metric=seats, hour=hour + timedelta(hours=h),
                                    value=Decimal(i % 4 if h == 29 else 50)))
    HourlyUsage.objects.bulk_create(rows)
    daily_usage_refresh(start=hour, end=hour + timedelta(hours=30))

    def figure(tenant, metric):
        values = list(HourlyUsage.objects.filter(tenant=tenant, metric=metric).order_by("hour")
                      .values_list("value", flat=True))
        if not values:
            return None
        return sum(values) if metric == calls else max(values) if metric == peak else values[-1]

    def ranked(metric):
        figures = [(figure(t, metric), t) for t in tenants]
        return [t for value, t in sorted(((v, t) for v, t in figures if v is not None), key=lambda p: (-p[0], p[1].pk))]

    html = staff_client.get(URL).content.decode()
    table = html[html.index("Ranked by Calls"):]
    table = table[:table.index("</table>")]
    shown = re.findall(r'tenant=(rank-\d\d)">.*?</th>(.*?)</tr>', table, re.S)
    assert [slug for slug, _ in shown] == [t.slug for t in ranked(calls)[:10]]
    for (slug, cells), tenant in zip(shown, ranked(calls)[:10], strict=True):
        expected = ["–" if figure(tenant, m) is None else str(display_quantity(figure(tenant, m), m))
                    for m in (calls, peak, seats)]  # the columns in the metrics' code order
        assert re.findall(r'<td class="num">(.*?)</td>', cells) == expected, slug
    for metric in (calls, peak, seats):
        series = [s["label"] for s in chart_data(html, f"usage-{metric.code}")["series"]]
        assert series[:5] == [t.slug for t in ranked(metric)[:5]], metric.code


@pytest.mark.parametrize("start, end", [
    ("2025-01-02", "2025-02-27"),  # two months less a day each: the monthly rows less the days out
    ("2025-01-10", "2025-01-20"),  # inside a month: the days themselves
    ("2025-02-01", "2025-02-28"),  # a whole month: its monthly rows
    ("2025-01-31", "2025-02-01"),  # a day of each
    ("2025-01-15", "2025-01-15"),  # one day: its rows as they are, ranked with no grouping
    ("2025-01-31", "2025-02-28"),  # a day and a whole month: the day's rows and the month's, grouped
])
def test_the_ranking_from_the_monthly_rollup_is_that_of_the_days(db, start, end):
    """The top tenants of a range are ranked from the monthly rollup less the days out of the range where that
    reads fewer rows: the same tenants and figures as the days of the range give (usage on the days out of the
    range included, so that a month's row is not the range's figure)."""
    from datetime import date

    from portal.dashboards.selectors import TOP_TABLE, _ranked_from_rollups, usage_by_metric

    calls = Metric.objects.create(code="calls", name="Calls", aggregation="count")
    peak = Metric.objects.create(code="peak", name="Peak", aggregation="max", field="connections")
    tenants = [TenantFactory(slug=f"month-{i:02d}") for i in range(13)]
    first = datetime(2025, 1, 1, tzinfo=UTC)
    rows = []
    for i, tenant in enumerate(tenants):
        for d in range(59):  # 1 January to 28 February
            busy = (i * 7 + d * 5) % 13  # each tenant busiest on other days, the first and last days included
            rows.append(HourlyUsage(tenant=tenant, metric=calls, hour=first + timedelta(days=d, hours=busy % 24),
                                    value=Decimal(busy * (1 + i % 3))))
            rows.append(HourlyUsage(tenant=tenant, metric=peak, hour=first + timedelta(days=d, hours=3),
                                    value=Decimal(busy + i % 2)))
    HourlyUsage.objects.bulk_create(rows)
    daily_usage_refresh(start=first, end=first + timedelta(days=59))
    start, end = date.fromisoformat(start), date.fromisoformat(end)

    # Every first-ten figure is above 0: both metrics are ranked from the rollups, not from the days.
    assert _ranked_from_rollups(start=start, end=end, tenant=None, additive=[calls.pk], peaks=[peak.pk])[1] == {
        calls.pk, peak.pk}
    usage = {u.metric.code: u for u in usage_by_metric(start=start, end=end, metrics=[calls, peak])}
    for metric in (calls, peak):
        figures = {}
        for tenant_id, value in DailyUsage.objects.filter(metric=metric, day__gte=start, day__lte=end).values_list(
                "tenant_id", "value"):
            figures[tenant_id] = (figures.get(tenant_id, Decimal(0)) + value if metric == calls
                                  else max(figures.get(tenant_id, value), value))
        expected = sorted(figures.items(), key=lambda item: (-item[1], item[0]))[:TOP_TABLE]
        assert [(t.pk, v) for t, v in usage[metric.code].top] == expected, metric.code


def ips_total(html) -> str:
    card = html[html.index('id="usage-active_ips"'):]
    return re.search(r"Distinct values in range[^:]*: <strong>([^<]*)</strong>", card).group(1)


def test_a_range_of_days_asks_the_lake_beside_the_other_queries(staff_client, plans, monkeypatch):
    """A range that is no calendar month asks the lake for its distinct counts, in a thread of its own while
    the page's queries run: the total is every tenant's distinct count over the range, as billing counts it."""
    import threading

    from metering.lake.local import LocalLake
    from metering.selectors import whole_period_figures
    from portal.dashboards.selectors import day_bounds

    tenants, _ = seeded(plans, 3, days=4)
    today = timezone.now().date()
    start, end = today - timedelta(days=3), today - timedelta(days=1)
    ips = Metric.objects.get(code="active_ips")
    expected = sum(values.get(ips.pk, Decimal(0)) for values in whole_period_figures(
        metrics=[ips], start=day_bounds(start, end)[0], end=day_bounds(start, end)[1]).values())
    assert expected > 0
    asked_in = []
    whole_period = LocalLake.whole_period

    def recorded(self, **kwargs):
        asked_in.append(threading.current_thread() is threading.main_thread())
        return whole_period(self, **kwargs)

    monkeypatch.setattr(LocalLake, "whole_period", recorded)
    html = staff_client.get(URL, {"start": start.isoformat(), "end": end.isoformat()}).content.decode()
    assert asked_in == [False]  # asked once, not in the request's thread
    assert Decimal(ips_total(html)) == expected


def test_a_lake_that_does_not_answer_leaves_the_distinct_counts_unavailable(staff_client, plans, monkeypatch):
    from metering.lake import LakeError
    from metering.lake.local import LocalLake

    seeded(plans, 2, days=2)

    def fails(self, **kwargs):
        raise LakeError("the lake did not answer")

    monkeypatch.setattr(LocalLake, "whole_period", fails)
    today = timezone.now().date()
    response = staff_client.get(URL, {"start": (today - timedelta(days=2)).isoformat(),
                                      "end": (today - timedelta(days=1)).isoformat()})
    assert response.status_code == 200
    html = response.content.decode()
    assert ips_total(html) == "unavailable"
    assert "The lake did not answer for this range's distinct counts" in html
    assert chart_data(html, "usage-api_calls")["series"]  # the rest of the page is there
