"""Deliver, step 6: the feedback store — accept / reject / edit events in SQL (SQLite by default, any SQLAlchemy URL).

Imports are all-or-nothing: a file with an invalid line writes nothing unless invalid lines are quarantined,
and then valid events and quarantine rows are committed together in one transaction. The server's writes (the
completions it gave, the feedback posted about them) go through `write`: one transaction for a whole batch.
A SQLite store runs in WAL mode with synchronous=FULL, so a committed transaction survives a killed process and a
power cut alike.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import (
    Column,
    DateTime,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    func,
    insert,
    inspect,
    select,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.event import listen

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
    # Posted to the API: the completion it is about (its prompt, output and model are copied above) and the tool.
    Column("completion_id", String(64), nullable=True, index=True),
    Column("client_id", String(128), nullable=True),
)

# Every answer the server gave: what feedback posted to the API refers to, by completion id.
completions = Table(
    "completions",
    metadata,
    Column("completion_id", String(64), primary_key=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("endpoint", String(32), nullable=False),  # chat.completions | completions
    Column("model", String(256), nullable=False),  # the served model name, e.g. flywheel-code-lora:v3
    Column("adapter_version", String(32), nullable=True),  # None: the base model alone
    Column("task", String(64), nullable=True),  # when the request named a task of the catalogue
    Column("instruction", Text, nullable=False),
    Column("input", Text, nullable=False, default=""),
    Column("prompt", Text, nullable=False),  # exactly what the model was given
    Column("output", Text, nullable=False),
    Column("latency_ms", Float, nullable=False),
    Column("prompt_tokens", Integer, nullable=False),
    Column("completion_tokens", Integer, nullable=False),
    Column("user", String(128), nullable=True),
    Column("client_id", String(128), nullable=True),
)
COMPLETION_FIELDS = [c.name for c in completions.columns]

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

# A verdict posted to the API, as the kind of event it is stored as.
VERDICT_KINDS = {"accepted": "accept", "rejected": "reject", "edited": "edit"}
# The task of feedback on a completion that was asked without naming a task of the catalogue (free chat).
UNCATALOGUED_TASK = "chat"

EVENT_FIELDS = [
    c.name for c in feedback_events.columns if c.name not in ("id", "imported_at", "completion_id", "client_id")
]


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


def _add_missing_columns(engine: Engine) -> None:
    """Nullable columns added to a table since a database was created are added to it (a store made by an earlier
    version keeps its rows)."""
    inspector = inspect(engine)
    with engine.begin() as conn:
        for table in metadata.sorted_tables:
            present = {c["name"] for c in inspector.get_columns(table.name)}
            for column in table.columns:
                if column.name not in present and column.nullable:
                    kind = column.type.compile(dialect=engine.dialect)
                    conn.execute(text(f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {kind}'))


def _durable_sqlite(dbapi_connection, _record) -> None:
    """WAL: readers never block the writer, and a commit appends to the log instead of rewriting pages.
    synchronous=FULL: every commit is fsynced before it returns, so what the server acknowledged survives a power
    cut too (NORMAL would survive a killed process only); the server commits events in groups, so the fsync is paid
    once per group, not per event. The busy timeout lets `flywheel feedback import` and the server write the same
    file at once."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


@dataclass(frozen=True)
class PostedFeedback:
    """A verdict posted to the API, validated: what `FeedbackStore.write` turns into a feedback event."""

    event_id: str
    completion_id: str
    verdict: str  # accepted | rejected | edited
    edited_text: str | None = None
    user: str | None = None
    client_id: str | None = None
    created_at: datetime | None = None  # the client's timestamp; None: now


class FeedbackStore:
    """Feedback events behind a SQLAlchemy engine; tables are created on first use."""

    def __init__(self, url: str):
        self.url = url
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.engine: Engine = create_engine(url, future=True)
        if self.engine.dialect.name == "sqlite" and ":memory:" not in url:
            listen(self.engine, "connect", _durable_sqlite)
        metadata.create_all(self.engine)
        _add_missing_columns(self.engine)

    def log_completion(self, record: dict) -> None:
        """Keep one answer of the server (fields: COMPLETION_FIELDS; created_at defaults to now)."""
        self.write(completion_records=[record])

    def write(self, completion_records: Sequence[dict] = (), posts: Sequence[PostedFeedback] = ()) -> list[str]:
        """Log completions and store posted feedback, all in one transaction; each post's outcome, in order:
        `stored`, `duplicate` (its event id is stored already, or came earlier in `posts`) or `unknown_completion`.

        A post becomes a feedback event with its completion's task, instruction, input, output and model copied, so
        it reads like an imported event and trains the same way."""
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            if completion_records:
                rows = []
                for record in completion_records:
                    row = {name: record.get(name) for name in COMPLETION_FIELDS}
                    row["created_at"] = row["created_at"] or now
                    row["input"] = row["input"] or ""
                    rows.append(row)
                conn.execute(insert(completions), rows)
            return self._store_posts(conn, posts, now) if posts else []

    def _store_posts(self, conn: Connection, posts: Sequence[PostedFeedback], now: datetime) -> list[str]:
        event_ids = list({p.event_id for p in posts})
        completion_ids = list({p.completion_id for p in posts})
        stored = set(conn.scalars(select(feedback_events.c.event_id).where(feedback_events.c.event_id.in_(event_ids))))
        answers = {
            r.completion_id: r
            for r in conn.execute(select(completions).where(completions.c.completion_id.in_(completion_ids)))
        }
        outcomes, rows = [], []
        for post in posts:
            answer = answers.get(post.completion_id)
            if post.event_id in stored:
                outcomes.append("duplicate")
            elif answer is None:
                outcomes.append("unknown_completion")
            else:
                stored.add(post.event_id)
                outcomes.append("stored")
                rows.append(
                    {
                        "event_id": post.event_id,
                        "kind": VERDICT_KINDS[post.verdict],
                        "task": answer.task or UNCATALOGUED_TASK,
                        "instruction": answer.instruction,
                        "input": answer.input or "",
                        "completion": answer.output,
                        "edited_completion": post.edited_text if post.verdict == "edited" else None,
                        "model": answer.model,
                        "user": post.user or answer.user,
                        "created_at": post.created_at or now,
                        "imported_at": now,
                        "completion_id": post.completion_id,
                        "client_id": post.client_id or answer.client_id,
                    }
                )
        if rows:
            insert_new = self._insert_new_events()
            if self.engine.dialect.name in ("sqlite", "postgresql"):
                # What the insert itself reports: an id another writer stored after the look-up above is a duplicate.
                inserted = set(conn.scalars(insert_new.returning(feedback_events.c.event_id), rows))
                outcomes = [
                    "duplicate" if outcome == "stored" and post.event_id not in inserted else outcome
                    for post, outcome in zip(posts, outcomes, strict=True)
                ]
            else:
                conn.execute(insert_new, rows)
        return outcomes

    def _insert_new_events(self):
        """An insert that skips an event id stored meanwhile by another writer (an import running at the same
        time) instead of failing the whole batch."""
        dialect = self.engine.dialect.name
        if dialect in ("sqlite", "postgresql"):
            module = sqlite if dialect == "sqlite" else postgresql
            return module.insert(feedback_events).on_conflict_do_nothing(index_elements=["event_id"])
        return insert(feedback_events)

    def completion(self, completion_id: str) -> dict | None:
        query = select(completions).where(completions.c.completion_id == completion_id)
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return dict(row._mapping) if row is not None else None

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
