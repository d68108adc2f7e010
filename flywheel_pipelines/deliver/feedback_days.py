"""Deliver, step 6: the feedback store read by day of arrival, each event joined with the completion it is about;
and the backlog the feedback sensor decides on.

A day is the calendar day (in the configured time zone) on which the store received the event, not the client's
clock: a day's table only grows while that day lasts, so a partition materialised after midnight is final.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from flywheel_pipelines.deliver.feedback_store import FeedbackStore, completions, feedback_events

# Completion-log columns joined to every event (None for events imported from JSONL, which name no completion).
JOINED = {
    "adapter_version": completions.c.adapter_version,
    "served_model": completions.c.model,
    "endpoint": completions.c.endpoint,
    "latency_ms": completions.c.latency_ms,
    "completion_created_at": completions.c.created_at,
}


def day_bounds(day: date, timezone: str) -> tuple[datetime, datetime]:
    """[start, end) of a calendar day in `timezone`, in UTC."""
    zone = ZoneInfo(timezone)
    start = datetime.combine(day, time(), zone)
    return start.astimezone(UTC), (start + timedelta(days=1)).astimezone(UTC)


def _utc(moment: datetime) -> datetime:
    # SQLite returns naive datetimes: they were stored in UTC.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def events_of_day(store: FeedbackStore, day: date, timezone: str) -> list[dict]:
    """The events received on `day`, in arrival order, with the completion log's columns joined."""
    start, end = day_bounds(day, timezone)
    query = (
        select(feedback_events, *(column.label(name) for name, column in JOINED.items()))
        .select_from(
            feedback_events.outerjoin(completions, feedback_events.c.completion_id == completions.c.completion_id)
        )
        .where(feedback_events.c.imported_at >= start, feedback_events.c.imported_at < end)
        .order_by(feedback_events.c.id)
    )
    with store.engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(query)]


@dataclass(frozen=True)
class Backlog:
    """Events that arrived after the sensor's cursor."""

    count: int
    newest_id: int
    oldest_arrival: datetime | None
    days: tuple[date, ...]  # days of arrival, oldest first

    def age_minutes(self, now: datetime) -> float:
        return (now - self.oldest_arrival).total_seconds() / 60 if self.oldest_arrival else 0.0


def backlog(store: FeedbackStore, after_id: int, timezone: str) -> Backlog:
    query = select(func.count(), func.max(feedback_events.c.id), func.min(feedback_events.c.imported_at)).where(
        feedback_events.c.id > after_id
    )
    with store.engine.connect() as conn:
        count, newest, oldest = conn.execute(query).one()
        if not count:
            return Backlog(0, after_id, None, ())
        arrivals = conn.execute(select(feedback_events.c.imported_at).where(feedback_events.c.id > after_id))
        zone = ZoneInfo(timezone)
        days = sorted({_utc(moment).astimezone(zone).date() for (moment,) in arrivals})
    return Backlog(int(count), int(newest), _utc(oldest), tuple(days))
