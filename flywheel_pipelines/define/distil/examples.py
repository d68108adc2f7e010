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
    return drafts, [Rejected(task, s.origin, "", s.reason) for s in skipped]


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


def _checked(examples: Iterable[tuple[Draft, dict]], out: TaskExamples) -> dict[str, dict]:
    by_id: dict[str, dict] = {}
    for draft, example in examples:
        errors = validation_errors("instruction", example) or validate_answer(draft, example["output"])
        if errors:
            reason = f"{example['generation']} answer fails validation: " + "; ".join(errors[:5])
            out.rejected.append(Rejected(out.task, example["origin"], example["source"], reason))
        elif (replaced := by_id.get(example["example_id"])) is not None:
            # A user's edit replaces the generated answer to the same prompt, and takes its group along to train.
            by_id[example["example_id"]] = dict(example, group=replaced["group"])
        else:
            by_id[example["example_id"]] = example
    return by_id


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
    edits = [(_feedback_draft(e), e) for e in feedback if e["task"] == task]
    by_id = _checked([*answered, *edits], out)
    examples = sorted(by_id.values(), key=lambda e: e["example_id"])
    if options.max_examples is not None and len(examples) > options.max_examples:
        for e in examples[options.max_examples :]:
            out.skipped.append(Rejected(task, e["origin"], e["source"], f"over the cap of {options.max_examples}"))
        examples = examples[: options.max_examples]
    out.examples = examples
    return out


def _feedback_draft(example: dict) -> Draft:
    """A feedback example as a draft, so its output meets the same validator as every other answer."""
    context = json.loads(example.get("meta") or "{}") or code_context_from_input(example["input"])
    return Draft(
        example["task"], {}, example["output"], example["origin"], example["source"], example["group"], context=context
    )


def code_context_from_input(input_text: str) -> dict:
    """The language and signature a code prompt shows: its fence's language and the last line of its code."""
    match = re.search(r"```(\w*)\n(.*?)(?:```|\Z)", input_text, re.DOTALL)
    if not match:
        return {"language": "python", "signature": "def _():", "kind": "function"}
    language = match.group(1) or "python"
    lines = [line for line in match.group(2).splitlines() if line.strip()]
    if language == "python":
        signature = next((ln.strip() for ln in reversed(lines) if re.match(r"\s*(async\s+)?def\s", ln)), "def _():")
    else:
        signature = lines[-1].strip() if lines else ""
    return {"language": language, "signature": signature, "kind": "method" if "class" in input_text else "function"}
