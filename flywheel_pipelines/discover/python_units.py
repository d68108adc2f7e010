"""Discover, step 1: Python functions and methods as code units, each with the context a model needs to write it.

A method's context is its enclosing class summary (header, fields, constructor and method signatures) — the form
unit-minions used as model input — so a model learns to write a body that fits the class around it.
"""

from __future__ import annotations

import ast
import hashlib
import textwrap
from collections.abc import Iterable
from dataclasses import dataclass

from flywheel_pipelines.schemas import validation_errors

FunctionNode = ast.FunctionDef | ast.AsyncFunctionDef


@dataclass(frozen=True)
class RejectedUnit:
    source: str
    path: str
    name: str
    reason: str


def unit_id(source: str, path: str, qualified_name: str) -> str:
    return hashlib.sha256(f"{source}\0{path}\0{qualified_name}".encode()).hexdigest()[:16]


def signature_of(node: FunctionNode) -> str:
    prefix = "async def" if isinstance(node, ast.AsyncFunctionDef) else "def"
    returns = f" -> {ast.unparse(node.returns)}" if node.returns else ""
    return f"{prefix} {node.name}({ast.unparse(node.args)}){returns}:"


def _body_statements(node: FunctionNode) -> list[ast.stmt]:
    body = node.body
    if ast.get_docstring(node, clean=False) is not None:
        body = body[1:]
    return body


def body_of(node: FunctionNode, lines: list[str]) -> str:
    """The function's statements after its docstring, as written (comments inside kept), dedented."""
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


def _unit_record(
    node: FunctionNode, lines: list[str], source: str, path: str, qualname: str, cls: ast.ClassDef | None
) -> dict:
    return {
        "unit_id": unit_id(source, path, qualname),
        "source": source,
        "path": path,
        "language": "python",
        "kind": "method" if cls is not None else "function",
        "name": node.name,
        "qualified_name": qualname,
        "signature": signature_of(node),
        "decorators": [f"@{ast.unparse(d)}" for d in node.decorator_list],
        "docstring": ast.get_docstring(node),
        "body": body_of(node, lines),
        "start_line": node.lineno,
        "end_line": node.end_lineno or node.lineno,
        "class_summary": class_summary(cls) if cls is not None else None,
    }


def extract_python_units(text: str, source: str, path: str) -> tuple[list[dict], list[RejectedUnit]]:
    """Module-level functions and methods of (nested) classes; nested functions stay part of their parent."""
    try:
        tree = ast.parse(text)
    except SyntaxError as err:
        return [], [RejectedUnit(source, path, "(module)", f"syntax error line {err.lineno}: {err.msg}")]
    lines = text.splitlines()
    units: list[dict] = []
    rejected: list[RejectedUnit] = []

    def visit(body: Iterable[ast.stmt], prefix: str, cls: ast.ClassDef | None) -> None:
        for node in body:
            if isinstance(node, ast.ClassDef):
                visit(node.body, f"{prefix}{node.name}.", node)
            elif isinstance(node, FunctionNode):
                qualname = prefix + node.name
                record = _unit_record(node, lines, source, path, qualname, cls)
                if not record["body"]:
                    rejected.append(RejectedUnit(source, path, qualname, "no body besides the docstring"))
                elif errors := validation_errors("code_unit", record):
                    rejected.append(RejectedUnit(source, path, qualname, "; ".join(errors)))
                else:
                    units.append(record)

    visit(tree.body, "", None)
    return units, rejected


def extract_code_units(files: Iterable[dict]) -> tuple[list[dict], list[RejectedUnit]]:
    """Code units of every crawled Python file, and the ones rejected with the reason."""
    units: list[dict] = []
    rejected: list[RejectedUnit] = []
    for f in files:
        if f["language"] != "python":
            continue
        got, bad = extract_python_units(f["text"], f["source"], f["path"])
        units.extend(got)
        rejected.extend(bad)
    return units, rejected
