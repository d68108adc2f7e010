"""Drafts of the code tasks (code_generation, test_generation, docstring_generation) from curated code units.

Reverse generation: the code the team wrote is the answer, and the prompt is rebuilt from what surrounds it. A
unit with no answer yet (no docstring) becomes a prompt for the teacher instead. Every draft derived from one file
shares the file's group, so a unit's body, its tests and its docstring — and its neighbours, which show the same
class summary — all land in the same split.
"""

from __future__ import annotations

import json
import textwrap
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from flywheel_pipelines.define.tasks import LANGUAGE_NAMES, Draft, word_count


@dataclass(frozen=True)
class Skipped:
    origin: str
    source: str
    reason: str


@dataclass(frozen=True)
class CodeTaskLimits:
    min_body_lines: int = 2
    max_body_chars: int = 1200
    max_tests_chars: int = 4000
    min_docstring_words: int = 3


def curated_units(records: Iterable[dict]) -> list[tuple[dict, dict]]:
    """(curated record, code unit) for every curated code unit of a supported language."""
    out = []
    for record in records:
        if record["kind"] == "code_unit":
            unit = json.loads(record["payload"])
            if unit["language"] in LANGUAGE_NAMES:
                out.append((record, unit))
    return out


def _doc_comment(unit: dict) -> str:
    doc = unit.get("docstring")
    if not doc:
        return ""
    if unit["language"] == "python":
        return textwrap.indent(f'"""{doc}"""', "    ")
    if unit["language"] == "go":
        return "\n".join(f"// {line}".rstrip() for line in doc.splitlines())
    return "/**\n" + "\n".join(f" * {line}".rstrip() for line in doc.splitlines()) + "\n */"


def _closing(unit: dict) -> tuple[str, str]:
    """What opens and closes a body in this unit's language (a JS test callback also closes its call)."""
    if unit["language"] == "python":
        return "", ""
    if unit["signature"].rstrip().endswith("=>"):
        return " {", "});"
    return " {", "}"


def unit_source(unit: dict, with_doc: bool = True) -> str:
    """The unit as a developer reads it: doc comment, decorators, signature, body."""
    opening, closing = _closing(unit)
    if unit["language"] == "python":
        inner = "\n".join(
            x for x in [_doc_comment(unit) if with_doc else "", textwrap.indent(unit["body"], "    ")] if x
        )
        return "\n".join([*unit["decorators"], unit["signature"], inner])
    lead = [_doc_comment(unit)] if with_doc and unit.get("docstring") else []
    body = textwrap.indent(unit["body"], "    ")
    return "\n".join([*lead, *unit["decorators"], unit["signature"] + opening, body, closing])


def _header(unit: dict) -> str:
    """What a developer sees before writing the body."""
    if unit["language"] == "python":
        lines = [*unit["decorators"], unit["signature"]]
        if doc := _doc_comment(unit):
            lines.append(doc)
        return "\n".join(lines)
    lead = [_doc_comment(unit)] if unit.get("docstring") else []
    return "\n".join([*lead, *unit["decorators"], unit["signature"]])


def _kind(unit: dict) -> str:
    return "method" if unit["kind"] == "method" else "function"


def _common(record: dict, unit: dict) -> dict:
    return {
        "origin": f"curated_asset:{record['asset_id']}",
        "source": record["source"],
        # The file, not the unit: its units share context (class summary, imports) that would leak across splits.
        "group": f"file:{unit['source']}/{unit['path']}",
    }


def _fields(unit: dict, **more: str) -> dict[str, str]:
    return {
        "name": unit["qualified_name"],
        "kind": _kind(unit),
        "language": unit["language"],
        "language_name": LANGUAGE_NAMES[unit["language"]],
        **more,
    }


def _context(unit: dict) -> dict:
    return {"language": unit["language"], "signature": unit["signature"], "kind": _kind(unit)}


def _is_implementable(unit: dict) -> bool:
    return unit["kind"] != "class" and not unit.get("is_test")


def code_generation(records: Iterable[dict], limits: CodeTaskLimits) -> tuple[list[Draft], list[Skipped]]:
    """ "Implement the method X": input the enclosing class summary, signature and doc comment; output the body."""
    drafts, skipped = [], []
    for record, unit in curated_units(records):
        if not _is_implementable(unit):
            continue
        common = _common(record, unit)
        body = unit["body"]
        if len(body.splitlines()) < limits.min_body_lines:
            skipped.append(
                Skipped(common["origin"], common["source"], f"body shorter than {limits.min_body_lines} lines")
            )
            continue
        if len(body) > limits.max_body_chars:
            skipped.append(
                Skipped(common["origin"], common["source"], f"body longer than {limits.max_body_chars} characters")
            )
            continue
        parts = []
        if unit.get("class_summary"):
            parts.append(
                f"{_comment(unit)} Enclosing {'class' if unit['language'] != 'go' else 'type'}\n{unit['class_summary']}"
            )
        parts.append(f"{_comment(unit)} {_kind(unit).capitalize()} to implement\n{_header(unit)}")
        fields = _fields(unit, context="\n\n".join(parts))
        drafts.append(Draft("code_generation", fields, body, context=_context(unit), **common))
    return drafts, skipped


def _comment(unit: dict) -> str:
    return "#" if unit["language"] == "python" else "//"


def test_generation(records: Iterable[dict], limits: CodeTaskLimits) -> tuple[list[Draft], list[Skipped]]:
    """ "Write tests for the following code": input a unit under test; output the tests paired with it."""
    units = curated_units(records)
    tests_of: dict[str, list[dict]] = defaultdict(list)
    for _, unit in units:
        if unit.get("is_test") and unit["kind"] != "class":
            for tested in unit.get("tested_units") or []:
                tests_of[tested].append(unit)
    drafts, skipped = [], []
    for record, unit in units:
        if not _is_implementable(unit) or unit["unit_id"] not in tests_of:
            continue
        common = _common(record, unit)
        tests = sorted(tests_of[unit["unit_id"]], key=lambda t: (t["path"], t["start_line"]))
        output = "\n\n".join(unit_source(t) for t in tests)
        if len(output) > limits.max_tests_chars:
            skipped.append(
                Skipped(
                    common["origin"], common["source"], f"its tests are longer than {limits.max_tests_chars} characters"
                )
            )
            continue
        code = unit_source(unit)
        if unit.get("class_summary"):
            code = f"{_comment(unit)} Enclosing class\n{unit['class_summary']}\n\n{_comment(unit)} Under test\n{code}"
        fields = _fields(unit, code=code)
        drafts.append(Draft("test_generation", fields, output, context=_context(unit), **common))
    return drafts, skipped


def docstring_generation(records: Iterable[dict], limits: CodeTaskLimits) -> tuple[list[Draft], list[Skipped]]:
    """Code in, its documentation comment out; units without one are prompts for the teacher."""
    drafts, skipped = [], []
    for record, unit in curated_units(records):
        if unit.get("is_test"):
            continue
        common = _common(record, unit)
        code = unit_source(unit, with_doc=False)
        if len(code) > limits.max_body_chars * 2:
            skipped.append(
                Skipped(common["origin"], common["source"], f"longer than {limits.max_body_chars * 2} characters")
            )
            continue
        doc = (unit.get("docstring") or "").strip()
        if doc and word_count(doc) < limits.min_docstring_words:
            skipped.append(
                Skipped(
                    common["origin"], common["source"], f"docstring shorter than {limits.min_docstring_words} words"
                )
            )
            continue
        kind = "class" if unit["kind"] == "class" else _kind(unit)
        fields = _fields(unit, code=code, kind=kind)
        drafts.append(Draft("docstring_generation", fields, doc or None, context=_context(unit), **common))
    return drafts, skipped
