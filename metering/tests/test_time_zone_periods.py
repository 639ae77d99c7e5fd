"""Billing periods in a tenant's time zone (docs/plans.md, "Time zones"): the pricing engine's calendar and
anniversary periods in any IANA zone tile time with no gap and no overlap, and their hours (UTC underneath)
neither lose nor double one across a daylight-saving change."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metering.pricing import anniversary_period, calendar_period, local_to_utc
from metering.services.sync import floor_hour

NEW_YORK = ZoneInfo("America/New_York")

instants = st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2099, 1, 1), timezones=st.just(UTC))
intervals = st.sampled_from(["month", "year"])


def _tiles(period, at: datetime, interval: str) -> None:
    """The periods around `at`: each contains what it should, and each starts where the one before ends."""
    start, end = period(at, interval)
    assert start <= at < end
    assert timedelta(days=27) < end - start < timedelta(days=368)
    assert period(end, interval)[0] == end  # the next period starts where this one ends: no gap, no overlap
    assert period(start - timedelta(microseconds=1), interval)[1] == start
    assert period(end - timedelta(microseconds=1), interval) == (start, end)
    # Usage is kept per UTC hour: moved to the start of their hours, the periods' hours tile too.
    assert floor_hour(start) <= floor_hour(end) == floor_hour(period(end, interval)[0])


@settings(max_examples=300, deadline=None)
@given(zone=st.timezones(), at=instants, interval=intervals)
def test_calendar_periods_tile_time_in_any_zone(zone, at, interval):
    _tiles(lambda moment, iv: calendar_period(moment, iv, zone), at, interval)
    start, _end = calendar_period(at, interval, zone)
    local = start.astimezone(zone)
    # Midnight on the 1st, read by local_to_utc's rule when the clocks skip it.
    assert start == local_to_utc(datetime(local.year, local.month, 1), zone)
    assert local.day == 1 and (interval == "month" or local.month == 1)


@settings(max_examples=300, deadline=None)
@given(zone=st.timezones(), anchor=instants, offset=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=800)),
       interval=intervals)
def test_anniversary_periods_tile_time_in_any_zone(zone, anchor, offset, interval):
    at = anchor + offset
    _tiles(lambda moment, iv: anniversary_period(anchor, moment, iv, zone), at, interval)
    assert anniversary_period(anchor, anchor, interval, zone)[0] == anchor  # the first period starts at the start


@settings(max_examples=100, deadline=None)
@given(zone=st.timezones(), year=st.integers(min_value=1971, max_value=2098))
def test_a_years_months_add_up_to_the_year_in_any_zone(zone, year):
    """Twelve local months, walked end to start, cover the local year exactly: every hour counted once."""
    year_start, year_end = calendar_period(datetime(year, 7, 1, tzinfo=UTC), "year", zone)
    moment, hours = year_start, timedelta(0)
    for _ in range(12):
        start, end = calendar_period(moment, "month", zone)
        assert start == moment
        hours += end - start
        moment = end
    assert moment == year_end and hours == year_end - year_start


def test_new_york_november_has_721_hours_and_march_743():
    """The worked example of docs/plans.md: November 2026 in New York ends an hour later in UTC than it starts."""
    start, end = calendar_period(datetime(2026, 11, 15, tzinfo=UTC), "month", NEW_YORK)
    assert (start, end) == (datetime(2026, 11, 1, 4, tzinfo=UTC), datetime(2026, 12, 1, 5, tzinfo=UTC))
    assert end - start == timedelta(hours=721)
    assert start.astimezone(NEW_YORK).isoformat() == "2026-11-01T00:00:00-04:00"
    assert end.astimezone(NEW_YORK).isoformat() == "2026-12-01T00:00:00-05:00"
    start, end = calendar_period(datetime(2026, 3, 15, tzinfo=UTC), "month", NEW_YORK)
    assert end - start == timedelta(hours=743)
    assert calendar_period(datetime(2026, 11, 1, 3, 59, tzinfo=UTC), "month", NEW_YORK)[1] == datetime(2026, 11, 1, 4, tzinfo=UTC)


def test_anniversary_periods_keep_the_local_clock_time_across_dst():
    """Started on January 31 at 14:30 in New York: February 28 at 14:30 EST, then March 31 at 14:30 EDT."""
    anchor = datetime(2026, 1, 31, 14, 30, tzinfo=NEW_YORK)
    start, end = anniversary_period(anchor, datetime(2026, 3, 20, tzinfo=UTC), "month", NEW_YORK)
    assert start == datetime(2026, 2, 28, 19, 30, tzinfo=UTC)  # 14:30 -05:00
    assert end == datetime(2026, 3, 31, 18, 30, tzinfo=UTC)  # 14:30 -04:00
    assert end - start == timedelta(days=31, hours=-1)


@pytest.mark.parametrize(("zone", "wall", "expected"), [
    # New York skips 02:00-03:00 on 8 March 2026: 02:30 is read with the offset before (-05:00), i.e. 03:30 EDT.
    ("America/New_York", datetime(2026, 3, 8, 2, 30), datetime(2026, 3, 8, 7, 30, tzinfo=UTC)),
    # ... and repeats 01:00-02:00 on 1 November 2026: 01:30 is its first occurrence (-04:00).
    ("America/New_York", datetime(2026, 11, 1, 1, 30), datetime(2026, 11, 1, 5, 30, tzinfo=UTC)),
    # Samoa skipped 30 December 2011 whole: that midnight is the first instant of the 31st.
    ("Pacific/Apia", datetime(2011, 12, 30), datetime(2011, 12, 30, 10, tzinfo=UTC)),
])
def test_local_times_the_clocks_skip_or_repeat(zone, wall, expected):
    assert local_to_utc(wall, ZoneInfo(zone)) == expected


def test_a_half_hour_zone_moves_the_boundary_hour_to_the_later_period():
    """India is +05:30: its months start at 18:30 UTC, inside an hour; the boundary moves to the start of
    that hour (as every boundary inside an hour does), so the hour is counted once, in the later period."""
    kolkata = ZoneInfo("Asia/Kolkata")
    start, end = calendar_period(datetime(2026, 11, 15, tzinfo=UTC), "month", kolkata)
    assert start == datetime(2026, 10, 31, 18, 30, tzinfo=UTC)
    assert (floor_hour(start), floor_hour(end)) == (datetime(2026, 10, 31, 18, tzinfo=UTC),
                                                    datetime(2026, 11, 30, 18, tzinfo=UTC))
