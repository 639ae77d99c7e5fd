"""The provider's Revenue page (/admin/revenue/): MRR and ARR, revenue by month per currency and plan, new and
churned tenants, net revenue retention, with the definitions, charts with their figures beside them, CSV and
JSON (the same as GET /api/v1/admin/revenue/). The figures: metering.selectors.revenue."""

from __future__ import annotations

import csv
from decimal import Decimal

from django.http import HttpResponse, JsonResponse
from django.shortcuts import render

from metering.pricing import format_amount, quantize_amount
from metering.selectors.revenue import DEFINITIONS, CurrencyReport, report_json, revenue_report
from portal.dashboards.charts import Chart, Series


def report_csv(reports: list[CurrencyReport]) -> HttpResponse:
    response = HttpResponse(content_type="text/csv")
    response["Content-Disposition"] = 'attachment; filename="revenue.csv"'
    writer = csv.writer(response)
    writer.writerow(["currency", "month", "revenue", "usage", "mrr", "arr", "new_tenants", "churned_tenants",
                     "plan", "plan_revenue"])
    for r in reports:
        for m in r.months:
            plans = sorted(m.by_plan.items()) or [("", None)]
            for plan, total in plans:
                writer.writerow([r.currency, f"{m.month:%Y-%m}", format_amount(m.revenue, r.currency),
                                 format_amount(m.usage, r.currency), format_amount(m.mrr, r.currency),
                                 format_amount(m.arr, r.currency), m.new_tenants, m.churned_tenants, plan,
                                 "" if total is None else format_amount(total, r.currency)])
    return response


def revenue_page(request):
    reports = revenue_report()
    if request.GET.get("format") == "csv":
        return report_csv(reports)
    if request.GET.get("format") == "json":
        return JsonResponse(report_json(reports))
    charts = []
    for r in reports:
        labels = [f"{m.month:%Y-%m}" for m in r.months]
        charts.append(Chart(id=f"mrr-{r.currency.lower()}", title=f"MRR and revenue by month ({r.currency})",
                            kind="bar", labels=labels, unit=r.currency, series=[
                                Series("Revenue", [quantize_amount(m.revenue, r.currency) for m in r.months]),
                                Series("MRR", [m.mrr for m in r.months])]))
    return render(request, "portal/dashboards/revenue.html", {
        "title": "Revenue", "reports": [{"report": r, "chart": c, "amounts": _shown(r)} for r, c in zip(reports, charts,
                                                                                                       strict=True)],
        "definitions": DEFINITIONS,
    })


def _shown(report: CurrencyReport) -> dict:
    c = report.currency
    return {"mrr": format_amount(report.current.mrr, c), "arr": format_amount(report.current.arr, c),
            "nrr": None if report.nrr is None else f"{(report.nrr * 100).quantize(Decimal('0.1'))} %",
            "months": [{"row": m, "revenue": format_amount(m.revenue, c), "usage": format_amount(m.usage, c),
                        "mrr": format_amount(m.mrr, c), "arr": format_amount(m.arr, c),
                        "plans": [format_amount(m.by_plan.get(p, Decimal(0)), c) for p in report.plans]}
                       for m in reversed(report.months)]}
