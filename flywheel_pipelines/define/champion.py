"""Promotion: a candidate adapter becomes champion only if it does not score below the current champion."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PromotionDecision:
    promote: bool
    reason: str
    candidate_score: float
    champion_score: float | None


def decide_promotion(candidate_score: float, champion_score: float | None, metric: str) -> PromotionDecision:
    if champion_score is None:
        return PromotionDecision(
            True, f"no champion yet; candidate {metric}={candidate_score:.3f}", candidate_score, None
        )
    if candidate_score >= champion_score:
        reason = f"candidate {metric}={candidate_score:.3f} >= champion {champion_score:.3f}"
        return PromotionDecision(True, reason, candidate_score, champion_score)
    reason = f"candidate {metric}={candidate_score:.3f} < champion {champion_score:.3f}; champion kept"
    return PromotionDecision(False, reason, candidate_score, champion_score)
