"""Billing periods: a subscription's period calendar, its closed periods, the plan versions in force over a
period, the hours of usage each part counts, and the pricing of one period (docs/plans.md, "A period's invoice").

- A period is a calendar month or year in the tenant's time zone (from midnight on the 1st), or one that
  starts on the subscription's start date at its local time (the anniversary cycle). Its bounds are
  instants (UTC in the database); it is closed when its end has passed, or when the subscription ended
  inside it.
- A plan change splits a period into parts, each priced under its own plan version; the timeline of
  versions comes from the subscription's changes.
- Trials: usage before the trial ends is not counted (the engine bills no base fee for that time).
- A cancellation ends the subscription: its last period is billed up to the end, prorated. A
  suspension does not: the base fee keeps running (only the tenant's API calls are refused).
- Usage is kept per hour: a boundary inside an hour moves to the start of that hour, except the
  subscription's end, which moves to the end of it (the first and last partial hours are billed).

Nothing here writes. Invoices and the projected bill (metering.selectors.billing) price a period through
price_subscription_period; late usage reads a period's segments again (period_segments).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from metering.models import LineType
from metering.pricing import PricedPeriod, Segment, anniversary_period, calendar_period, price_period
from metering.services.billing.catalog import Catalog
from metering.services.sync import ceil_hour, floor_hour
from portal.kernel import ApplicationError
from tenants.models import BillingCycle, PlanVersion, Subscription, SubscriptionChange

# --- the calendar ----------------------------------------------------------------------------------


def subscription_period(subscription: Subscription, at: datetime, interval: str | None = None) -> tuple[datetime, datetime]:
    """The billing period of `subscription` that contains `at` (calendar or anniversary cycle)."""
    interval = interval or subscription.plan_version.interval
    zone = subscription.tenant.zone
    if subscription.billing_cycle == BillingCycle.ANNIVERSARY:
        return anniversary_period(subscription.started_at, at, interval, zone)
    return calendar_period(at, interval, zone)


def closed_periods(subscription: Subscription, as_of: datetime) -> list[tuple[datetime, datetime]]:
    """Every period of the subscription that is over at `as_of` (its end passed, or the subscription ended in it)."""
    periods = []
    interval = _version_at(subscription, subscription.started_at).interval
    start, end = subscription_period(subscription, subscription.started_at, interval)
    while start < as_of:
        if subscription.ends_at is not None and start >= subscription.ends_at:
            break
        closes_at = min(end, subscription.ends_at) if subscription.ends_at else end
        if closes_at > as_of:
            break
        periods.append((start, end))
        start, end = subscription_period(subscription, end, interval)
    return periods


def starts_in_month(start: datetime, zone, month: tuple[datetime, datetime]) -> bool:
    """Whether a period starting at `start` starts in the month `month` (period_from_label's bounds) as the
    tenant's clock in `zone` reads it: Tokyo's November starts on October 31 in UTC."""
    local = start.astimezone(zone)
    return (local.year, local.month) == (month[0].year, month[0].month)


def period_from_label(label: str) -> tuple[datetime, datetime]:
    """'2026-10' -> the bounds of that calendar month (UTC); ApplicationError when malformed.

    A tenant's own month is that month on its clock: compare a period's start with starts_in_month."""
    try:
        year, month = (int(part) for part in label.split("-"))
        start = datetime(year, month, 1, tzinfo=UTC)
    except ValueError:
        raise ApplicationError(f"--period {label!r} is not a month like 2026-10") from None
    return calendar_period(start)


# --- plan versions over a period -------------------------------------------------------------------


def _versions_timeline(subscription: Subscription) -> list[tuple[datetime, PlanVersion]]:
    """(from, version) pairs in time order: the plan version in force from each instant (memoized on the instance)."""
    cached = getattr(subscription, "_timeline", None)
    if cached is not None:
        return cached
    # .all() uses prefetch_related("changes__...") when the caller prefetched; sorted here so it works either way.
    changes = sorted(subscription.changes.all(), key=lambda change: change.changed_at)
    first = changes[0].from_version if changes else subscription.plan_version
    timeline = [(subscription.started_at, first)]
    timeline.extend((change.changed_at, change.to_version) for change in changes)
    subscription._timeline = timeline
    return timeline


def load_timelines(subscriptions: list[Subscription]) -> None:
    """Read the plan changes of many subscriptions at once and memoize each one's timeline (a billing batch).

    One query for the changes and one for the versions they name, instead of prefetch_related, which builds a
    queryset per subscription (a third of the CPU of a billing run that finds nothing to bill)."""
    changes: dict[int, list[tuple]] = {subscription.pk: [] for subscription in subscriptions}
    if not changes:
        return
    # The order prefetch_related("changes") read them in (the model's ordering), then sorted by changed_at.
    for row in SubscriptionChange.objects.filter(subscription_id__in=list(changes)).order_by(
            "subscription", "changed_at").values_list("subscription_id", "changed_at", "from_version_id", "to_version_id"):
        changes[row[0]].append(row)
    wanted = {pk for rows in changes.values() for _sub, _at, *pks in rows for pk in pks}
    versions = {version.pk: version for version in PlanVersion.objects.filter(pk__in=wanted)} if wanted else {}
    for subscription in subscriptions:
        rows = sorted(changes[subscription.pk], key=lambda row: row[1])
        first = versions[rows[0][2]] if rows else subscription.plan_version
        subscription._timeline = [(subscription.started_at, first)] + [
            (changed_at, versions[to_id]) for _sub, changed_at, _from_id, to_id in rows]


def version_at(subscription: Subscription, at: datetime) -> PlanVersion:
    """The plan version in force at `at` (the first one before the subscription starts)."""
    return _version_at(subscription, at)


def _version_at(subscription: Subscription, at: datetime) -> PlanVersion:
    version = None
    for since, candidate in _versions_timeline(subscription):
        if since <= at or version is None:
            version = candidate
    return version


def with_plan_change(subscription: Subscription, plan_version: PlanVersion, at: datetime) -> Subscription:
    """An unsaved copy of `subscription` as it would be moved to `plan_version` from `at` (a preview of
    subscription_change_plan, whose checks the caller makes): its timeline gains that change."""
    moved = copy.copy(subscription)
    moved._timeline = [*_versions_timeline(subscription), (at, plan_version)]
    moved.plan_version = plan_version
    return moved


@dataclass(frozen=True)
class Part:
    """One plan version over one part of a period."""

    version: PlanVersion
    start: datetime
    end: datetime


def _parts(subscription: Subscription, start: datetime, end: datetime) -> list[Part]:
    """The plan versions in force over [start, end), clipped to the subscription's active span."""
    active_start = max(start, subscription.started_at)
    active_end = min(end, subscription.ends_at) if subscription.ends_at else end
    timeline = _versions_timeline(subscription)
    parts = []
    for index, (since, version) in enumerate(timeline):
        until = timeline[index + 1][0] if index + 1 < len(timeline) else active_end
        part_start, part_end = max(since, active_start), min(until, active_end)
        if part_end > part_start:
            parts.append(Part(version, part_start, part_end))
    return parts


# --- the hours each part counts --------------------------------------------------------------------


def _usage_window(subscription: Subscription, part: Part) -> tuple[datetime, datetime]:
    """The hours whose usage a part counts.

    Usage is kept per hour, so boundaries are moved to whole hours: every boundary down to the hour
    that contains it (an hour belongs to the part in force when it began, so adjacent parts and
    periods share no hour), except the subscription's end, moved up so that the calls of its last
    partial hour are billed. The first partial hour of a subscription (or after its trial) counts too.
    """
    start = max(part.start, subscription.trial_ends_at) if subscription.trial_ends_at else part.start
    end = ceil_hour(part.end) if subscription.ends_at and part.end >= subscription.ends_at else floor_hour(part.end)
    return floor_hour(start), end


def part_windows(subscription: Subscription, start: datetime, end: datetime, catalog: Catalog) -> Iterator[tuple]:
    """(part, plan spec, usage window) for each part of the period; the window is None for trial time."""
    trial_end = subscription.trial_ends_at
    for part in _parts(subscription, start, end):
        window = _usage_window(subscription, part)
        if (trial_end and trial_end >= part.end) or window[0] >= window[1]:
            window = None  # the whole part is trial time: no usage is counted
        yield part, catalog.spec(part.version), window


def period_segments(subscription: Subscription, start: datetime, end: datetime, catalog: Catalog) -> list[Segment]:
    """The pricing engine's segments of a period: each part's plan spec with the usage of its hours now."""
    return [
        Segment(spec, part.start, part.end,
                {} if window is None else catalog.quantities(subscription.tenant, spec.metric_codes, window))
        for part, spec, window in part_windows(subscription, start, end, catalog)
    ]


# --- pricing a period ------------------------------------------------------------------------------


def price_subscription_period(
    subscription: Subscription, start: datetime, end: datetime, catalog: Catalog | None = None
) -> PricedPeriod:
    """Price one period of a subscription with the usage known now (invoices and the projected bill)."""
    segments = period_segments(subscription, start, end, catalog or Catalog())
    if not segments:
        raise ApplicationError(f"subscription {subscription.pk} was not active between {start} and {end}")
    return price_period(segments, period_start=start, period_end=end, trial_end=subscription.trial_ends_at)


def with_metric_names(priced: PricedPeriod, metric_names: dict[str, str]) -> PricedPeriod:
    """The priced period with usage lines described by their metric's name and charge model, as invoices
    and the projected bill show them (the engine, being pure code, knows only metric codes)."""
    return replace(priced, lines=tuple(
        replace(line, description=f"{metric_names.get(line.metric, line.metric)} ({line.model})")
        if line.type == LineType.USAGE and line.metric else line
        for line in priced.lines
    ))
