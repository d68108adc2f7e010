"""Define, step 3: the task catalogue. Each task is a versioned prompt template kept as a file in `templates/`
(instruction text, input layout, expected output format, the name of its output validator) plus the code that
finds its inputs — and, for reverse generation, its target outputs — in the curated assets.

A `Draft` is one thing to ask: the template's placeholders filled in, and the answer when the assets already hold
it (reverse generation). A draft without an answer is a prompt for the teacher model.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

TEMPLATES = Path(__file__).parent / "templates"
TASKS = (
    "code_generation",
    "test_generation",
    "docstring_generation",
    "user_story",
    "api_design",
    "api_to_user_story",
)
# The fields of an instruction example, in the order of its schema (schemas/instruction.schema.json).
EXAMPLE_FIELDS = (
    "example_id",
    "task",
    "template_version",
    "instruction",
    "input",
    "output",
    "origin",
    "source",
    "generation",
    "group",
    "split",
    "meta",
)
LANGUAGE_NAMES = {
    "python": "Python",
    "java": "Java",
    "kotlin": "Kotlin",
    "typescript": "TypeScript",
    "javascript": "JavaScript",
    "go": "Go",
}


@dataclass(frozen=True)
class Draft:
    """One example to be: the template's fields, and the target output when reverse generation found it."""

    task: str
    fields: dict[str, str]
    output: str | None
    origin: str  # what it was built from: curated_asset:<id>, topic:<hash>
    source: str  # the crawl source, or "teacher" for self-instructed topics
    group: str  # examples built from the same asset share a group, and so a split
    language: str = "en"  # the language of the instruction (user stories may be Chinese)
    context: dict[str, Any] = field(default_factory=dict)  # what the output validator needs (signature, language)


@dataclass(frozen=True)
class TaskTemplate:
    name: str
    version: int
    instruction: dict[str, str]  # by natural language; "en" always present
    input: str
    output_format: str
    validator: str

    def instruction_for(self, draft: Draft) -> str:
        return self.instruction.get(draft.language, self.instruction["en"]).format_map(draft.fields)

    def input_for(self, draft: Draft) -> str:
        return self.input.format_map(draft.fields)

    def system_prompt(self, draft: Draft) -> str:
        """What the teacher is told about the expected output."""
        return self.output_format.format_map(draft.fields)


@cache
def load_template(task: str) -> TaskTemplate:
    path = TEMPLATES / f"{task}.yaml"
    if not path.exists():
        raise KeyError(f"unknown task {task!r}: the catalogue has {', '.join(TASKS)}")
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    instruction = raw["instruction"] if isinstance(raw["instruction"], dict) else {"en": raw["instruction"]}
    return TaskTemplate(
        name=raw["name"],
        version=int(raw["version"]),
        instruction=instruction,
        input=raw["input"],
        output_format=raw["output_format"],
        validator=raw["validator"],
    )


def template_versions(tasks: list[str] | tuple[str, ...] = TASKS) -> dict[str, int]:
    return {task: load_template(task).version for task in tasks}


def example_id(task: str, instruction: str, input_text: str) -> str:
    return hashlib.sha256(f"{task}\0{instruction}\0{input_text}".encode()).hexdigest()[:16]


WORD_PATTERN = re.compile(r"[\u3400-\u9fff]|[^\W\u3400-\u9fff]+")


def words(text: str) -> list[str]:
    """Words, each Chinese character one of them (Chinese has no spaces between words)."""
    return WORD_PATTERN.findall(text)


def word_count(text: str) -> int:
    return len(words(text))


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]
