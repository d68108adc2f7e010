"""Output validators of the task catalogue: each says precisely what is wrong with an answer (an empty list when
nothing is), so a reverse-generated example that fails is quarantined with the reason and a teacher's answer that
fails is sent back with the errors to repair."""

from __future__ import annotations

import ast
import re
import textwrap
from collections.abc import Callable

from flywheel_pipelines.define.code_answers import body_parses, extract_code
from flywheel_pipelines.define.tasks import LANGUAGE_NAMES, word_count
from flywheel_pipelines.discover.dsl import DslSyntaxError, api_table, user_story_dsl
from flywheel_pipelines.discover.rest_lint import lint_endpoints
from flywheel_pipelines.discover.treesitter_units import syntax_error_line

Validator = Callable[[str, dict], list[str]]

# How a method body is wrapped so that the grammar parses it in place; {sig} is the signature, {body} the body.
_WRAPPERS = {
    ("java", "method"): "class Wrapper {{\n{sig} {{\n{body}\n}}\n}}",
    ("java", "function"): "class Wrapper {{\n{sig} {{\n{body}\n}}\n}}",
    ("kotlin", "method"): "class Wrapper {{\n{sig} {{\n{body}\n}}\n}}",
    ("kotlin", "function"): "{sig} {{\n{body}\n}}",
    ("typescript", "method"): "class Wrapper {{\n{sig} {{\n{body}\n}}\n}}",
    ("typescript", "function"): "{sig} {{\n{body}\n}}",
    ("javascript", "method"): "class Wrapper {{\n{sig} {{\n{body}\n}}\n}}",
    ("javascript", "function"): "{sig} {{\n{body}\n}}",
    ("go", "method"): "package p\n\n{sig} {{\n{body}\n}}",
    ("go", "function"): "package p\n\n{sig} {{\n{body}\n}}",
}
_TEST_MARKERS = {
    "python": re.compile(r"^\s*(async\s+)?def\s+test\w*\s*\(|^\s*class\s+Test\w*", re.M),
    "java": re.compile(r"@Test\b|@ParameterizedTest\b"),
    "kotlin": re.compile(r"@Test\b"),
    "typescript": re.compile(r"\b(it|test)\s*\(|\bdescribe\s*\("),
    "javascript": re.compile(r"\b(it|test)\s*\(|\bdescribe\s*\("),
    "go": re.compile(r"^func\s+Test\w*\s*\(\s*\w+\s+\*testing\.T\s*\)", re.M),
}
_ASSERTION = {
    "python": re.compile(r"\bassert\b|pytest\.raises|self\.assert\w+"),
    "java": re.compile(r"\bassert\w*\s*\(|\bassertThat\b|\bverify\s*\("),
    "kotlin": re.compile(r"\bassert\w*\s*\(|\bassertThat\b|\bshould\w*\b|\bverify\s*\("),
    "typescript": re.compile(r"\bexpect\s*\(|\bassert\w*"),
    "javascript": re.compile(r"\bexpect\s*\(|\bassert\w*"),
    "go": re.compile(r"\bt\.(Error|Errorf|Fatal|Fatalf|Fail|FailNow)\b|\bassert\.|\brequire\."),
}


def _unsupported(language: str) -> list[str]:
    if language in LANGUAGE_NAMES:
        return []
    return [f"cannot check {language!r} code: the catalogue checks {', '.join(LANGUAGE_NAMES)}"]


def _syntax_problem(language: str, source: str) -> str | None:
    if language == "python":
        try:
            ast.parse(source)
        except SyntaxError as error:
            return f"not valid Python: {error.msg} (line {error.lineno})"
        except ValueError as error:  # e.g. a null byte
            return f"not valid Python: {error}"
        return None
    line = syntax_error_line(language, source)
    return None if line is None else f"not valid {language}: syntax error near line {line}"


def code_body(output: str, context: dict) -> list[str]:
    """The body of the unit named in the context, parsing in place under its signature."""
    body = textwrap.dedent(extract_code(output)).strip("\n")
    if not body.strip():
        return ["the answer is empty"]
    language, signature = context["language"], context["signature"]
    if problems := _unsupported(language):
        return problems
    if language == "python":
        return [] if body_parses(signature, body) else ["the body does not parse under the signature " + signature]
    kind = "method" if context.get("kind") == "method" else "function"
    wrapper = _WRAPPERS.get((language, kind))
    if wrapper is None:
        return [f"no syntax check for {language}"]
    problem = _syntax_problem(language, wrapper.format(sig=signature, body=body))
    return [f"{problem} (the body was placed under `{signature}`)"] if problem else []


def tests(output: str, context: dict) -> list[str]:
    """Test code that parses, declares at least one test and asserts something."""
    code = extract_code(output).strip("\n")
    language = context["language"]
    if not code.strip():
        return ["the answer is empty"]
    if problems := _unsupported(language):
        return problems
    errors = []
    source = code
    if language == "go" and not code.lstrip().startswith("package "):
        source = "package p\n\n" + code
    if language in ("java", "kotlin") and not re.search(r"^\s*(public\s+|internal\s+)?class\s", code, re.M):
        source = "class WrapperTest {\n" + code + "\n}"
    if problem := _syntax_problem(language, source):
        errors.append(problem)
    if not _TEST_MARKERS[language].search(code):
        errors.append(f"declares no {language} test (e.g. {_TEST_MARKERS[language].pattern[:40]!r})")
    if not _ASSERTION[language].search(code):
        errors.append("makes no assertion")
    return errors


def docstring(output: str, context: dict) -> list[str]:
    """Documentation text: words, not code; no comment markers or quotes; a summary line first."""
    text = output.strip()
    errors = []
    if word_count(text) < 3:
        errors.append("a documentation comment needs at least a short sentence (3 words)")
    if text.startswith(('"""', "'''", "/**", "/*", "//", "#")) or text.endswith(('"""', "*/")):
        errors.append("reply with the text only, without comment markers or quotes")
    if re.search(r"^\s*```", text, re.M) or re.search(
        r"^\s*(def|class|function|func|public|private|fun)\s+\w+.*[:{(]\s*$", text, re.M
    ):
        errors.append("the answer contains code; reply with the documentation text only")
    if len(text.splitlines()) > 40:
        errors.append("longer than 40 lines")
    return errors


def user_story(output: str, context: dict) -> list[str]:
    """One story in the user-story DSL with at least one acceptance criterion (warnings, such as AC numbering gaps,
    are not errors)."""
    text = output.strip()
    if errors := [str(e) for e in user_story_dsl.validate(text) if not user_story_dsl.is_warning(e)]:
        return errors
    if not user_story_dsl.parse(text)["acceptance_criteria"]:
        return ["the story has no acceptance criteria: add AC1 with Given / When / Then steps"]
    return []


def _endpoint_of(operation: dict) -> dict:
    """An API-design row in the shape of an `api_endpoint` record, as far as the REST lint reads it."""
    parts = {p["part"]: p for p in operation.get("request", [])}
    path_fields = (parts.get("path") or {}).get("type", {}).get("fields", [])
    outcomes = [operation["response"], *operation.get("error_response", [])] if operation.get("response") else []
    return {
        "method": operation["method"],
        "url_path": operation["api"],
        "parameters": [{"name": f["name"], "in": "path"} for f in path_fields],
        "request_body": parts.get("body") or parts.get("form"),
        "responses": [
            {"status": o["status"], "schema": {"type": "array"} if (o.get("body") or {}).get("kind") == "array" else {}}
            for o in outcomes
        ],
    }


def api_design_findings(text: str) -> tuple[bool, list]:
    """(whether the API design table parses, the REST-lint findings of its operations)."""
    if api_table.validate(text):
        return False, []
    try:
        design = api_table.parse(text)
    except DslSyntaxError:
        return False, []
    return True, lint_endpoints([_endpoint_of(op) for op in design["operations"]])


def api_design(output: str, context: dict) -> list[str]:
    """An API design table that parses and has no error-level REST findings (`POST /createPost` is refused)."""
    text = extract_code(output) if output.lstrip().startswith("```") else output
    if errors := [str(e) for e in api_table.validate(text)]:
        return errors
    try:
        api_table.parse(text)
    except DslSyntaxError as error:
        return [str(e) for e in error.errors]
    _, findings = api_design_findings(text)
    return [f"{f.endpoint}: {f.rule}: {f.message}" for f in findings if f.severity == "error"]


def _canonical(dsl) -> Callable[[str], str]:
    """A DSL answer in its canonical form (what the DSL renders), or as written when it does not parse."""

    def normalise(text: str) -> str:
        try:
            return dsl.render(dsl.parse(text.strip())).strip()
        except (DslSyntaxError, ValueError):
            return text.strip()

    return normalise


def _docstring_text(text: str) -> str:
    # Only quotes that wrap the whole answer go (a model's habit); quotes inside the text stay.
    text = text.strip()
    for quote in ('"""', "'''", '"', "'"):
        if len(text) > 2 * len(quote) and text.startswith(quote) and text.endswith(quote):
            return text[len(quote) : -len(quote)].strip()
    return text


# How an answer is normalised before it is validated and kept: code out of its fence, DSLs in canonical form.
NORMALISERS: dict[str, Callable[[str], str]] = {
    "code_body": lambda text: textwrap.dedent(extract_code(text)).strip("\n"),
    "tests": lambda text: extract_code(text).strip("\n"),
    "docstring": _docstring_text,
    "user_story": _canonical(user_story_dsl),
    "api_design": _canonical(api_table),
}

VALIDATORS: dict[str, Validator] = {
    "code_body": code_body,
    "tests": tests,
    "docstring": docstring,
    "user_story": user_story,
    "api_design": api_design,
}
