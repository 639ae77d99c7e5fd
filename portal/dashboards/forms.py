"""The dashboards' filters from the query string: the provider dashboard's date range and tenant, and the
tenant Events page's code, transaction id and days."""

from datetime import date, timedelta

from django import forms
from django.core.validators import MaxValueValidator, MinValueValidator
from django.utils import timezone

from tenants.models import Tenant

DEFAULT_DAYS = 30
TENANT_SELECT_MAX = 500  # tenants listed in the filter's drop-down; beyond, the slug is typed
MAX_DAYS = 366
# Dates are bounded so that the range arithmetic (a day before, a day after, a month's start) stays
# within Python's years 1 to 9999: year 1 or 9999 in the query string was a server error.
MIN_DATE = date(1970, 1, 1)
MAX_DATE = date(2999, 12, 31)
_DATE_BOUNDS = [
    MinValueValidator(MIN_DATE, message=f"Enter a date between {MIN_DATE} and {MAX_DATE}."),
    MaxValueValidator(MAX_DATE, message=f"Enter a date between {MIN_DATE} and {MAX_DATE}."),
]


def default_range(today: date | None = None) -> tuple[date, date]:
    """The last 30 days, today included."""
    today = today or timezone.now().date()
    return today - timedelta(days=DEFAULT_DAYS - 1), today


class DashboardFilterForm(forms.Form):
    start = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}), label="From",
                            validators=_DATE_BOUNDS)
    end = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}), label="To",
                          validators=_DATE_BOUNDS)
    tenant = forms.ChoiceField(required=False, label="Tenant")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # One query, whatever the number of tenants. Beyond TENANT_SELECT_MAX the tenant is typed (its slug)
        # instead of chosen: a list of 10,000 tenants was 660 KB of HTML and most of the page's time.
        tenants = list(Tenant.objects.order_by("slug").values_list("slug", "name")[:TENANT_SELECT_MAX + 1])
        self.tenant_typed = len(tenants) > TENANT_SELECT_MAX
        if self.tenant_typed:
            self.fields["tenant"] = forms.CharField(required=False, label="Tenant", max_length=100)
        else:
            self.fields["tenant"].choices = [("", "All tenants")] + [
                (slug, f"{slug} · {name}") for slug, name in tenants]

    def clean(self):
        cleaned = super().clean()
        default_start, default_end = default_range()
        end = cleaned.get("end") or default_end
        start = cleaned.get("start") or (end - timedelta(days=DEFAULT_DAYS - 1))
        if "start" in self.errors or "end" in self.errors:
            return cleaned
        if start > end:
            raise forms.ValidationError("The start date must not be after the end date.")
        if (end - start).days + 1 > MAX_DAYS:
            raise forms.ValidationError(f"Choose a range of at most {MAX_DAYS} days.")
        cleaned["start"], cleaned["end"] = start, end
        slug = (cleaned.get("tenant") or "").strip()
        cleaned["tenant"] = Tenant.objects.filter(slug=slug).first() if slug else None
        if slug and cleaned["tenant"] is None:
            self.add_error("tenant", f"No tenant has the slug {slug!r}.")
        return cleaned

    def filters(self) -> tuple[date, date, Tenant | None]:
        """The valid filters, or the defaults (all tenants, the last 30 days) when the input is not valid."""
        if self.is_bound and self.is_valid():
            return self.cleaned_data["start"], self.cleaned_data["end"], self.cleaned_data["tenant"]
        start, end = default_range()
        return start, end, None


class EventsFilterForm(forms.Form):
    """The tenant Events page's filters: code, transaction id, and the days the events happened (their
    timestamp, UTC; From and To both included). What is not valid is said and left out of the filter."""

    code = forms.CharField(required=False, max_length=100, label="Code")
    transaction_id = forms.CharField(required=False, max_length=255, label="Transaction id")
    # The page writes its own inputs (type="date"): no widget is declared here.
    since = forms.DateField(required=False, label="From", validators=_DATE_BOUNDS,
                            error_messages={"invalid": "“From” is not a date (YYYY-MM-DD); it was left out of the filter."})
    until = forms.DateField(required=False, label="To", validators=_DATE_BOUNDS,
                            error_messages={"invalid": "“To” is not a date (YYYY-MM-DD); it was left out of the filter."})

    def clean(self):
        cleaned = super().clean()
        since, until = cleaned.get("since"), cleaned.get("until")
        if since and until and until < since:
            raise forms.ValidationError("“To” is before “From”: no day is in between.")
        return cleaned

    def filters(self) -> dict:
        """The filters that are valid (all of them when the form is), by name; empty ones left out."""
        self.is_valid()
        return {name: value for name, value in self.cleaned_data.items() if value}
