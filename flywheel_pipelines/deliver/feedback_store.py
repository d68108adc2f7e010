"""Deliver, step 6: the feedback store — accept / reject / edit events in SQL (SQLite by default, any SQLAlchemy URL).

Imports are all-or-nothing: a file with an invalid line writes nothing unless invalid lines are quarantined,
and then valid events and quarantine rows are committed together in one transaction.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import (
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    func,
    insert,
    select,
)
from sqlalchemy.engine import Engine

from flywheel_pipelines.schemas import validation_errors

metadata = MetaData()

feedback_events = Table(
    "feedback_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),  # arrival order; sensors keep it as cursor
    Column("event_id", String(128), nullable=False, unique=True),
    Column("kind", String(16), nullable=False),
    Column("task", String(64), nullable=False),
    Column("instruction", Text, nullable=False),
    Column("input", Text, nullable=False, default=""),
    Column("completion", Text, nullable=False),
    Column("edited_completion", Text, nullable=True),
    Column("model", String(256), nullable=True),
    Column("user", String(128), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("imported_at", DateTime(timezone=True), nullable=False),
)

feedback_quarantine = Table(
    "feedback_quarantine",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("origin", String(1024), nullable=False),
    Column("line_number", Integer, nullable=False),
    Column("raw", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("quarantined_at", DateTime(timezone=True), nullable=False),
)

EVENT_FIELDS = [c.name for c in feedback_events.columns if c.name not in ("id", "imported_at")]


@dataclass(frozen=True)
class InvalidLine:
    line_number: int
    reason: str
    raw: str


@dataclass
class ImportReport:
    imported: int = 0
    duplicates: int = 0
    invalid: list[InvalidLine] = field(default_factory=list)
    quarantined: int = 0

    def summary(self) -> str:
        text = f"imported {self.imported} events, skipped {self.duplicates} already stored"
        if self.invalid:
            text += f", {len(self.invalid)} invalid lines"
            text += " (quarantined)" if self.quarantined else " (nothing imported)"
        return text


class FeedbackImportError(ValueError):
    """The file has invalid lines and quarantining was not asked for: nothing was written."""

    def __init__(self, report: ImportReport, origin: str):
        self.report = report
        lines = [f"  line {i.line_number}: {i.reason}" for i in report.invalid]
        super().__init__(f"{origin}: {len(report.invalid)} invalid lines, nothing imported:\n" + "\n".join(lines))


def parse_events(lines: Iterable[str]) -> tuple[list[tuple[int, dict]], list[InvalidLine]]:
    """Valid events with their line numbers, and invalid lines with a precise reason each."""
    valid: list[tuple[int, dict]] = []
    invalid: list[InvalidLine] = []
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            event = json.loads(raw)
        except json.JSONDecodeError as err:
            invalid.append(InvalidLine(number, f"not JSON: {err.msg} (column {err.colno})", raw.rstrip("\n")))
            continue
        if errors := validation_errors("feedback_event", event):
            invalid.append(InvalidLine(number, "; ".join(errors), raw.rstrip("\n")))
            continue
        valid.append((number, event))
    return valid, invalid


def _parse_time(value: str | None) -> datetime:
    if not value:
        return datetime.now(UTC)
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class FeedbackStore:
    """Feedback events behind a SQLAlchemy engine; tables are created on first use."""

    def __init__(self, url: str):
        self.url = url
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.engine: Engine = create_engine(url, future=True)
        metadata.create_all(self.engine)

    def import_lines(
        self, lines: Iterable[str], origin: str = "<lines>", quarantine_invalid: bool = False
    ) -> ImportReport:
        valid, invalid = parse_events(lines)
        report = ImportReport(invalid=invalid)
        if invalid and not quarantine_invalid:
            raise FeedbackImportError(report, origin)
        now = datetime.now(UTC)
        with self.engine.begin() as conn:  # one transaction: all of it lands, or none of it
            ids = [e["event_id"] for _, e in valid]
            stored = (
                set(conn.scalars(select(feedback_events.c.event_id).where(feedback_events.c.event_id.in_(ids))))
                if ids
                else set()
            )
            rows, seen = [], set(stored)
            for _, event in valid:
                if event["event_id"] in seen:
                    report.duplicates += 1
                    continue
                seen.add(event["event_id"])
                row = {name: event.get(name) for name in EVENT_FIELDS}
                row["input"] = event.get("input", "")
                row["created_at"] = _parse_time(event.get("created_at"))
                row["imported_at"] = now
                rows.append(row)
            if rows:
                conn.execute(insert(feedback_events), rows)
            if invalid:
                conn.execute(
                    insert(feedback_quarantine),
                    [
                        {
                            "origin": origin,
                            "line_number": i.line_number,
                            "raw": i.raw,
                            "reason": i.reason,
                            "quarantined_at": now,
                        }
                        for i in invalid
                    ],
                )
        report.imported = len(rows)
        report.quarantined = len(invalid)
        return report

    def import_jsonl(self, path: Path, quarantine_invalid: bool = False) -> ImportReport:
        with path.open(encoding="utf-8") as f:
            return self.import_lines(f, origin=str(path), quarantine_invalid=quarantine_invalid)

    def events(self, after_id: int = 0) -> list[dict]:
        """Stored events in arrival order, those with id > after_id."""
        query = select(feedback_events).where(feedback_events.c.id > after_id).order_by(feedback_events.c.id)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def new_events_since(self, after_id: int) -> tuple[int, int]:
        """(how many events arrived after `after_id`, the newest id) — what a sensor needs, in one query."""
        query = select(func.count(), func.max(feedback_events.c.id)).where(feedback_events.c.id > after_id)
        with self.engine.connect() as conn:
            count, newest = conn.execute(query).one()
        return int(count), int(newest or after_id)

    def quarantine(self) -> list[dict]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(feedback_quarantine).order_by(feedback_quarantine.c.id))
            return [dict(r._mapping) for r in rows]

    def dispose(self) -> None:
        self.engine.dispose()
