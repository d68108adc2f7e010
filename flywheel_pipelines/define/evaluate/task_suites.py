"""The held-out split of every task, scored by the task's own output validator and against its reference.

Per task: `format_valid` (the share of answers the task's validator accepts: syntax of code in its language, a
docstring that is prose, a user story with Given/When/Then criteria, an API design table that parses and passes the
REST lint), and corpus `chrf` / `bleu` (sacrebleu, 0-100) of the normalised answers against the normalised
references. API designs also report `api_table_valid` (the table parses) and `rest_lint_clean` (no REST finding of
any severity), the two halves of their validity.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from flywheel_pipelines.define.code_answers import extract_code
from flywheel_pipelines.define.tasks import load_template
from flywheel_pipelines.define.tasks.validators import NORMALISERS, VALIDATORS, api_design_findings


@dataclass(frozen=True)
class ScoredAnswer:
    example_id: str
    task: str
    checks: dict[str, bool]
    errors: list[str]


def check_answer(task: str, answer: str, context: dict) -> tuple[dict[str, bool], list[str]]:
    """The format checks of one answer, and the validator's errors."""
    validator = load_template(task).validator
    errors = VALIDATORS[validator](answer, context)
    checks = {"format_valid": not errors}
    if validator == "api_design":
        text = extract_code(answer) if answer.lstrip().startswith("```") else answer
        parses, findings = api_design_findings(text)
        checks["api_table_valid"] = parses
        checks["rest_lint_clean"] = parses and not findings
    return checks, errors


def _normalised(task: str, text: str) -> str:
    return NORMALISERS.get(load_template(task).validator, str.strip)(text)


def score_task(task: str, examples: list[dict], answers: list[str]) -> tuple[dict[str, float], list[ScoredAnswer]]:
    """Metric -> value over the examples of one task, and the per-answer verdicts."""
    from sacrebleu.metrics import BLEU, CHRF

    scored = []
    for example, answer in zip(examples, answers, strict=True):
        context = json.loads(example.get("meta") or "{}")
        checks, errors = check_answer(task, answer, context)
        scored.append(ScoredAnswer(example["example_id"], task, checks, errors))
    metrics = {name: sum(s.checks[name] for s in scored) / len(scored) for name in scored[0].checks} if scored else {}
    if scored:
        hypotheses = [_normalised(task, a) for a in answers]
        references = [[_normalised(task, e["output"]) for e in examples]]
        metrics["chrf"] = CHRF().corpus_score(hypotheses, references).score
        metrics["bleu"] = BLEU().corpus_score(hypotheses, references).score
    return metrics, scored
