"""Reading code out of a model's answer, and checking that a Python body fits its signature: shared by the task
validators (define/tasks) and the eval suites (define/evaluate)."""

from __future__ import annotations

import ast
import re
import textwrap

_FENCE = re.compile(r"```[a-zA-Z0-9_+-]*\n(.*?)(?:```|\Z)", re.DOTALL)


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
    """The signature a code_generation example asks to implement (its last `def` line)."""
    return _signature_from_input(example["input"])
