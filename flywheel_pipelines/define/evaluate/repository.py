"""Repository-derived code-generation problems: a held-out function of the crawled code, judged by the tests the
team wrote for it.

A problem is an eval-split `code_generation` example of a Python function or method that some crawled test
exercises (test pairing, Discover step 2). Its program writes the function's file with the model's body in place of
the original, plus the test file and the files beside them, into the sandbox's working folder and runs the paired
tests there with pytest. A problem is kept only when the original body passes its own tests in the sandbox: a test
that needs a database, a fixture from elsewhere or a package that is not installed cannot judge anybody.
"""

from __future__ import annotations

import ast
import json
import posixpath
import re
import sysconfig
import textwrap
from collections import defaultdict
from dataclasses import dataclass, field

from flywheel_pipelines.define.code_answers import extract_code
from flywheel_pipelines.define.evaluate.sandbox import Program, run_programs

SUITE = "repository_tests"


@dataclass(frozen=True)
class RepositoryProblem:
    problem_id: str  # the example id
    instruction: str
    input: str
    module_path: str
    function_name: str
    start_line: int  # of its `def`, in the crawled file
    reference_body: str
    files: dict[str, str] = field(repr=False)  # the module's own text included, as crawled
    test_ids: tuple[str, ...] = ()

    def question(self) -> tuple[str, str]:
        return self.instruction, self.input

    def program(self, answer: str) -> Program | None:
        """The sandboxed program that runs the paired tests against `answer`; None when the answer cannot even be
        put in place (no code, or code that does not parse there)."""
        module = place_body(self.files[self.module_path], self.function_name, self.start_line, _answer_body(answer))
        if module is None:
            return None
        return self._with_module(module)

    def reference_program(self) -> Program | None:
        module = place_body(self.files[self.module_path], self.function_name, self.start_line, self.reference_body)
        return None if module is None else self._with_module(module)

    def _with_module(self, module: str) -> Program:
        site = sysconfig.get_paths()
        return Program(
            _runner(self.test_ids), {**self.files, self.module_path: module}, (site["purelib"], site["platlib"])
        )


def _runner(test_ids: tuple[str, ...]) -> str:
    """pytest (imported from the evaluating environment's site-packages) on the paired tests only."""
    return textwrap.dedent(
        f"""\
        import os, sys
        sys.dont_write_bytecode = True
        import pytest
        code = pytest.main(["-q", "-p", "no:cacheprovider", "-o", "addopts=", "--rootdir", os.getcwd(),
                            *{list(test_ids)!r}])
        assert code == 0, f"pytest exited with {{code}}"
        """
    )


def _answer_body(answer: str) -> str:
    """The body a model wrote: from a code block, without a repeated signature."""
    code = textwrap.dedent(extract_code(answer)).strip("\n")
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return code
    if len(tree.body) == 1 and isinstance(tree.body[0], ast.FunctionDef | ast.AsyncFunctionDef):
        fn = tree.body[0]
        statements = fn.body[1:] if ast.get_docstring(fn, clean=False) is not None and len(fn.body) > 1 else fn.body
        lines = code.splitlines()
        return textwrap.dedent("\n".join(lines[statements[0].lineno - 1 : fn.end_lineno])).strip("\n")
    return code


def place_body(module_text: str, function_name: str, start_line: int, body: str) -> str | None:
    """`module_text` with the body of the function defined at `start_line` (its docstring kept) replaced by `body`;
    None when the result does not parse."""
    if not body.strip():
        return None
    lines = module_text.splitlines()
    tree = ast.parse(module_text)
    node = next(
        (
            n
            for n in ast.walk(tree)
            if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
            and n.name == function_name
            and n.lineno == start_line
        ),
        None,
    )
    if node is None or node.body[0].lineno == node.lineno:
        return None
    has_docstring = ast.get_docstring(node, clean=False) is not None
    first_replaced = node.body[0].end_lineno + 1 if has_docstring else node.body[0].lineno
    indent = re.match(r"\s*", lines[node.body[0].lineno - 1]).group(0)
    new_body = textwrap.indent(body, indent, lambda line: True).splitlines()
    if has_docstring and first_replaced > node.end_lineno:  # docstring only: the body goes after it
        first_replaced = node.end_lineno + 1
    placed = "\n".join([*lines[: first_replaced - 1], *new_body, *lines[node.end_lineno :]]) + "\n"
    try:
        ast.parse(placed)
    except SyntaxError:
        return None
    return placed


def _neighbour_files(files: dict[str, str], paths: set[str]) -> dict[str, str]:
    """The Python files in the folders of `paths` and of their parents: what `import shop.orders` reaches."""
    folders = set()
    for path in paths:
        folder = posixpath.dirname(path)
        while True:
            folders.add(folder)
            if not folder:
                break
            folder = posixpath.dirname(folder)
    return {p: t for p, t in files.items() if p.endswith(".py") and posixpath.dirname(p) in folders}


def _test_id(test: dict) -> str:
    return "::".join([test["path"], *test["qualified_name"].split(".")])


def build_problems(
    eval_examples: list[dict], curated_records: list[dict], code_units: list[dict], crawled_files: list[dict]
) -> list[RepositoryProblem]:
    """Candidate problems, before the reference check: held-out Python functions with paired tests."""
    units_by_asset = {}
    for record in curated_records:
        if record["kind"] == "code_unit":
            units_by_asset[f"curated_asset:{record['asset_id']}"] = json.loads(record["payload"])
    tests_of: dict[str, list[dict]] = defaultdict(list)
    for unit in code_units:
        if unit["is_test"] and unit["kind"] != "class":
            for target in unit["tested_units"]:
                tests_of[target].append(unit)
    texts: dict[str, dict[str, str]] = defaultdict(dict)
    for f in crawled_files:
        if f["language"] == "python":
            texts[f["source"]][f["path"]] = f["text"]
    originals = {u["unit_id"]: u for u in code_units}
    problems = []
    for example in eval_examples:
        unit = units_by_asset.get(example["origin"])
        if unit is None or unit["language"] != "python" or example["task"] != "code_generation":
            continue
        tests = [t for t in tests_of.get(unit["unit_id"], []) if t["source"] == unit["source"]]
        original = originals.get(unit["unit_id"])
        source_files = texts.get(unit["source"], {})
        if not tests or original is None or unit["path"] not in source_files:
            continue
        if any(t["path"] not in source_files for t in tests):
            continue
        files = _neighbour_files(source_files, {unit["path"], *(t["path"] for t in tests)})
        problems.append(
            RepositoryProblem(
                problem_id=example["example_id"],
                instruction=example["instruction"],
                input=example["input"],
                module_path=unit["path"],
                function_name=unit["name"],
                start_line=original["start_line"],
                reference_body=original["body"],
                files=files,
                test_ids=tuple(sorted({_test_id(t) for t in tests})),
            )
        )
    return problems


def runnable_problems(
    problems: list[RepositoryProblem], limit: int, timeout_s: float, workers: int
) -> tuple[list[RepositoryProblem], dict[str, str]]:
    """The first `limit` problems whose original body passes its tests in the sandbox, and why the others looked at
    were left out ({problem_id: reason}). Candidates are tried a few at a time, so a large repository costs only
    the runs it takes to find `limit` of them."""
    kept: list[RepositoryProblem] = []
    dropped: dict[str, str] = {}
    todo = list(problems)
    while todo and len(kept) < limit:
        batch, todo = todo[: max(workers, limit - len(kept))], todo[max(workers, limit - len(kept)) :]
        programs = {p.problem_id: p.reference_program() for p in batch}
        fitting = [p for p in batch if programs[p.problem_id] is not None]
        for p in batch:
            if programs[p.problem_id] is None:
                dropped[p.problem_id] = "the original body does not fit back in place"
        results = run_programs([programs[p.problem_id] for p in fitting], timeout_s, workers) if fitting else []
        for problem, result in zip(fitting, results, strict=True):
            if not result.passed:
                dropped[problem.problem_id] = f"the original body fails its tests: {result.status}: {result.reason}"
            elif len(kept) < limit:
                kept.append(problem)
    return kept, dropped
