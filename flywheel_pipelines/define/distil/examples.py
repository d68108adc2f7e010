"""One task's instruction examples: its drafts from the curated assets, answered by reverse generation where the
assets hold the answer and by the teacher where they do not, merged with users' edits, every example validated
against the instruction schema and the task's output validator, capped, and split by group."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial

from flywheel_pipelines.define.datasets import split_for
from flywheel_pipelines.define.distil.teacher import DistillationReport, Teacher, TeacherPrompt
from flywheel_pipelines.define.tasks import Draft, code_tasks, design_tasks, example_id, load_template
from flywheel_pipelines.define.tasks.validators import NORMALISERS, VALIDATORS
from flywheel_pipelines.schemas import validation_errors
from flywheel_pipelines.settings import TaskSettings


@dataclass(frozen=True)
class Rejected:
    task: str
    origin: str
    source: str
    reason: str


@dataclass
class TaskExamples:
    task: str
    examples: list[dict]
    rejected: list[Rejected] = field(default_factory=list)  # failed a validator or the schema: quarantined
    skipped: list[Rejected] = field(default_factory=list)  # filtered by the task's limits, or over its cap
    teacher: DistillationReport | None = None
    unanswered: int = 0  # drafts with no answer in the assets, left for a teacher that is not configured


def drafts_for(
    task: str, records: Sequence[dict], tasks: TaskSettings, topics: Sequence[str] = ()
) -> tuple[list[Draft], list[Rejected]]:
    """Every draft of `task` in the curated assets (and its topics), and what its limits filtered out."""
    options = getattr(tasks, task)
    skipped: list = []
    if task in ("code_generation", "test_generation", "docstring_generation"):
        limits = code_tasks.CodeTaskLimits(min_body_lines=options.min_body_lines, max_body_chars=options.max_body_chars)
        drafts, skipped = getattr(code_tasks, task)(records, limits)
    elif task == "api_to_user_story":
        drafts = design_tasks.api_to_user_story(records, options.min_link_score)
    elif task == "api_design":
        drafts = design_tasks.api_design(records, [*options.topics, *topics], tasks.api_to_user_story.min_link_score)
    else:
        drafts = design_tasks.user_story(records, [*options.topics, *topics])
    return drafts, [Rejected(task, s.origin, s.source, s.reason) for s in skipped]


def validate_answer(draft: Draft, output: str) -> list[str]:
    template = load_template(draft.task)
    return VALIDATORS[template.validator](output, draft.context)


def to_example(draft: Draft, output: str, generation: str, eval_fraction: float) -> dict:
    template = load_template(draft.task)
    instruction, input_text = template.instruction_for(draft), template.input_for(draft)
    return {
        "example_id": example_id(draft.task, instruction, input_text),
        "task": draft.task,
        "template_version": template.version,
        "instruction": instruction,
        "input": input_text,
        "output": output,
        "origin": draft.origin,
        "source": draft.source,
        "generation": generation,
        "group": draft.group,
        "split": "train" if generation == "feedback" else split_for(draft.group, eval_fraction),
        "meta": json.dumps(draft.context, sort_keys=True),
    }


def teacher_prompt(draft: Draft) -> TeacherPrompt:
    template = load_template(draft.task)
    user = f"{template.instruction_for(draft)}\n\n{template.input_for(draft)}"
    return TeacherPrompt(
        key=f"{draft.origin}/{draft.task}",
        system=template.system_prompt(draft),
        user=user,
        validate=partial(validate_answer, draft),
    )


def _valid(pairs: Iterable[tuple[Draft, dict]], out: TaskExamples) -> list[dict]:
    kept = []
    for draft, example in pairs:
        errors = validation_errors("instruction", example) or validate_answer(draft, example["output"])
        if errors:
            reason = f"{example['generation']} answer fails validation: " + "; ".join(errors[:5])
            out.rejected.append(Rejected(out.task, example["origin"], example["source"], reason))
        else:
            kept.append(example)
    return kept


def _merge(generated: list[dict], edits: list[dict], out: TaskExamples) -> list[dict]:
    """One example per prompt. Two generated answers to one prompt (two files with the same undocumented `main`)
    keep the first by (group, output), whatever the input order; the other is quarantined. A user's edit replaces the
    answer to its prompt — matched by example id, else by input, as prompts written by an older template differ
    only in wording — and takes that answer's group along to train."""
    by_id: dict[str, dict] = {}
    for example in sorted(generated, key=lambda e: (e["group"], e["output"])):
        if (first := by_id.get(example["example_id"])) is not None:
            reason = f"same prompt as {first['origin']} ({first['group']}), which is kept"
            out.rejected.append(Rejected(out.task, example["origin"], example["source"], reason))
        else:
            by_id[example["example_id"]] = example
    by_input = {e["input"]: e["example_id"] for e in by_id.values() if e["input"]}
    for edit in edits:
        target = edit["example_id"] if edit["example_id"] in by_id else by_input.get(edit["input"])
        if target is not None:
            edit = dict(edit, group=by_id.pop(target)["group"])
        by_id[edit["example_id"]] = edit  # of two edits to one prompt, the later event wins
    return list(by_id.values())


def build_task_examples(
    task: str,
    records: Sequence[dict],
    tasks: TaskSettings,
    feedback: Iterable[dict] = (),
    teacher: Teacher | None = None,
    topics: Sequence[str] = (),
) -> TaskExamples:
    """The validated examples of one task; feedback examples are users' edits already in example form."""
    options = getattr(tasks, task)
    out = TaskExamples(task, [])
    drafts, out.skipped = drafts_for(task, records, tasks, topics)
    answered = [(d, to_example(d, d.output, "reverse", tasks.eval_fraction)) for d in drafts if d.output]
    if "reverse" not in options.modes:
        out.skipped += [
            Rejected(task, d.origin, d.source, "reverse mode is off for this task") for d in drafts if d.output
        ]
        answered = []
    open_drafts = [d for d in drafts if not d.output]
    if teacher is not None and "teacher" in options.modes and open_drafts:
        normalise = NORMALISERS[load_template(task).validator]
        results, out.teacher = teacher.distil([teacher_prompt(d) for d in open_drafts], extract=normalise)
        for draft, result in zip(open_drafts, results, strict=True):
            if result.output is None:
                reason = f"the teacher's answer failed after {result.attempts} turns: " + "; ".join(result.errors[:3])
                out.rejected.append(Rejected(task, draft.origin, draft.source, reason))
            else:
                answered.append((draft, to_example(draft, result.output, "teacher", tasks.eval_fraction)))
    else:
        out.unanswered = len(open_drafts)
    edits = _valid([(_feedback_draft(e), e) for e in feedback if e["task"] == task], out)
    merged = _merge(_valid(answered, out), edits, out)
    # The cap keeps a stable hash-ordered share of generated examples; users' corrections are always kept.
    generated = sorted((e for e in merged if e["generation"] != "feedback"), key=lambda e: e["example_id"])
    if options.max_examples is not None and len(generated) > options.max_examples:
        for e in generated[options.max_examples :]:
            out.skipped.append(Rejected(task, e["origin"], e["source"], f"over the cap of {options.max_examples}"))
        generated = generated[: options.max_examples]
    corrections = [e for e in merged if e["generation"] == "feedback"]
    out.examples = sorted([*generated, *corrections], key=lambda e: e["example_id"])
    return out


def _feedback_draft(example: dict) -> Draft:
    """A feedback example as a draft, so its output meets the same validator as every other answer."""
    context = json.loads(example.get("meta") or "{}") or code_context_from_input(example["input"])
    return Draft(
        example["task"], {}, example["output"], example["origin"], example["source"], example["group"], context=context
    )


# Fence tags people write, by the catalogue's language names.
FENCE_LANGUAGES = {
    "py": "python",
    "python3": "python",
    "ts": "typescript",
    "tsx": "typescript",
    "js": "javascript",
    "jsx": "javascript",
    "kt": "kotlin",
    "golang": "go",
}


def code_context_from_input(input_text: str) -> dict:
    """The language and signature a code prompt shows: its fence's language and the signature its code ends with
    (a Python signature may span lines)."""
    match = re.search(r"```([\w+-]*)\n(.*?)(?:```|\Z)", input_text, re.DOTALL)
    if not match:
        return {"language": "python", "signature": "def _():", "kind": "function"}
    tag = match.group(1).lower() or "python"
    language = FENCE_LANGUAGES.get(tag, tag)
    code = match.group(2).rstrip()
    kind = "method" if "class" in input_text else "function"
    if language == "python":
        starts = list(re.finditer(r"^[ \t]*(async\s+)?def\s", code, re.M))
        signature = "def _():"
        if starts:
            text = code[starts[-1].start() :]
            end = re.search(r"\)\s*(->[^:]*)?:[ \t]*$", text, re.M)
            signature = " ".join(text[: end.end()].split()) if end else text.splitlines()[0].strip()
        return {"language": language, "signature": signature, "kind": kind}
    lines = [line for line in code.splitlines() if line.strip()]
    return {"language": language, "signature": lines[-1].strip() if lines else "", "kind": kind}
