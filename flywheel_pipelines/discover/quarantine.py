"""What could not become a record, with the reason: every discover stage returns these beside its records, and
they are kept in the `quarantined_assets` table."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, Text, create_engine, delete, insert, select

from flywheel_pipelines.schemas import validation_errors


@dataclass(frozen=True)
class Quarantined:
    source: str
    path: str
    stage: str  # the asset that quarantined it: "crawl", "code_units", ..., "instruction_dataset"
    reason: str
    item: str = ""  # unit, operation or story inside the file; empty for the whole file

    def as_record(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        where = f"{self.source}/{self.path}" + (f"::{self.item}" if self.item else "")
        return f"[{self.stage}] {where}: {self.reason}"


quarantine_metadata = MetaData()
quarantined_assets = Table(
    "quarantined_assets",
    quarantine_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("source", String(256), nullable=False, index=True),
    Column("stage", String(32), nullable=False),
    Column("path", Text, nullable=False),
    Column("item", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("run_id", String(64), nullable=True),
    Column("quarantined_at", DateTime(timezone=True), nullable=False),
)


class QuarantineStore:
    """The `quarantined_assets` table: for each source and stage, what its latest run could not turn into records."""

    def __init__(self, url: str):
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.engine = create_engine(url)
        quarantine_metadata.create_all(self.engine)

    def replace(self, source: str, stage: str, rows: list[Quarantined], run_id: str | None = None) -> None:
        """Make `rows` the quarantine of (source, stage): a re-run reports what is wrong now, not history."""
        for row in rows:
            if row.source != source or row.stage != stage:
                raise ValueError(f"{row} does not belong to source {source!r}, stage {stage!r}")
            if errors := validation_errors("quarantined_asset", row.as_record()):
                raise ValueError(f"quarantine row {row} breaks its schema: {errors}")
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            conn.execute(
                delete(quarantined_assets).where(
                    (quarantined_assets.c.source == source) & (quarantined_assets.c.stage == stage)
                )
            )
            if rows:
                conn.execute(
                    insert(quarantined_assets),
                    [{**r.as_record(), "run_id": run_id, "quarantined_at": now} for r in rows],
                )

    def rows(self, source: str | None = None, stage: str | None = None) -> list[dict]:
        query = select(quarantined_assets).order_by(quarantined_assets.c.id)
        if source is not None:
            query = query.where(quarantined_assets.c.source == source)
        if stage is not None:
            query = query.where(quarantined_assets.c.stage == stage)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def forget_source(self, source: str) -> int:
        with self.engine.begin() as conn:
            return conn.execute(delete(quarantined_assets).where(quarantined_assets.c.source == source)).rowcount

    def dispose(self) -> None:
        self.engine.dispose()
