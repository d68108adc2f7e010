"""Define, step 3 (data): reverse-generate instruction examples from code units, and merge in users' edits.

"Implement the method X": the input is what a developer sees before writing the body (class summary, signature,
docstring); the output is the body they wrote. Examples are split into train and eval by a hash of their
content, so an example never changes split when the dataset grows.
"""

from __future__ import annotations

import ast
import hashlib
import re
import textwrap
from collections.abc import Iterable
from dataclasses import dataclass

from flywheel_pipelines.schemas import validation_errors

IMPLEMENT_METHOD = "implement_method"
_FENCE = re.compile(r"```[a-zA-Z0-9_+-]*\n(.*?)(?:```|\Z)", re.DOTALL)


@dataclass(frozen=True)
class RejectedExample:
    origin: str
    reason: str


def example_id(instruction: str, input_text: str) -> str:
    return hashlib.sha256(f"{instruction}\0{input_text}".encode()).hexdigest()[:16]


def split_for(example: str, eval_fraction: float) -> str:
    """'eval' for a stable `eval_fraction` share of example ids, else 'train'."""
    bucket = int(hashlib.sha256(example.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "eval" if bucket < eval_fraction else "train"


def implement_method_prompt(unit: dict) -> tuple[str, str]:
    """(instruction, input) asking for the body of `unit`, given what surrounds it."""
    kind = "method" if unit["kind"] == "method" else "function"
    instruction = (
        f"Implement the {kind} `{unit['qualified_name']}`. "
        "Reply with the body only: the statements that follow the signature and docstring, not indented."
    )
    header = "\n".join([*unit["decorators"], unit["signature"]])
    if unit.get("docstring"):
        doc = textwrap.indent(f'"""{unit["docstring"]}"""', "    ")
        header = f"{header}\n{doc}"
    parts = []
    if unit.get("class_summary"):
        parts.append(f"# Enclosing class\n{unit['class_summary']}")
    parts.append(f"# {kind.capitalize()} to implement\n{header}")
    return instruction, "```python\n" + "\n\n".join(parts) + "\n```"


def extract_code(completion: str) -> str:
    """The code in a model's answer: its first fenced block when it has one, else the whole text."""
    match = _FENCE.search(completion)
    return (match.group(1) if match else completion).strip("\n")


def body_parses(signature: str, body: str) -> bool:
    """Does `body` compile as the body of a function with `signature`, or as a whole function itself?"""
    body = textwrap.dedent(body).strip("\n")
    if not body.strip():
        return False
    for candidate in (f"{signature}\n{textwrap.indent(body, '    ')}\n", body + "\n"):
        try:
            tree = ast.parse(candidate)
        except (SyntaxError, ValueError):
            continue
        if candidate.startswith(signature) or any(
            isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) for n in tree.body
        ):
            return True
    return False


def _signature_from_input(input_text: str) -> str | None:
    matches = re.findall(r"^\s*((?:async )?def .*:)\s*$", input_text, flags=re.MULTILINE)
    return matches[-1].strip() if matches else None


def signature_in(example: dict) -> str | None:
    """The signature an implement_method example asks to implement (its last `def` line)."""
    return _signature_from_input(example["input"])


def examples_from_code_units(
    units: Iterable[dict], *, min_body_lines: int, max_body_chars: int, eval_fraction: float
) -> tuple[list[dict], list[RejectedExample]]:
    examples: list[dict] = []
    rejected: list[RejectedExample] = []
    for unit in units:
        # Python functions and methods for now: the eval suite checks answers with Python's own parser.
        if unit["language"] != "python" or unit["kind"] == "class" or unit.get("is_test"):
            continue
        origin = f"code_unit:{unit['unit_id']}"
        body = unit["body"]
        if len(body.splitlines()) < min_body_lines:
            rejected.append(RejectedExample(origin, f"body shorter than {min_body_lines} lines"))
            continue
        if len(body) > max_body_chars:
            rejected.append(RejectedExample(origin, f"body longer than {max_body_chars} characters"))
            continue
        instruction, input_text = implement_method_prompt(unit)
        eid = example_id(instruction, input_text)
        examples.append(
            {
                "example_id": eid,
                "task": IMPLEMENT_METHOD,
                "instruction": instruction,
                "input": input_text,
                "output": body,
                "origin": origin,
                "split": split_for(eid, eval_fraction),
            }
        )
    return examples, rejected


def build_instruction_dataset(
    from_code: Iterable[dict], from_feedback: Iterable[dict]
) -> tuple[list[dict], list[RejectedExample]]:
    """Merge, validate and de-duplicate by example id; a user's edit replaces the reverse-generated answer."""
    by_id: dict[str, dict] = {}
    rejected: list[RejectedExample] = []
    for example in [*from_code, *from_feedback]:  # later wins: feedback overrides code-derived answers
        if errors := validation_errors("instruction", example):
            rejected.append(RejectedExample(example.get("origin", "?"), "; ".join(errors)))
            continue
        by_id[example["example_id"]] = example
    return sorted(by_id.values(), key=lambda e: e["example_id"]), rejected
