"""Score models side by side on the same suites, problems and seeds: one row per model x suite x metric, plus every
sample with its verdict.

Suites:
- `humaneval` and `repository_tests`: executed in the sandbox; `pass@1` from one greedy answer per problem, and
  with `samples_per_problem` = n > 0 also `sampled_pass@k` (the unbiased estimator) for every configured k <= n.
- one suite per task (`code_generation`, `api_design`, ...): the eval split scored by the task's validator
  (`format_valid`, plus `api_table_valid` / `rest_lint_clean` for API designs) and `chrf` / `bleu` (0-100).
- `memorisation`: `verbatim_rate` (share of continuations of training answers that repeat a long span of the
  training data), `copied_share` (share of their words inside such spans) and `secret_leaks` (continuations that
  contain a secret redaction removed; must be 0).
"""

from __future__ import annotations

import gc
from dataclasses import asdict, dataclass, field
from pathlib import Path

from flywheel_pipelines.define.evaluate import humaneval
from flywheel_pipelines.define.evaluate.answer_cache import AnswerCache, model_fingerprint
from flywheel_pipelines.define.evaluate.generate import (
    Sampling,
    continue_answers,
    generate_answers,
    load_for_generation,
    sample_answers,
)
from flywheel_pipelines.define.evaluate.memorisation import (
    Probe,
    SpanIndex,
    mask_secrets,
    pick_probes,
    redacted_secrets,
    score_probe,
)
from flywheel_pipelines.define.evaluate.metrics import mean_pass_at_k
from flywheel_pipelines.define.evaluate.repository import SUITE as REPOSITORY
from flywheel_pipelines.define.evaluate.repository import RepositoryProblem, build_problems, runnable_problems
from flywheel_pipelines.define.evaluate.sandbox import ExecutionResult, run_programs
from flywheel_pipelines.define.evaluate.task_suites import score_task
from flywheel_pipelines.discover.redact import redact
from flywheel_pipelines.schemas import validation_errors
from flywheel_pipelines.settings import EvaluationSettings

HUMANEVAL = "humaneval"
MEMORISATION = "memorisation"
ROLES = ("base", "candidate", "champion")


@dataclass(frozen=True)
class ModelUnderTest:
    role: str  # "base", "candidate" or "champion"
    reference: str  # what a person reads: base model id, or adapter version
    base_model_path: Path
    adapter_path: Path | None = None


@dataclass
class EvaluationPlan:
    """What every model is asked, built once so that all of them get exactly the same problems."""

    humaneval: list[dict] = field(default_factory=list)
    repository: list[RepositoryProblem] = field(default_factory=list)
    task_examples: dict[str, list[dict]] = field(default_factory=dict)
    probes: list[Probe] = field(default_factory=list)
    span_index: SpanIndex | None = None
    secrets: set[str] = field(default_factory=set, repr=False)


def humaneval_selection(settings: EvaluationSettings) -> list[dict]:
    """The configured HumanEval problems: the chosen task ids, else the first N."""
    if settings.humaneval_task_ids:
        problems = {p["task_id"]: p for p in humaneval.humaneval_problems(164)}
        unknown = [t for t in settings.humaneval_task_ids if t not in problems]
        if unknown:
            raise ValueError(f"evaluation.humaneval_task_ids: no such HumanEval problems: {', '.join(unknown)}")
        return [problems[t] for t in settings.humaneval_task_ids]
    return humaneval.humaneval_problems(settings.humaneval_problems)


def plan_evaluation(
    examples: list[dict],
    settings: EvaluationSettings,
    *,
    curated_records: list[dict] = (),
    code_units: list[dict] = (),
    crawled_files: list[dict] = (),
) -> tuple[EvaluationPlan, dict[str, str]]:
    """The plan from the instruction dataset (eval split: questions; train split: memorisation probes) and the
    crawl (paired tests, redacted secrets); also the repository problems dropped and why."""
    held_out = [e for e in examples if e["split"] == "eval"]
    by_task: dict[str, list[dict]] = {}
    for e in held_out:
        by_task.setdefault(e["task"], []).append(e)
    plan = EvaluationPlan(
        humaneval=humaneval_selection(settings),
        task_examples={task: rows[: settings.eval_split_examples] for task, rows in by_task.items()},
    )
    dropped: dict[str, str] = {}
    if settings.repository_problems and crawled_files:
        candidates = build_problems(held_out, list(curated_records), list(code_units), list(crawled_files))
        plan.repository, dropped = runnable_problems(
            candidates, settings.repository_problems, settings.sandbox_timeout_s, settings.sandbox_workers
        )
    memo = settings.memorisation
    train = [e for e in examples if e["split"] == "train"]
    if memo.prompts and train:
        plan.probes = pick_probes(train, memo.prompts, memo.prefix_words, memo.span_words)
        plan.span_index = SpanIndex((t for e in train for t in (e["output"], e["input"])), memo.span_words)
        plan.secrets = redacted_secrets(f["text"] for f in crawled_files)
    return plan, dropped


@dataclass
class Evaluation:
    scores: list[dict]
    samples: list[dict]


@dataclass(frozen=True)
class _ExecProblem:
    suite: str
    item: str
    question: tuple[str, str]
    build: object  # answer -> Program | str | None


def _exec_problems(plan: EvaluationPlan) -> list[_ExecProblem]:
    problems = [
        _ExecProblem(HUMANEVAL, p["task_id"], humaneval.question(p), lambda a, p=p: humaneval.program(p, a))
        for p in plan.humaneval
    ]
    problems += [_ExecProblem(REPOSITORY, p.problem_id, p.question(), p.program) for p in plan.repository]
    return problems


def evaluate_models(
    models: list[ModelUnderTest],
    plan: EvaluationPlan,
    settings: EvaluationSettings,
    dtype: str = "auto",
    cache: AnswerCache | None = None,
) -> Evaluation:
    """Every model answers the same questions; executable answers run in the sandbox. With a `cache`, a model that
    answered exactly these questions with these settings before (the base model, the champion) is not asked again
    (it is not even loaded)."""
    exec_problems = _exec_problems(plan)
    tasks = [(task, examples) for task, examples in sorted(plan.task_examples.items()) if examples]
    task_questions = [(e["instruction"], e["input"]) for _, examples in tasks for e in examples]
    sampling = (
        Sampling(settings.samples_per_problem, settings.temperature, settings.top_p, settings.seed)
        if settings.samples_per_problem
        else None
    )
    options = {"max_new_tokens": settings.max_new_tokens, "batch_size": settings.batch_size}
    questions = task_questions + [p.question for p in exec_problems]
    exec_questions = [p.question for p in exec_problems]
    probe_prompts = [(p.instruction, p.input, p.prefix) for p in plan.probes]
    continue_options = {"max_new_tokens": settings.memorisation.max_new_tokens, "batch_size": settings.batch_size}
    result = Evaluation([], [])
    for m in models:
        loaded: list = []

        def model_and_tokenizer(m: ModelUnderTest = m, loaded: list = loaded) -> tuple:
            if not loaded:
                loaded.extend(load_for_generation(m.base_model_path, m.adapter_path, dtype))
            return tuple(loaded)

        fingerprint = model_fingerprint(m.base_model_path, m.adapter_path, dtype) if cache else ""

        def answers(kind: str, call: dict, prompts: list, generate, fingerprint: str = fingerprint) -> list:
            if cache is None:
                return generate()
            return cache.get_or_generate(fingerprint, {"kind": kind, **call, "prompts": prompts}, generate)

        greedy = answers(
            "greedy", options, questions, lambda: generate_answers(*model_and_tokenizer(), questions, **options)
        )
        sampled = (
            answers(
                "sampled",
                {**options, **asdict(sampling)},
                exec_questions,
                lambda: sample_answers(*model_and_tokenizer(), exec_questions, sampling, **options),
            )
            if sampling and exec_problems
            else []
        )
        continuations = (
            answers(
                "continue",
                continue_options,
                probe_prompts,
                lambda: continue_answers(*model_and_tokenizer(), probe_prompts, **continue_options),
            )
            if plan.probes and plan.span_index is not None
            else []
        )
        loaded.clear()
        gc.collect()
        task_answers, exec_greedy = greedy[: len(task_questions)], greedy[len(task_questions) :]
        offset = 0
        for task, examples in tasks:
            _score_task(m, task, examples, task_answers[offset : offset + len(examples)], result)
            offset += len(examples)
        _score_executed(m, exec_problems, exec_greedy, sampled, settings, result)
        if continuations:
            _score_memorisation(m, plan, continuations, result)
    for sample in result.samples:  # what is logged never repeats a secret, even one the model said back
        sample["answer"] = mask_secrets(sample["answer"], plan.secrets)
        if sample["suite"] == REPOSITORY:  # test output can quote the raw, unredacted crawled files
            sample["detail"] = redact(mask_secrets(sample["detail"], plan.secrets)).text
    for row in result.scores:
        if errors := validation_errors("eval_score", row):
            raise ValueError(f"eval score row breaks its schema: {errors}")
    return result


def _score_task(m: ModelUnderTest, task: str, examples: list[dict], answers: list[str], out: Evaluation) -> None:
    metrics, scored = score_task(task, examples, answers)
    for answer, verdict in zip(answers, scored, strict=True):
        failed = [name for name, ok in verdict.checks.items() if not ok]
        label = "valid" if not failed else "invalid: " + "; ".join(verdict.errors[:3] or failed)
        out.samples.append(_sample(m, task, verdict.example_id, answer, label))
    for metric, value in metrics.items():
        out.scores.append(_row(m, task, metric, value, len(examples)))


def _score_executed(
    m: ModelUnderTest,
    problems: list[_ExecProblem],
    greedy: list[str],
    sampled: list[list[str]],
    settings: EvaluationSettings,
    out: Evaluation,
) -> None:
    # One batch for the sandbox: every program of every problem, greedy first, then the samples.
    flat = [(p, a, None) for p, a in zip(problems, greedy, strict=True)]
    for p, answers in zip(problems, sampled, strict=False):
        flat += [(p, a, i) for i, a in enumerate(answers)]
    programs = [p.build(a) for p, a, _ in flat]
    runnable = [prog for prog in programs if prog is not None]
    ran = iter(run_programs(runnable, settings.sandbox_timeout_s, settings.sandbox_workers) if runnable else [])
    results = [
        next(ran) if prog is not None else ExecutionResult("failed", "the answer does not fit the function")
        for prog in programs
    ]
    greedy_passed: dict[str, dict[str, int]] = {}
    sampled_counts: dict[str, dict[str, tuple[int, int]]] = {}
    for (problem, answer, sample), res in zip(flat, results, strict=True):
        item = problem.item if sample is None else f"{problem.item}#sample{sample}"
        out.samples.append(_sample(m, problem.suite, item, answer, res.status, res.detail))
        if sample is None:
            greedy_passed.setdefault(problem.suite, {})[problem.item] = int(res.passed)
        else:
            n, c = sampled_counts.setdefault(problem.suite, {}).get(problem.item, (0, 0))
            sampled_counts[problem.suite][problem.item] = (n + 1, c + int(res.passed))
    for suite, passed in greedy_passed.items():
        # One greedy answer per problem: pass@1 is the share of problems solved.
        out.scores.append(_row(m, suite, "pass@1", mean_pass_at_k([(1, c) for c in passed.values()], 1), len(passed)))
    for suite, counts in sampled_counts.items():
        n = min(n for n, _ in counts.values())
        for k in sorted(settings.pass_k):
            if k <= n:
                value = mean_pass_at_k(list(counts.values()), k)
                out.scores.append(_row(m, suite, f"sampled_pass@{k}", value, len(counts)))


def _score_memorisation(m: ModelUnderTest, plan: EvaluationPlan, continuations: list[str], out: Evaluation) -> None:
    results = [
        score_probe(probe, text, plan.span_index, plan.secrets)
        for probe, text in zip(plan.probes, continuations, strict=True)
    ]
    for r in results:
        verdict = "memorised" if r.memorised else "original"
        if r.leaked_secrets:
            verdict += f", {r.leaked_secrets} redacted secret(s) repeated"
        out.samples.append(_sample(m, MEMORISATION, r.example_id, r.continuation, verdict))
    n = len(results)
    total_words = sum(r.total_words for r in results)
    copied = sum(r.copied_words for r in results) / total_words if total_words else 0.0
    out.scores += [
        _row(m, MEMORISATION, "verbatim_rate", sum(r.memorised for r in results) / n, n),
        _row(m, MEMORISATION, "copied_share", copied, n),
        _row(m, MEMORISATION, "secret_leaks", float(sum(r.leaked_secrets > 0 for r in results)), n),
    ]


def _row(m: ModelUnderTest, suite: str, metric: str, value: float, n: int) -> dict:
    return {"model": m.role, "model_ref": m.reference, "suite": suite, "metric": metric, "value": value, "n": n}


def _sample(m: ModelUnderTest, suite: str, item: str, answer: str, verdict: str, detail: str = "") -> dict:
    return {"model": m.role, "suite": suite, "item": item, "answer": answer, "verdict": verdict, "detail": detail}


def comparison_table(scores: list[dict]) -> str:
    """Markdown: one row per suite/metric, one column per model role, and the candidate's change."""
    by_metric: dict[tuple[str, str], dict[str, dict]] = {}
    for row in scores:
        by_metric.setdefault((row["suite"], row["metric"]), {})[row["model"]] = row
    roles = [r for r in ROLES if any(r in v for v in by_metric.values())]
    refs = {row["model"]: row["model_ref"] for row in scores}
    header = ["suite", "metric", "n", *[f"{r} ({refs[r]})" for r in roles]]
    if "champion" in roles:
        header.append("candidate - champion")
    elif "base" in roles and "candidate" in roles:
        header.append("candidate - base")
    lines = ["| " + " | ".join(h.replace("|", "\\|") for h in header) + " |", "|" + "---|" * len(header)]
    for (suite, metric), rows in sorted(by_metric.items()):
        n = max(r["n"] for r in rows.values())
        cells = [suite, metric, str(n), *[_fmt(rows[r]["value"]) if r in rows else "" for r in roles]]
        other = "champion" if "champion" in roles else "base"
        if "candidate" in rows and other in rows and len(header) > len(cells):
            cells.append(f"{rows['candidate']['value'] - rows[other]['value']:+.3f}")
        elif len(header) > len(cells):
            cells.append("")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _fmt(value: float) -> str:
    return f"{value:.3f}" if value <= 1 else f"{value:.1f}"
