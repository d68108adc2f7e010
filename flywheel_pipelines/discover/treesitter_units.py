"""Discover, step 1 for Java, Kotlin, TypeScript, JavaScript and Go: classes, methods and functions as code units.

The records are the ones python_units.py makes with `ast`, read here with tree-sitter grammars.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from functools import cache
from pathlib import PurePosixPath

import tree_sitter
import tree_sitter_go
import tree_sitter_java
import tree_sitter_javascript
import tree_sitter_kotlin
import tree_sitter_typescript

from flywheel_pipelines.discover.python_units import unit_id
from flywheel_pipelines.discover.quarantine import Quarantined
from flywheel_pipelines.schemas import validation_errors

Node = tree_sitter.Node
STAGE = "code_units"
SUPPORTED_LANGUAGES = frozenset({"java", "kotlin", "typescript", "javascript", "go"})

_GRAMMARS = {
    "java": tree_sitter_java.language,
    "kotlin": tree_sitter_kotlin.language,
    "typescript": tree_sitter_typescript.language_typescript,
    "tsx": tree_sitter_typescript.language_tsx,
    "javascript": tree_sitter_javascript.language,
    "go": tree_sitter_go.language,
}


@cache
def _parser(grammar: str) -> tree_sitter.Parser:
    return tree_sitter.Parser(tree_sitter.Language(_GRAMMARS[grammar]()))


def _types(names: str) -> frozenset[str]:
    return frozenset(names.split())


@dataclass(frozen=True)
class _Syntax:
    """The node types of one grammar; the walking code below is shared by all of them."""

    classes: frozenset[str]
    functions: frozenset[str]  # also body-less members (abstract, interface): skipped as units, kept in summaries
    fields: frozenset[str]  # members a class summary shows as written
    imports: frozenset[str]
    annotations: frozenset[str] = frozenset()
    comments: frozenset[str] = _types("comment")
    stub_end: str = ";"  # how a body-less member ends in a class summary


_SYNTAX = {
    "java": _Syntax(
        classes=_types("class_declaration interface_declaration enum_declaration record_declaration")
        | _types("annotation_type_declaration"),
        functions=_types("method_declaration constructor_declaration compact_constructor_declaration"),
        fields=_types("field_declaration constant_declaration"),
        imports=_types("import_declaration"),
        annotations=_types("annotation marker_annotation"),
        comments=_types("block_comment line_comment"),
    ),
    "kotlin": _Syntax(
        classes=_types("class_declaration object_declaration companion_object"),
        functions=_types("function_declaration secondary_constructor"),
        fields=_types("property_declaration"),
        imports=_types("import"),
        annotations=_types("annotation"),
        comments=_types("block_comment line_comment"),
        stub_end="",
    ),
    "typescript": _Syntax(
        classes=_types("class_declaration abstract_class_declaration interface_declaration"),
        functions=_types("function_declaration generator_function_declaration method_definition")
        | _types("abstract_method_signature method_signature function_signature"),
        fields=_types("public_field_definition property_signature"),
        imports=_types("import_statement"),
        annotations=_types("decorator"),
    ),
    "javascript": _Syntax(
        classes=_types("class_declaration"),
        functions=_types("function_declaration generator_function_declaration method_definition"),
        fields=_types("field_definition"),
        imports=_types("import_statement"),
        annotations=_types("decorator"),
    ),
    # Go types come from `type_declaration`, handled in _declarations; methods find their type by receiver.
    "go": _Syntax(
        classes=frozenset(),
        functions=_types("function_declaration method_declaration"),
        fields=_types("field_declaration method_elem type_elem"),
        imports=_types("import_declaration"),
        stub_end="",
    ),
}

# Nodes holding the code between a declaration's braces (or, for an expression body, the expression's parent).
_BODIES = _types(
    "block constructor_body class_body interface_body enum_body enum_class_body annotation_type_body statement_block"
    " field_declaration_list interface_type function_body"
)
_FUNCTION_VALUES = _types("arrow_function function_expression function generator_function")
_ENUM_CONSTANTS = _types("enum_constant enum_entry")
_TEST_ANNOTATIONS = _types("Test ParameterizedTest RepeatedTest TestFactory TestTemplate")
_TEST_CALLS = _types("describe it test")
_NAME_TYPES = _types("identifier property_identifier field_identifier type_identifier")
# Inside an ERROR node the parser may take keywords for names.
_KEYWORDS = _types(
    "abstract async class const enum export final fun func function interface let object private protected public"
    " static struct type val var void"
)
_INDENT = "    "


@dataclass(frozen=True)
class _Decl:
    node: Node  # outermost node of the declaration (export_statement, Go type_declaration): lines, errors, signature
    inner: Node  # the class or function node itself (inside `node` when it is wrapped)
    name: str
    kind: str  # "class", "function" ("method" when inside a type) or "group" (a `describe` block)
    body: Node | None
    owner: str | None = None  # Go method receiver type
    sig_prefix: str = ""  # Go specs inside `type ( ... )` lose their `type` keyword


def _text(node: Node) -> str:
    return (node.text or b"").decode("utf-8", "replace")


def _one_line(text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    # Multi-line parameter lists read as one line: `f( a, b, )` -> `f(a, b)`
    return re.sub(r",?\s+\)", ")", re.sub(r"\(\s+", "(", text))


def _name(node: Node) -> str | None:
    for field in ("name", "property"):  # `property` names JavaScript class fields
        child = node.child_by_field_name(field)
        if child is not None:
            return _text(child)
    if node.type == "companion_object":
        return "Companion"  # what the JVM calls an unnamed companion
    if node.type == "secondary_constructor":
        return "constructor"
    return None


def _body(node: Node) -> Node | None:
    body = node.child_by_field_name("body")
    if body is None:  # Kotlin puts no field names on bodies
        body = next((c for c in node.named_children if c.type in _BODIES), None)
    return body


def _go_receiver(node: Node) -> str | None:
    receiver = node.child_by_field_name("receiver")
    match = re.match(r"\(\s*(?:\w+\s+)?\*?\s*(\w+)", _text(receiver)) if receiver is not None else None
    return match.group(1) if match else None


def _test_call(node: Node) -> _Decl | None:
    """`describe("Cart", () => {...})` as a group, `it("adds", () => {...})` / `test(...)` as a test function."""
    call = node.named_children[0] if node.type == "expression_statement" and node.named_child_count else None
    if call is None or call.type != "call_expression":
        return None
    callee, args = call.child_by_field_name("function"), call.child_by_field_name("arguments")
    if callee is None or args is None or callee.type != "identifier" or _text(callee) not in _TEST_CALLS:
        return None
    values = args.named_children
    if len(values) < 2 or values[0].type not in ("string", "template_string") or values[1].type not in _FUNCTION_VALUES:
        return None
    title = _text(values[0])[1:-1].strip()
    if not title:
        return None
    kind = "group" if _text(callee) == "describe" else "function"
    return _Decl(node, values[1], title, kind, values[1].child_by_field_name("body"))


def _declarations(node: Node, syntax: _Syntax, test_file: bool) -> Iterator[_Decl]:
    """The units a top-level statement or class member declares (usually one, none for anything else)."""
    if node.type == "export_statement":
        inner = node.child_by_field_name("declaration") or node.child_by_field_name("value")
        if inner is not None:
            for decl in _declarations(inner, syntax, test_file):
                yield replace(decl, node=node) if decl.node == inner else decl
    elif node.type in ("lexical_declaration", "variable_declaration"):
        declarators = [c for c in node.named_children if c.type == "variable_declarator"]
        for declarator in declarators:
            value, name = declarator.child_by_field_name("value"), declarator.child_by_field_name("name")
            if value is not None and value.type in _FUNCTION_VALUES and name is not None and name.type == "identifier":
                outer = node if len(declarators) == 1 else declarator
                yield _Decl(outer, value, _text(name), "function", value.child_by_field_name("body"))
    elif node.type in ("public_field_definition", "field_definition"):
        value, name = node.child_by_field_name("value"), _name(node)
        if value is not None and value.type in _FUNCTION_VALUES and name:
            yield _Decl(node, value, name, "function", value.child_by_field_name("body"))
    elif node.type == "type_declaration":
        specs = [c for c in node.named_children if c.type == "type_spec"]
        for spec in specs:
            type_node, name = spec.child_by_field_name("type"), _name(spec)
            if type_node is None or name is None or type_node.type not in ("struct_type", "interface_type"):
                continue
            body = type_node if type_node.type == "interface_type" else _body(type_node)
            grouped = any(c.type == "(" for c in node.children)  # `type ( A struct{...}; B int )`
            yield _Decl(spec if grouped else node, spec, name, "class", body, sig_prefix="type " if grouped else "")
    elif node.type in syntax.classes or node.type in syntax.functions:
        name = _name(node)
        if name:
            kind = "class" if node.type in syntax.classes else "function"
            owner = _go_receiver(node) if node.type == "method_declaration" else None  # only Go has receivers
            yield _Decl(node, node, name, kind, _body(node), owner=owner)
    elif test_file and (decl := _test_call(node)) is not None:
        yield decl


def _members(body: Node, syntax: _Syntax) -> list[Node]:
    members: list[Node] = []
    for child in body.named_children:
        if child.type == "enum_body_declarations":  # a Java enum's members after its constants
            members.extend(child.named_children)
        elif child.type not in syntax.comments:
            members.append(child)
    return members


def _first_error_line(node: Node) -> int:
    """Line of the first ERROR or MISSING node; inside an ERROR, of the innermost one, nearer to the actual mistake."""
    current = node
    while True:
        child = next((c for c in current.children if c.has_error or c.is_missing or c.is_error), None)
        if child is None:
            return current.start_point.row + 1
        current = child


def _error_name(node: Node) -> str | None:
    """Best guess at what a declaration the parser could not make sense of was called: its first name."""
    names = (_text(c) for c in node.children if c.type in _NAME_TYPES)
    return next((n for n in names if n not in _KEYWORDS), None)


def syntax_error_line(language: str, source: str) -> int | None:
    """Line of the first syntax error in `source` (a whole file of `language`), or None when it parses cleanly."""
    root = _parser(language).parse(source.encode("utf-8")).root_node
    return _first_error_line(root) if root.has_error else None


def _dedented(src: bytes, start: int, end: int) -> str:
    """Source between two offsets, dedented as a block even when its first line shares a row with code before it."""
    line_start = src.rfind(b"\n", 0, start) + 1
    if src[line_start:start].strip():  # e.g. `{ return x; }` or `= a + b`: the first line has no indentation of its own
        first, _, rest = src[start:end].decode("utf-8", "replace").partition("\n")
        text = first + ("\n" + textwrap.dedent(rest) if rest else "")
    else:
        text = textwrap.dedent(src[line_start:end].decode("utf-8", "replace"))
    return text.lstrip("\n").rstrip()


def _doc_comment(raw: str) -> str | None:
    if raw.startswith("//"):
        lines = [re.sub(r"^//\s?", "", line.strip()) for line in raw.splitlines()]
    else:
        inner = raw[3:-2] if raw.endswith("*/") else raw[3:]
        lines = [re.sub(r"^\s*(\*\s?)?", "", line) for line in inner.splitlines()]
    return textwrap.dedent("\n".join(lines)).strip() or None


@dataclass(frozen=True)
class _Import:
    text: str
    used: re.Pattern[str] | None  # None: a wildcard, which may supply any name the unit uses


def _jvm_import(node: Node) -> _Import:
    text = _one_line(_text(node))
    path = text.removesuffix(";").strip()
    if path.endswith("*"):
        return _Import(text, None)
    alias = re.search(r"\bas\s+(\S+)$", path)
    name = alias.group(1) if alias else re.split(r"[.\s]", path)[-1]
    return _Import(text, re.compile(rf"(?<![\w$]){re.escape(name)}(?![\w$])"))


def _js_import(node: Node) -> _Import | None:
    names: list[str] = []
    stack = [c for c in node.named_children if c.type == "import_clause"]
    while stack:
        current = stack.pop()
        if current.type == "import_specifier":
            names.append(_text(current.child_by_field_name("alias") or current.child_by_field_name("name") or current))
        elif current.type == "identifier":  # default import, or the `x` of `* as x`
            names.append(_text(current))
        else:
            stack.extend(current.named_children)
    if not names:  # `import "./styles.css"` names nothing a unit could use
        return None
    pattern = "|".join(re.escape(n) for n in names)
    return _Import(_one_line(_text(node)), re.compile(rf"(?<![\w$])(?:{pattern})(?![\w$])"))


def _go_import(spec: Node) -> _Import | None:
    alias, path = spec.child_by_field_name("name"), spec.child_by_field_name("path")
    if path is None:
        return None
    text = _one_line(_text(spec))
    if alias is not None and _text(alias) == "_":
        return None
    if alias is not None and _text(alias) == ".":
        return _Import(text, None)
    segments = _text(path).strip('"`').split("/")
    # `github.com/x/y/v2` is package y, `gopkg.in/yaml.v3` is package yaml
    name = segments[-2] if len(segments) > 1 and re.fullmatch(r"v\d+", segments[-1]) else segments[-1]
    name = _text(alias) if alias is not None else re.sub(r"\.v\d+$", "", name).replace("-", "_")
    return _Import(text, re.compile(rf"(?<![\w.]){re.escape(name)}\."))


def _imports(root: Node, language: str, syntax: _Syntax) -> list[_Import]:
    found: list[_Import | None] = []
    for node in root.named_children:
        if node.type not in syntax.imports:
            continue
        elif language == "go":
            specs = [c for c in _walk(node) if c.type == "import_spec"]
            found.extend(_go_import(s) for s in specs)
        elif language in ("java", "kotlin"):
            found.append(_jvm_import(node))
        else:
            found.append(_js_import(node))
    return [i for i in found if i is not None]


def _walk(node: Node) -> Iterator[Node]:
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(reversed(current.named_children))


def _annotation_name(text: str) -> str:
    match = re.match(r"@([\w.]+)", text)
    return match.group(1).rsplit(".", 1)[-1] if match else ""


def _is_test(language: str, path: str, kind: str, name: str, decorators: list[str]) -> bool:
    filename = PurePosixPath(path).name
    if language in ("java", "kotlin"):
        if kind == "class":
            return re.search(r"(Test|Tests|IT)$", name) is not None
        return any(_annotation_name(d) in _TEST_ANNOTATIONS for d in decorators)
    if language == "go":
        is_test_name = re.match(r"(Test|Benchmark|Fuzz|Example)(?![a-z])", name) is not None
        return kind == "function" and filename.endswith("_test.go") and is_test_name
    return kind != "class" and _is_js_test_file(path)


def _is_js_test_file(path: str) -> bool:
    return re.search(r"\.(test|spec)\.[^.]+$", PurePosixPath(path).name) is not None


class _Extractor:
    """One file's walk: holds the source bytes and what the walk has produced so far."""

    def __init__(self, text: str, source: str, path: str, language: str, file_sha256: str) -> None:
        self.source, self.path, self.language, self.file_sha256 = source, path, language, file_sha256
        self.syntax = _SYNTAX[language]
        grammar = "tsx" if language == "typescript" and path.lower().endswith(".tsx") else language
        # \r\n would leave a \r on every line, which textwrap.dedent counts as text
        self.src = text.replace("\r\n", "\n").encode("utf-8", "replace")
        self.root = _parser(grammar).parse(self.src).root_node
        self.test_file = language in ("typescript", "javascript") and _is_js_test_file(path)
        self.imports = _imports(self.root, language, self.syntax)
        self.units: list[dict] = []
        self.quarantined: list[Quarantined] = []
        self.broken_units = 0  # declarations quarantined for a syntax error inside them
        self.unparsed: list[Quarantined] = []  # ERROR nodes where a declaration probably was
        self.seen: dict[str, int] = {}
        self.summaries: dict[tuple[int, int], str] = {}
        self.go_types: dict[str, _Decl] = {}
        self.go_methods: dict[str, list[_Decl]] = {}
        if language == "go":
            for node in self.root.named_children:
                for decl in _declarations(node, self.syntax, False):
                    if decl.kind == "class":
                        self.go_types.setdefault(decl.name, decl)
                    elif decl.owner:
                        self.go_methods.setdefault(decl.owner, []).append(decl)

    def run(self) -> tuple[list[dict], list[Quarantined]]:
        self.visit(self.root.named_children, "", None)
        if self.units or self.broken_units:  # the file's structure held, so a guessed name is worth reporting
            self.quarantined.extend(self.unparsed)
        if self.root.has_error and not (self.broken_units or (self.unparsed and self.units)):
            # No unit to pin the error on: whatever units the file has are hidden in it.
            self.quarantine("", f"syntax error near line {_first_error_line(self.root)}")
        return self.units, self.quarantined

    def quarantine(self, item: str, reason: str) -> None:
        self.quarantined.append(Quarantined(self.source, self.path, STAGE, reason, item))

    def qualify(self, prefix: str, name: str) -> str:
        # Overloads share a name; a suffix keeps unit_id unique within the file.
        qualname = prefix + name
        self.seen[qualname] = count = self.seen.get(qualname, 0) + 1
        return qualname if count == 1 else f"{qualname}#{count}"

    def visit(self, nodes: Iterable[Node], prefix: str, enclosing: _Decl | None) -> None:
        for node in nodes:
            if node.is_error:
                if name := _error_name(node):
                    reason = f"syntax error near line {_first_error_line(node)}"
                    self.unparsed.append(Quarantined(self.source, self.path, STAGE, reason, prefix + name))
                continue
            for decl in _declarations(node, self.syntax, self.test_file):
                base = decl.owner + "." if decl.owner else prefix
                # Body-less overload signatures never become records, so they take no `#n` of their own.
                qualname = self.qualify(base, decl.name) if decl.body is not None else base + decl.name
                if decl.kind == "group":
                    if decl.body is not None:
                        self.visit(decl.body.named_children, qualname + ".", enclosing)
                    continue
                self.emit(decl, qualname, enclosing)
                if decl.kind == "class" and decl.body is not None:
                    self.visit(_members(decl.body, self.syntax), qualname + ".", decl)

    def emit(self, decl: _Decl, qualname: str, enclosing: _Decl | None) -> None:
        if decl.node.has_error:
            self.broken_units += 1
            self.quarantine(qualname, f"syntax error near line {_first_error_line(decl.node)}")
            return
        body = self.body_text(decl)
        if not body:  # abstract and interface methods, empty functions and classes: nothing to learn from
            return
        kind = "class" if decl.kind == "class" else ("method" if enclosing or decl.owner else "function")
        if enclosing is not None:
            summary: str | None = self.class_summary(enclosing)
        elif decl.owner:
            summary = self.go_summary(decl.owner)
        else:
            summary = None
        signature, decorators = self.signature(decl), self.decorators(decl)
        used_text = "\n".join([*decorators, signature, body])
        record = {
            "unit_id": unit_id(self.source, self.path, qualname),
            "source": self.source,
            "path": self.path,
            "file_sha256": self.file_sha256,
            "language": self.language,
            "kind": kind,
            "name": decl.name,
            "qualified_name": qualname,
            "signature": signature,
            "decorators": decorators,
            "docstring": self.docstring(decl),
            "body": body,
            "start_line": decl.node.start_point.row + 1,
            "end_line": decl.node.end_point.row + 1,
            "class_summary": summary,
            "imports": [i.text for i in self.imports if i.used is None or i.used.search(used_text)],
            "is_test": _is_test(self.language, self.path, kind, decl.name, decorators),
            "tested_units": [],
        }
        if errors := validation_errors("code_unit", record):
            self.quarantine(qualname, "; ".join(errors))
        else:
            self.units.append(record)

    def body_text(self, decl: _Decl) -> str:
        body = decl.body
        if body is None:
            return ""
        if body.type not in _BODIES:  # an expression body: `=> a + b`, Kotlin `= a + b`
            return _dedented(self.src, body.start_byte, body.end_byte)
        if body.type == "function_body" and body.named_children and body.named_children[0].type == "block":
            body = body.named_children[0]
        inside = body.named_children
        if all(c.type in self.syntax.comments for c in inside):
            return ""
        # Up to the closing brace, so a last member's `;` (a token of its own in TypeScript) stays.
        closing = body.children[-1]
        end = closing.start_byte if closing.type == "}" else inside[-1].end_byte
        return _dedented(self.src, inside[0].start_byte, end)

    def decorator_nodes(self, decl: _Decl) -> list[Node]:
        if not self.syntax.annotations:
            return []
        holders = [decl.node, decl.inner]
        holders += [c for h in (decl.node, decl.inner) for c in h.children if c.type == "modifiers"]
        found = {
            (c.start_byte, c.end_byte): c for h in holders for c in h.children if c.type in self.syntax.annotations
        }
        # TypeScript keeps a class member's decorators as siblings before it.
        sibling = decl.node.prev_named_sibling
        while sibling is not None and sibling.type == "decorator":
            found[(sibling.start_byte, sibling.end_byte)] = sibling
            sibling = sibling.prev_named_sibling
        return [found[k] for k in sorted(found)]

    def decorators(self, decl: _Decl) -> list[str]:
        return [_one_line(_text(d)) for d in self.decorator_nodes(decl)]

    def signature(self, decl: _Decl) -> str:
        end = decl.node.end_byte
        if decl.body is not None:
            end = decl.body.start_byte
            if decl.body.type in _BODIES:  # Go's `interface {` starts with its keyword, not its brace
                brace = next((c for c in decl.body.children if c.type == "{"), None)
                end = brace.start_byte if brace is not None else end
        start, parts = decl.node.start_byte, []
        for annotation in self.decorator_nodes(decl):  # annotations are `decorators`, not signature
            if start <= annotation.start_byte and annotation.end_byte <= end:
                parts.append(self.src[start : annotation.start_byte])
                start = annotation.end_byte
        parts.append(self.src[start:end])
        text = _one_line(b"".join(parts).decode("utf-8", "replace")).removesuffix(";").rstrip()
        return decl.sig_prefix + text

    def docstring(self, decl: _Decl) -> str | None:
        top = decl.node
        before = top.prev_named_sibling
        while before is not None and before.type == "decorator":  # a TypeScript member's doc sits above decorators
            top, before = before, before.prev_named_sibling
        if self.language == "go":  # consecutive `//` lines directly above
            lines: list[str] = []
            while before is not None and before.type == "comment" and before.end_point.row == top.start_point.row - 1:
                if not _text(before).startswith("//"):
                    break
                lines.insert(0, _text(before))
                top, before = before, before.prev_named_sibling
            return _doc_comment("\n".join(lines)) if lines else None
        is_doc = before is not None and before.type in self.syntax.comments and _text(before).startswith("/**")
        if is_doc and before.end_point.row >= top.start_point.row - 1:
            return _doc_comment(_text(before))
        return None

    def member_lines(self, body: Node) -> list[str]:
        lines, constants = [], []
        for member in _members(body, self.syntax):
            if member.type in _ENUM_CONSTANTS:
                name = _name(member) or next((_text(c) for c in member.named_children), "")
                constants.append(name)
                continue
            decls = list(_declarations(member, self.syntax, False))
            for decl in decls:
                stub = " { ... }" if decl.kind == "class" or decl.body is not None else self.syntax.stub_end
                lines.extend(self.decorators(decl))
                lines.append(self.signature(decl) + stub)
            if not decls and member.type in self.syntax.fields:
                field = _one_line(_text(member))
                lines.append(field if field.endswith(";") or not self.syntax.stub_end else field + ";")
        if constants:
            lines.insert(0, ", ".join(constants) + (";" if self.syntax.stub_end else ""))
        return lines

    def class_summary(self, cls: _Decl) -> str:
        """The type as a model sees it around one of its members: header, fields and member signatures."""
        key = (cls.node.start_byte, cls.node.end_byte)
        if key not in self.summaries:
            members = self.member_lines(cls.body) if cls.body is not None else []
            header = [*self.decorators(cls), self.signature(cls) + " {"]
            self.summaries[key] = "\n".join([*header, *(_INDENT + m for m in members), "}"])
        return self.summaries[key]

    def go_summary(self, owner: str) -> str:
        """A Go type is its struct or interface plus the methods declared on it anywhere in the file."""
        lines = [self.class_summary(self.go_types[owner])] if owner in self.go_types else []
        lines += [self.signature(m) + " { ... }" for m in self.go_methods.get(owner, [])]
        return "\n".join(lines)


def extract_treesitter_units(
    text: str, source: str, path: str, language: str, file_sha256: str
) -> tuple[list[dict], list[Quarantined]]:
    """Classes, methods and functions of one source file as code unit records, and what had to be quarantined."""
    if language not in SUPPORTED_LANGUAGES:
        return [], [Quarantined(source, path, STAGE, f"unsupported language {language!r}")]
    try:
        return _Extractor(text, source, path, language, file_sha256).run()
    except Exception as err:  # one odd file must not stop discovery of the others
        return [], [Quarantined(source, path, STAGE, f"extractor failed: {type(err).__name__}: {err}")]
