"""Promotion: a candidate adapter becomes champion only on evidence, and every decision is kept.

The gate compares the candidate with the current champion on the same problems and seeds (rows of `eval_scores`):
no configured metric may fall more than its tolerance below the champion's, the share of memorised completions must
stay under its ceiling, and no completion may reproduce a secret that redaction removed from the training data.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from sqlalchemy import Boolean, Column, DateTime, Integer, MetaData, String, Table, Text, create_engine, insert, select

MEMORISED = "memorisation/verbatim_rate"
SECRET_LEAKS = "memorisation/secret_leaks"
_EPSILON = 1e-9


@dataclass(frozen=True)
class MetricComparison:
    metric: str  # suite/metric
    candidate: float | None
    champion: float | None
    tolerance: float
    n: int

    @property
    def regressed(self) -> bool:
        if self.candidate is None or self.champion is None:
            return False
        return self.candidate < self.champion - self.tolerance - _EPSILON


@dataclass(frozen=True)
class PromotionDecision:
    promote: bool
    reasons: list[str]
    comparisons: list[MetricComparison] = field(default_factory=list)

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons)

    def table(self) -> list[dict]:
        return [{**asdict(c), "regressed": c.regressed} for c in self.comparisons]


def _value(scores: list[dict], role: str, name: str) -> tuple[float | None, int]:
    suite, metric = name.split("/", 1)
    for row in scores:
        if row["model"] == role and row["suite"] == suite and row["metric"] == metric:
            return float(row["value"]), int(row["n"])
    return None, 0


def _stale(scores: list[dict], candidate_version: str, champion_version: str | None) -> str | None:
    """Why `scores` do not judge this candidate against this champion, if they do not."""
    refs = {row["model"]: row["model_ref"] for row in scores}
    if refs.get("candidate") != f"v{candidate_version}":
        scored = refs.get("candidate", "no candidate")
        return f"eval_scores scored {scored}, not the candidate v{candidate_version}: materialise eval_scores again"
    if champion_version is not None and refs.get("champion") != f"v{champion_version}":
        scored = refs.get("champion", "no champion")
        return f"the champion is v{champion_version} but eval_scores compared with {scored}: materialise it again"
    return None


def judge(
    scores: list[dict],
    tolerances: dict[str, float],
    memorisation_ceiling: float,
    candidate_version: str | None = None,
    champion_version: str | None = None,
) -> PromotionDecision:
    """Whether the candidate in `scores` (rows with model base / candidate / champion) may replace the champion.
    Given the candidate's and the current champion's versions, scores of other versions are refused as stale."""
    if candidate_version is not None:
        candidate_version, champion_version = str(candidate_version), champion_version and str(champion_version)
        if champion_version == candidate_version:
            return PromotionDecision(True, [f"v{candidate_version} is already the champion"])
        if stale := _stale(scores, candidate_version, champion_version):
            return PromotionDecision(False, [stale])
    has_champion = any(row["model"] == "champion" for row in scores)
    refusals: list[str] = []
    notes: list[str] = []
    comparisons = []
    for name, tolerance in sorted(tolerances.items()):
        candidate, n = _value(scores, "candidate", name)
        champion, _ = _value(scores, "champion", name) if has_champion else (None, 0)
        comparison = MetricComparison(name, candidate, champion, tolerance, n)
        comparisons.append(comparison)
        if candidate is None:
            notes.append(f"{name} not measured (no problems in this suite)")
        elif comparison.regressed:
            refusals.append(
                f"{name} regressed: candidate {candidate:.3f} < champion {champion:.3f} - tolerance {tolerance:g}"
            )
        elif champion is not None:
            notes.append(f"{name}: candidate {candidate:.3f} vs champion {champion:.3f} (tolerance {tolerance:g})")
        else:
            notes.append(f"{name}: candidate {candidate:.3f}")
    memorised, n = _value(scores, "candidate", MEMORISED)
    if memorised is not None:
        comparisons.append(MetricComparison(MEMORISED, memorised, None, 0.0, n))
        if memorised > memorisation_ceiling + _EPSILON:
            refusals.append(f"{MEMORISED} {memorised:.3f} is above the ceiling {memorisation_ceiling:g}")
        else:
            notes.append(f"{MEMORISED} {memorised:.3f} <= ceiling {memorisation_ceiling:g}")
    leaks, n = _value(scores, "candidate", SECRET_LEAKS)
    if leaks is not None:
        comparisons.append(MetricComparison(SECRET_LEAKS, leaks, None, 0.0, n))
        if leaks > 0:
            refusals.append(f"{SECRET_LEAKS} is {leaks:g}: completions reproduce redacted secrets")
    if refusals:
        return PromotionDecision(False, refusals, comparisons)
    lead = "no regression against the champion" if has_champion else "no champion yet"
    return PromotionDecision(True, [lead, *notes], comparisons)


# --- the promotion history: one row per decision, promoted or not -------------------------------------------------

metadata = MetaData()

promotion_decisions = Table(
    "promotion_decisions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("decided_at", DateTime(timezone=True), nullable=False),
    Column("registered_model", String(256), nullable=False),
    Column("candidate_version", String(32), nullable=False),
    Column("champion_version", String(32), nullable=True),  # the champion it was judged against
    Column("promoted", Boolean, nullable=False),
    Column("reason", Text, nullable=False),
    Column("comparisons", Text, nullable=False),  # JSON: metric, candidate, champion, tolerance, n, regressed
    Column("mlflow_run_id", String(64), nullable=True),
    Column("dagster_run_id", String(64), nullable=True),
)

HISTORY_COLUMNS = [c.name for c in promotion_decisions.columns]


class PromotionHistory:
    """Promotion decisions behind a SQLAlchemy engine (SQLite by default, PostgreSQL to scale out)."""

    def __init__(self, url: str):
        self.engine = create_engine(url, future=True)
        metadata.create_all(self.engine)

    def record(
        self,
        registered_model: str,
        candidate_version: str,
        champion_version: str | None,
        decision: PromotionDecision,
        mlflow_run_id: str | None = None,
        dagster_run_id: str | None = None,
    ) -> int:
        with self.engine.begin() as conn:
            result = conn.execute(
                insert(promotion_decisions).values(
                    decided_at=datetime.now(UTC),
                    registered_model=registered_model,
                    candidate_version=str(candidate_version),
                    champion_version=None if champion_version is None else str(champion_version),
                    promoted=decision.promote,
                    reason=decision.reason,
                    comparisons=json.dumps(decision.table()),
                    mlflow_run_id=mlflow_run_id,
                    dagster_run_id=dagster_run_id,
                )
            )
            return int(result.inserted_primary_key[0])

    def decisions(self, registered_model: str | None = None, limit: int = 100) -> list[dict]:
        """The latest decisions first."""
        query = select(promotion_decisions).order_by(promotion_decisions.c.id.desc()).limit(limit)
        if registered_model is not None:
            query = query.where(promotion_decisions.c.registered_model == registered_model)
        with self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]

    def dispose(self) -> None:
        self.engine.dispose()
