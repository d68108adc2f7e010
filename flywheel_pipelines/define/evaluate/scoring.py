"""Score models side by side on the same suites: one row per model x suite x metric, plus every sample."""

from __future__ import annotations

import gc
from dataclasses import dataclass
from pathlib import Path

from flywheel_pipelines.define.code_answers import body_parses, extract_code, signature_in
from flywheel_pipelines.define.evaluate import humaneval
from flywheel_pipelines.define.evaluate.generate import generate_answers, load_for_generation
from flywheel_pipelines.define.evaluate.metrics import mean_pass_at_k, rate
from flywheel_pipelines.define.evaluate.sandbox import run_programs
from flywheel_pipelines.schemas import validation_errors
from flywheel_pipelines.settings import EvaluationSettings

EVAL_SPLIT = "eval_split"
HUMANEVAL = "humaneval"


@dataclass(frozen=True)
class ModelUnderTest:
    role: str  # "base", "candidate" or "champion"
    reference: str  # what a person reads: base model id, or adapter version
    base_model_path: Path
    adapter_path: Path | None = None


@dataclass
class Evaluation:
    scores: list[dict]
    samples: list[dict]


def evaluate_models(
    models: list[ModelUnderTest], eval_examples: list[dict], settings: EvaluationSettings, dtype: str = "auto"
) -> Evaluation:
    """Every model answers the same held-out examples and HumanEval problems, greedily."""
    problems = humaneval.humaneval_problems(settings.humaneval_problems)
    examples = eval_examples[: settings.eval_split_examples]
    questions = [(e["instruction"], e["input"]) for e in examples] + [humaneval.question(p) for p in problems]
    result = Evaluation([], [])
    for m in models:
        model, tokenizer = load_for_generation(m.base_model_path, m.adapter_path, dtype)
        answers = generate_answers(
            model,
            tokenizer,
            questions,
            max_new_tokens=settings.max_new_tokens,
            batch_size=settings.batch_size,
        )
        del model
        gc.collect()
        split_answers, he_answers = answers[: len(examples)], answers[len(examples) :]
        _score_eval_split(m, examples, split_answers, result)
        _score_humaneval(m, problems, he_answers, settings, result)
    for row in result.scores:
        if errors := validation_errors("eval_score", row):
            raise ValueError(f"eval score row breaks its schema: {errors}")
    return result


def _score_eval_split(m: ModelUnderTest, examples: list[dict], answers: list[str], out: Evaluation) -> None:
    flags = []
    for example, answer in zip(examples, answers, strict=True):
        signature = signature_in(example)
        ok = bool(signature) and body_parses(signature, extract_code(answer))
        flags.append(ok)
        out.samples.append(_sample(m, EVAL_SPLIT, example["example_id"], answer, "parses" if ok else "syntax_error"))
    out.scores.append(_row(m, EVAL_SPLIT, "syntax_valid", rate(flags), len(flags)))


def _score_humaneval(
    m: ModelUnderTest, problems: list[dict], answers: list[str], settings: EvaluationSettings, out: Evaluation
) -> None:
    programs = [humaneval.program(p, a) for p, a in zip(problems, answers, strict=True)]
    results = run_programs(programs, settings.sandbox_timeout_s, settings.sandbox_workers)
    for problem, answer, res in zip(problems, answers, results, strict=True):
        out.samples.append(_sample(m, HUMANEVAL, problem["task_id"], answer, res.status))
    # One greedy sample per problem: pass@1 is the share of problems solved.
    per_problem = [(1, int(r.passed)) for r in results]
    out.scores.append(_row(m, HUMANEVAL, "pass@1", mean_pass_at_k(per_problem, 1), len(results)))


def _row(m: ModelUnderTest, suite: str, metric: str, value: float, n: int) -> dict:
    return {
        "model": m.role,
        "model_ref": m.reference,
        "suite": suite,
        "metric": metric,
        "value": value,
        "n": n,
    }


def _sample(m: ModelUnderTest, suite: str, item: str, answer: str, verdict: str) -> dict:
    return {"model": m.role, "suite": suite, "item": item, "answer": answer, "verdict": verdict}


def score_of(scores: list[dict], role: str, primary_metric: str) -> float | None:
    """The value of `suite/metric` for one model role, or None when it was not scored."""
    suite, metric = primary_metric.split("/", 1)
    for row in scores:
        if row["model"] == role and row["suite"] == suite and row["metric"] == metric:
            return row["value"]
    return None
