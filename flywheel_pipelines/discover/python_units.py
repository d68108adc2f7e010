"""Discover, step 1: Python functions and methods as code units, each with the context a model needs to write it.

A method's context is its enclosing class summary (header, fields, constructor and method signatures) — the form
unit-minions used as model input — so a model learns to write a body that fits the class around it.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import os
import re
import textwrap
from collections.abc import Iterable

from flywheel_pipelines.discover.quarantine import Quarantined
from flywheel_pipelines.schemas import validation_errors

FunctionNode = ast.FunctionDef | ast.AsyncFunctionDef
STAGE = "code_units"


def unit_id(source: str, path: str, qualified_name: str) -> str:
    return hashlib.sha256(f"{source}\0{path}\0{qualified_name}".encode()).hexdigest()[:16]


def signature_of(node: FunctionNode) -> str:
    prefix = "async def" if isinstance(node, ast.AsyncFunctionDef) else "def"
    returns = f" -> {ast.unparse(node.returns)}" if node.returns else ""
    return f"{prefix} {node.name}({ast.unparse(node.args)}){returns}:"


def _body_statements(node: FunctionNode | ast.ClassDef) -> list[ast.stmt]:
    body = node.body
    if ast.get_docstring(node, clean=False) is not None:
        body = body[1:]
    return body


def body_of(node: FunctionNode | ast.ClassDef, lines: list[str]) -> str:
    """The statements (or class members) after the docstring, as written (comments inside kept), dedented."""
    statements = _body_statements(node)
    if not statements:
        return ""
    first, last = statements[0], statements[-1]
    if first.lineno == node.lineno:  # one-liner such as `def f(): return 1`
        return "\n".join(ast.unparse(s) for s in statements)
    start = min([first.lineno, *(d.lineno for d in getattr(first, "decorator_list", []))])
    # Comments just above the first statement belong to the body; the docstring and signature do not.
    has_docstring = len(statements) < len(node.body)
    header_end = (node.body[0].end_lineno or node.lineno) if has_docstring else node.lineno
    while start - 1 > header_end and lines[start - 2].strip().startswith("#"):
        start -= 1
    text = "\n".join(lines[start - 1 : (last.end_lineno or last.lineno)])
    return textwrap.dedent(text).strip("\n")


def class_summary(cls: ast.ClassDef) -> str:
    """The class as a model sees it: header, docstring's first line, fields, and every method's signature."""
    bases = [ast.unparse(b) for b in cls.bases] + [ast.unparse(k) for k in cls.keywords]
    out = [f"@{ast.unparse(d)}" for d in cls.decorator_list]
    out.append(f"class {cls.name}({', '.join(bases)}):" if bases else f"class {cls.name}:")
    doc = ast.get_docstring(cls)
    if doc:
        out.append(f'    """{doc.splitlines()[0]}"""')
    instance_fields: list[str] = []
    for stmt in cls.body:
        if isinstance(stmt, ast.AnnAssign | ast.Assign):
            out.append("    " + ast.unparse(stmt).splitlines()[0])
        elif isinstance(stmt, FunctionNode) and stmt.name == "__init__":
            for sub in ast.walk(stmt):
                targets = sub.targets if isinstance(sub, ast.Assign) else [getattr(sub, "target", None)]
                for t in targets:
                    is_self_attr = (
                        isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self"
                    )
                    if is_self_attr and t.attr not in instance_fields:
                        instance_fields.append(t.attr)
    if instance_fields:
        out.append(f"    # instance fields: {', '.join(instance_fields)}")
    for stmt in cls.body:
        if isinstance(stmt, FunctionNode):
            out.extend(f"    @{ast.unparse(d)}" for d in stmt.decorator_list)
            out.append(f"    {signature_of(stmt)} ...")
    return "\n".join(out)


def is_test_file(path: str) -> bool:
    """pytest's default discovery: test_*.py or *_test.py."""
    name = os.path.basename(path)
    return name.startswith("test_") or name.endswith("_test.py")


def module_imports(tree: ast.Module) -> dict[str, str]:
    """Each name a module-level import binds, with the import statement that binds only it."""
    bound: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.Import):
            for alias in node.names:
                name = alias.asname or alias.name.split(".")[0]
                bound[name] = f"import {alias.name}" + (f" as {alias.asname}" if alias.asname else "")
        elif isinstance(node, ast.ImportFrom):
            module = "." * node.level + (node.module or "")
            for alias in node.names:
                if alias.name != "*":
                    name = alias.asname or alias.name
                    bound[name] = f"from {module} import {alias.name}" + (f" as {alias.asname}" if alias.asname else "")
    return bound


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def imports_used(code: str, bound: dict[str, str]) -> list[str]:
    """Imports whose bound name occurs in the unit's code (a token scan: a fraction of an AST walk's cost)."""
    if not bound:
        return []
    return sorted({bound[name] for name in set(_IDENTIFIER.findall(code)) if name in bound})


def _unit_record(
    node: FunctionNode | ast.ClassDef,
    lines: list[str],
    context: dict,
    qualname: str,
    cls: ast.ClassDef | None,
    bound: dict[str, str],
    summaries,
) -> dict:
    is_class = isinstance(node, ast.ClassDef)
    if is_class:
        bases = [ast.unparse(b) for b in node.bases] + [ast.unparse(k) for k in node.keywords]
        signature = f"class {node.name}({', '.join(bases)}):" if bases else f"class {node.name}:"
        in_test_file = is_test_file(context["path"])
        is_test = (in_test_file and node.name.startswith("Test")) or any(b.endswith("TestCase") for b in bases)
    else:
        signature = signature_of(node)
        in_test_scope = is_test_file(context["path"]) or (cls is not None and cls.name.startswith("Test"))
        is_test = in_test_scope and node.name.startswith("test")
    decorators = [f"@{ast.unparse(d)}" for d in node.decorator_list]
    body = body_of(node, lines)
    return {
        "unit_id": unit_id(context["source"], context["path"], qualname),
        "source": context["source"],
        "path": context["path"],
        "file_sha256": context["file_sha256"],
        "language": "python",
        "kind": "class" if is_class else ("method" if cls is not None else "function"),
        "name": node.name,
        "qualified_name": qualname,
        "signature": signature,
        "decorators": decorators,
        "docstring": ast.get_docstring(node),
        "body": body,
        "start_line": node.lineno,
        "end_line": node.end_lineno or node.lineno,
        "class_summary": summaries(cls) if cls is not None else None,
        "imports": imports_used("\n".join([*decorators, signature, body]), bound),
        "is_test": bool(is_test),
        "tested_units": [],
    }


def extract_python_units(text: str, source: str, path: str, file_sha256: str) -> tuple[list[dict], list[Quarantined]]:
    """Classes, module-level functions and methods of (nested) classes; nested functions stay in their parent."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError) as err:
        line = getattr(err, "lineno", None)
        reason = f"syntax error line {line}: {getattr(err, 'msg', err)}" if line else f"does not parse: {err}"
        return [], [Quarantined(source, path, STAGE, reason)]
    lines = text.splitlines()
    bound = module_imports(tree)
    summaries = functools.cache(class_summary)  # one summary per class, shared by all its methods
    context = {"source": source, "path": path, "file_sha256": file_sha256}
    units: list[dict] = []
    rejected: list[Quarantined] = []

    def keep(record: dict) -> None:
        if not record["body"]:
            rejected.append(Quarantined(source, path, STAGE, "no body besides the docstring", record["qualified_name"]))
        elif errors := validation_errors("code_unit", record):
            rejected.append(Quarantined(source, path, STAGE, "; ".join(errors), record["qualified_name"]))
        else:
            units.append(record)

    def visit(body: Iterable[ast.stmt], prefix: str, cls: ast.ClassDef | None) -> None:
        for node in body:
            if isinstance(node, ast.ClassDef):
                keep(_unit_record(node, lines, context, prefix + node.name, cls, bound, summaries))
                visit(node.body, f"{prefix}{node.name}.", node)
            elif isinstance(node, FunctionNode):
                keep(_unit_record(node, lines, context, prefix + node.name, cls, bound, summaries))

    visit(tree.body, "", None)
    return units, rejected
