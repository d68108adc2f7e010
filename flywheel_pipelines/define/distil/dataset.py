"""The instruction dataset across the catalogue: every enabled task built (or, when only some are rebuilt, the
others kept as stored), self-instructed topics added where the teacher is configured, and the train split
decontaminated against the eval split and HumanEval."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from flywheel_pipelines.define.datasets import Contamination, assign_splits, decontaminate
from flywheel_pipelines.define.distil.examples import TaskExamples, build_task_examples
from flywheel_pipelines.define.distil.self_instruct import TopicExpansion, expand_topics
from flywheel_pipelines.define.distil.teacher import Teacher
from flywheel_pipelines.discover.quarantine import Quarantined
from flywheel_pipelines.settings import TaskSettings

TOPIC_TASKS = ("user_story", "api_design")
STAGE = "instruction_dataset"
_DECONTAMINATED = "decontaminated:"


@dataclass
class DatasetBuild:
    examples: list[dict]
    built: dict[str, TaskExamples] = field(default_factory=dict)  # tasks built in this run
    kept: dict[str, int] = field(default_factory=dict)  # tasks whose stored examples were kept, and how many
    contamination: list[Contamination] = field(default_factory=list)
    new_topics: dict[str, list[str]] = field(default_factory=dict)
    expansions: dict[str, TopicExpansion] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)  # example id -> source, for the quarantine
    orphan_feedback: list[dict] = field(default_factory=list)  # users' edits for tasks that are not enabled


def _known_titles(records: Sequence[dict]) -> list[str]:
    return [json.loads(r["payload"])["title"] for r in records if r["kind"] == "user_story"]


def build_dataset(
    records: Sequence[dict],
    feedback: Sequence[dict],
    tasks: TaskSettings,
    *,
    benchmarks: Mapping[str, str],
    teacher: Teacher | None = None,
    rebuild: Sequence[str] | None = None,
    stored: Sequence[dict] | None = None,
) -> DatasetBuild:
    """`rebuild` names the tasks to build now (all enabled ones when None); the other enabled tasks keep their
    `stored` examples — unless nothing is stored for them (a task enabled since), which are built too.
    Decontamination always runs over the whole result."""
    enabled = tasks.enabled()
    if unknown := sorted(set(rebuild or ()) - set(enabled)):
        raise ValueError(f"cannot rebuild {unknown}: enabled tasks are {enabled}")
    out = DatasetBuild([])
    examples: list[dict] = []
    stored_tasks = {e["task"] for e in stored or ()}
    for task in enabled:
        if rebuild is not None and task not in rebuild and task in stored_tasks:
            kept = [e for e in stored or () if e["task"] == task]
            out.kept[task] = len(kept)
            examples += kept
            continue
        topics: list[str] = []
        options = getattr(tasks, task)
        if task in TOPIC_TASKS and teacher is not None and options.expand_rounds and "teacher" in options.modes:
            topics, out.expansions[task] = expand_topics(
                teacher,
                options.topics,
                _known_titles(records),
                rounds=options.expand_rounds,
                per_round=options.expand_per_round,
            )
            out.new_topics[task] = topics
        built = build_task_examples(task, records, tasks, feedback, teacher, topics)
        out.built[task] = built
        examples += built.examples
    out.orphan_feedback = [e for e in feedback if e["task"] not in enabled]
    examples = assign_splits(examples, tasks.eval_fraction)
    out.examples, out.contamination = decontaminate(examples, benchmarks, tasks.decontamination_ngram)
    out.sources = {e["example_id"]: e["source"] for e in examples}
    return out


def templates_used(examples: Sequence[dict]) -> dict[str, int]:
    """Task -> the template version its examples were rendered from (the newest, when kept tasks mix versions);
    users' edits (version 0) do not count."""
    used: dict[str, int] = {}
    for e in examples:
        if e["template_version"]:
            used[e["task"]] = max(used.get(e["task"], 0), int(e["template_version"]))
    return dict(sorted(used.items()))


def quarantine_rows(build: DatasetBuild, previous: Sequence[dict] = ()) -> list[Quarantined]:
    """What failed validation (or the teacher), edits for tasks that are not enabled, and what decontamination
    removed, with the reason; the item is the task, the path what the example was built from. `previous` rows (the
    stage's quarantine before this build) of tasks kept as stored stay, as their examples do."""
    rows = [
        Quarantined(row["source"], row["path"], STAGE, row["reason"], row["item"])
        for row in previous
        if row["item"] in build.kept and not row["reason"].startswith(_DECONTAMINATED)
    ]
    rows += [
        Quarantined(r.source, r.origin, STAGE, r.reason, r.task)
        for built in build.built.values()
        for r in built.rejected
    ]
    rows += [
        Quarantined(
            "feedback",
            e["origin"],
            STAGE,
            f"an edit for task {e['task']!r}, which is not an enabled task of the catalogue",
            e["task"],
        )
        for e in build.orphan_feedback
    ]
    rows += [
        Quarantined(build.sources[c.example_id], c.origin, STAGE, f"{_DECONTAMINATED} {c.reason}", c.task)
        for c in build.contamination
    ]
    return rows


def teacher_report(build: DatasetBuild) -> dict[str, int | float]:
    """The teacher's requests, cache hits, repairs, tokens and cost over every task and topic expansion."""
    reports = [b.teacher for b in build.built.values() if b.teacher is not None]
    reports += [e.teacher for e in build.expansions.values()]
    return sum(reports[1:], reports[0]).as_metadata() if reports else {}
