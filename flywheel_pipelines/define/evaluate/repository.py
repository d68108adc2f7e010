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
        module = place_body(
            self.files[self.module_path], self.function_name, self.start_line, answer_body(answer, self.function_name)
        )
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


def _statements_source(code: str, fn: ast.FunctionDef | ast.AsyncFunctionDef) -> str:
    """The statements of `fn` after its docstring, as written in `code`, dedented."""
    statements = fn.body[1:] if ast.get_docstring(fn, clean=False) is not None and len(fn.body) > 1 else fn.body
    if statements[0].lineno == fn.lineno:  # a one-liner: `def f(x): return x`
        return "\n".join(ast.unparse(s) for s in statements)
    first = min([statements[0].lineno, *(d.lineno for d in getattr(statements[0], "decorator_list", []))])
    lines = code.splitlines()
    return textwrap.dedent("\n".join(lines[first - 1 : fn.end_lineno])).strip("\n")


def answer_body(answer: str, function_name: str) -> str:
    """The body a model wrote: from a code block; when it wrote the whole function (alone, inside a class, or after
    imports), that function's statements, with the answer's imports moved into the body."""
    code = textwrap.dedent(extract_code(answer)).strip("\n")
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return code
    functions = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    fn = next((f for f in functions if f.name == function_name), None)
    if fn is None:
        return code  # statements of the body, as asked
    imports = [ast.unparse(n) for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
    return "\n".join([*imports, _statements_source(code, fn)])


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
    statements = node.body[1:] if has_docstring else node.body
    first = statements[0] if statements else None
    first_replaced = (
        min([first.lineno, *(d.lineno for d in getattr(first, "decorator_list", []))])
        if first is not None
        else node.body[0].end_lineno + 1
    )
    indent = re.match(r"\s*", lines[node.body[0].lineno - 1]).group(0)
    new_body = textwrap.indent(body, indent, lambda line: True).splitlines()
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


STUB_BODY = 'raise NotImplementedError("withheld by the evaluation")'


def runnable_problems(
    problems: list[RepositoryProblem], limit: int, timeout_s: float, workers: int
) -> tuple[list[RepositoryProblem], dict[str, str]]:
    """The first `limit` problems whose tests pass with the original body and fail with a body that only raises (so
    they do exercise the function), and why the others looked at were left out ({problem_id: reason}). Candidates
    are tried a few at a time, so a large repository costs only the runs it takes to find `limit` of them."""
    kept: list[RepositoryProblem] = []
    dropped: dict[str, str] = {}
    todo = list(problems)
    while todo and len(kept) < limit:
        size = max(workers, limit - len(kept))
        batch, todo = todo[:size], todo[size:]
        fitting = []
        for p in batch:
            if p.reference_program() is None:
                dropped[p.problem_id] = "the original body does not fit back in place"
            else:
                fitting.append(p)
        programs = [p.reference_program() for p in fitting] + [p.program(STUB_BODY) for p in fitting]
        results = run_programs(programs, timeout_s, workers) if fitting else []
        for problem, original, stub in zip(fitting, results, results[len(fitting) :], strict=False):
            if not original.passed:
                dropped[problem.problem_id] = f"the original body fails its tests: {original.status}: {original.reason}"
            elif stub.passed:
                dropped[problem.problem_id] = "its tests pass without the function: they do not exercise it"
            elif len(kept) < limit:
                kept.append(problem)
    return kept, dropped
