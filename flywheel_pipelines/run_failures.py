"""Failed Dagster runs, kept in the flywheel's database by the run-failure sensor: which job, what triggered it, which
steps failed and why — a refused promotion included, since its blocking check fails the run."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, Text, create_engine, select
from sqlalchemy.dialects import postgresql, sqlite

metadata = MetaData()

run_failures = Table(
    "run_failures",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(64), nullable=False, unique=True),
    Column("job_name", String(256), nullable=False),
    Column("trigger", String(64), nullable=True),  # flywheel/trigger: turn, feedback, discovery, schedule, ...
    Column("failed_at", DateTime(timezone=True), nullable=False),
    Column("message", Text, nullable=False),
    Column("failed_steps", Text, nullable=False),  # JSON: [{"step": ..., "error": ...}]
)


class RunFailureLog:
    def __init__(self, url: str):
        self.engine = create_engine(url, future=True)
        metadata.create_all(self.engine)

    def record(self, run_id: str, job_name: str, trigger: str | None, message: str, failed_steps: list[dict]) -> bool:
        """Keep one failure; a run recorded already (a sensor tick retried) is not recorded twice."""
        row = {
            "run_id": run_id,
            "job_name": job_name,
            "trigger": trigger,
            "failed_at": datetime.now(UTC),
            "message": message,
            "failed_steps": json.dumps(failed_steps),
        }
        dialect = {"postgresql": postgresql, "sqlite": sqlite}.get(self.engine.dialect.name)
        if dialect is None:
            raise ValueError(f"run failures are kept in SQLite or PostgreSQL, not {self.engine.dialect.name}")
        statement = dialect.insert(run_failures).values(row).on_conflict_do_nothing(index_elements=["run_id"])
        with self.engine.begin() as conn:
            return conn.execute(statement).rowcount == 1

    def failures(self, limit: int = 50) -> list[dict]:
        query = select(run_failures).order_by(run_failures.c.id.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]

    def dispose(self) -> None:
        self.engine.dispose()
