"""Step 2 quality filters: code units a model should not learn from, each dropped with its reason.

UnitGen-style defaults: syntax must still be valid (after redaction), length within token bounds (counted with the
base model's tokenizer when one is given), no trivial units (pass-only, one-liners, plain getters and setters),
complexity within bounds, and tests that test something (an assertion, not only prints). Generated, minified and
vendored files never get this far: the crawl skips them.
"""

from __future__ import annotations

import ast
import re
import textwrap
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class QualityPolicy:
    min_tokens: int = 8
    max_tokens: int = 2048
    min_body_lines: int = 2  # one-line bodies teach little and are mostly trivial delegation
    max_complexity: int = 25  # cyclomatic; beyond this a unit is rarely a good single example
    drop_trivial: bool = True


@dataclass
class QualityResult:
    kept: list[dict]
    rejected: list[tuple[dict, str]] = field(default_factory=list)

    @property
    def counts_by_reason(self) -> dict[str, int]:
        # The reason's text up to the first ":" is its kind; details (numbers) follow it.
        return dict(Counter(reason.split(":", 1)[0] for _, reason in self.rejected))


_EMPTY_BODIES = {"pass", "...", "return", "return None", "{}", "", "return;", "return nil"}
_ACCESSOR_NAME = re.compile(r"^(get|set|is|has)(_|[A-Z])")
_PY_GETTER = re.compile(r"^return self\.\w+$")
_PY_SETTER = re.compile(r"^self\.\w+ = \w+$")
_C_GETTER = re.compile(r"^return (this\.)?\w+;?$")
_C_SETTER = re.compile(r"^(this\.)?\w+ = \w+;?$")
_DECISIONS = re.compile(r"\b(if|for|while|case|catch|elif|except)\b|&&|\|\||\?\?|\?(?!\.)")
_ASSERTIONS = re.compile(
    r"\bassert\w*\b|\.assert\w*\(|pytest\.raises|\bexpect\(|\bverify\(|assertThat|\bt\.(Error|Errorf|Fatal|Fatalf|Fail)"
    r"|\.should\b|\bshould\w*\(|assertEquals|assertTrue|assertFalse|assertThrows|\bcheck\("
)
_PRINT_LINE = re.compile(r"^\s*(print\(|console\.log\(|System\.out\.print|fmt\.Print|println\()")


def python_parses(unit: dict) -> str | None:
    """None when a Python unit's signature and body still compile together, else why not."""
    body = textwrap.indent(unit["body"], "    ")
    source = "\n".join([*unit.get("decorators", []), unit["signature"], body]) + "\n"
    try:
        ast.parse(source)
    except SyntaxError as err:
        return f"syntax error: {err.msg} at line {err.lineno}"
    return None


def cyclomatic_complexity(unit: dict) -> int:
    """1 + decision points: exact for Python (ast), a keyword count for the C-like languages."""
    if unit["language"] == "python":
        try:
            tree = ast.parse(textwrap.dedent(unit["body"]))
        except SyntaxError:
            return 1 + len(_DECISIONS.findall(unit["body"]))
        points = 0
        for node in ast.walk(tree):
            if isinstance(node, ast.If | ast.For | ast.AsyncFor | ast.While | ast.ExceptHandler | ast.IfExp):
                points += 1
            elif isinstance(node, ast.BoolOp):
                points += len(node.values) - 1
            elif isinstance(node, ast.comprehension):
                points += len(node.ifs)
            elif isinstance(node, ast.match_case):
                points += 1
        return 1 + points
    return 1 + len(_DECISIONS.findall(unit["body"]))


def trivial_reason(unit: dict) -> str | None:
    body = unit["body"].strip()
    lines = [line.strip() for line in body.splitlines() if line.strip() and not line.strip().startswith(("#", "//"))]
    if body in _EMPTY_BODIES or all(line in _EMPTY_BODIES for line in lines):
        return "trivial: empty or pass-only body"
    if unit["kind"] == "class" or len(lines) != 1:
        return None
    line = lines[0]
    python = unit["language"] == "python"
    accessor = _ACCESSOR_NAME.match(unit["name"]) or "@property" in unit.get("decorators", [])
    if accessor and (
        (python and (_PY_GETTER.match(line) or _PY_SETTER.match(line)))
        or (not python and (_C_GETTER.match(line) or _C_SETTER.match(line)))
    ):
        return "trivial: plain getter or setter"
    return None


def weak_test_reason(unit: dict) -> str | None:
    """Tests that cannot fail teach a model to write tests that cannot fail."""
    if not unit.get("is_test") or unit["kind"] == "class":
        return None
    body = unit["body"]
    code_lines = [line for line in body.splitlines() if line.strip() and not line.strip().startswith(("#", "//"))]
    if code_lines and all(_PRINT_LINE.match(line) for line in code_lines):
        return "test smell: only prints"
    if not _ASSERTIONS.search(body):
        return "test smell: no assertion"
    return None


def check_unit(unit: dict, policy: QualityPolicy, count_tokens: Callable[[str], int] | None = None) -> str | None:
    """Why `unit` should not be training data, or None when it passes every filter."""
    if unit["language"] == "python" and (reason := python_parses(unit)):
        return reason
    if policy.drop_trivial and (reason := trivial_reason(unit)):
        return reason
    if reason := weak_test_reason(unit):
        return reason
    body_lines = [line for line in unit["body"].splitlines() if line.strip()]
    if unit["kind"] != "class" and len(body_lines) < policy.min_body_lines:
        return f"too short: {len(body_lines)} body lines < {policy.min_body_lines}"
    if (complexity := cyclomatic_complexity(unit)) > policy.max_complexity:
        return f"too complex: cyclomatic complexity {complexity} > {policy.max_complexity}"
    if count_tokens is not None:
        tokens = count_tokens(f"{unit['signature']}\n{unit['body']}")
        if tokens < policy.min_tokens:
            return f"too few tokens: {tokens} < {policy.min_tokens}"
        if tokens > policy.max_tokens:
            return f"too many tokens: {tokens} > {policy.max_tokens}"
    return None


def filter_units(
    units: Iterable[dict], policy: QualityPolicy = QualityPolicy(), count_tokens: Callable[[str], int] | None = None
) -> QualityResult:
    result = QualityResult(kept=[])
    for unit in units:
        if reason := check_unit(unit, policy, count_tokens):
            result.rejected.append((unit, reason))
        else:
            result.kept.append(unit)
    return result
