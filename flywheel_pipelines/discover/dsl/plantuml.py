"""Domain models as PlantUML class diagrams: code units -> model -> canonical PlantUML text -> model.

The model is plain JSON data (`schemas/domain_model.schema.json`): classes with their stereotype, fields and methods,
and typed relations between them. `domain_model_from_units` builds one from the class units of one source;
`render` writes the canonical diagram; `parse` reads it back — and reads what a model writes, which is rarely
canonical: prose and code fences around the diagram, `interface`/`abstract class`/`enum` declarations, classes without
a body, separators, comments, Java-style members (`String name`), arrows written either way round (`Child --|> Base`),
skinparams, notes and packages. `validate` adds the checks a diagram needs to mean something: every relation names
declared classes, names are unique, members are not declared twice, and inheritance has no cycles.

What `domain_model_from_units` extracts, per language (only the unit's own `signature` and `body` are read: Python
with `ast`, the others with the small scanner and regexes below, because a model's training data must not depend on
a compiler for every language):

- python: class-level annotated and plain assignments (an Enum's become its constants), `self.x = ...` in
  `__init__`/`__post_init__` (typed by its annotation, or by the annotated parameter it copies), methods with parameter
  and return annotations (`self`/`cls` left out); bases give inheritance (a `Protocol` base: implementation); `Protocol`
  makes an interface, `ABC`/`ABCMeta`/`@abstractmethod` abstract, `Enum` bases an enum. Visibility follows the
  naming convention: `_x` protected, `__x` private, anything else public.
- java: field declarations (`int a, b;` gives two), methods and constructors, enum constants, record components;
  `extends` and `implements` from the signature. No modifier means package-private (`~`), except in interfaces.
- kotlin: `val`/`var` properties, primary-constructor `val`/`var` parameters, `fun`s (extension receivers dropped), enum
  entries; supertypes after `:`. Companion objects are left out (the model has no notion of static members).
- typescript/javascript: properties (`#x` is private), constructor parameter properties, `this.x = ...` in the
  constructor, methods and accessors (a setter only when there is no getter of that name); `extends`/`implements`.
- go: struct fields (`a, b int` gives two; an embedded type is a field named after it) and interface methods; methods
  come from the source's method units (`func (s *Store) Add(...)`), since Go declares them outside the type. An
  interface embedding another inherits from it; a struct whose methods cover an interface's implements it.

Relations: a field whose type names another class of the same language gives an association; it is a composition
when the owner is a value type (dataclass, record, Kotlin data class, a Go struct held by value) and an aggregation
when it holds many (list/List<...>/T[]/[]T/map/Set...). Multiplicity is `many`, `0..1` (Optional, `| None`, `T?`) or
`1`; the label is the field. A method parameter or return type naming a class not otherwise related gives a
dependency. Bases and field types outside the model give no relation, so a built model always validates.

Limits: the non-Python readers are heuristics over declaration text: annotations, comments and string literals are
blanked first, but unusual layouts (a Kotlin declaration split before its `:`) may lose a member; Kotlin and
TypeScript property types are only inferred from `= Type(...)`/`= new Type(...)`; function types (Callable, `=>`,
`->`, `func(...)`) give no relation. Go implementation is judged by method names alone. When two classes of a source
share a qualified name, the first (by path) is kept. The model keeps one multiplicity per relation, its far end.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from flywheel_pipelines.discover.dsl import DslError, DslSyntaxError

STEREOTYPES = ("class", "interface", "enum", "abstract")
RELATION_KINDS = ("association", "composition", "aggregation", "inheritance", "implementation", "dependency")
VISIBILITIES = ("+", "-", "#", "~")

# ---------------------------------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------------------------------

_PLAIN_NAME = re.compile(r"[\w$]+(?:\.[\w$]+)*")
_HEADER_KEYWORD = {"class": "class", "interface": "interface", "enum": "enum", "abstract": "abstract class"}


def _quoted(name: str) -> str:
    """Class names that are not one plain token are quoted, as PlantUML allows, so they read back unchanged."""
    return name if _PLAIN_NAME.fullmatch(name) else f'"{name}"'


def _field_line(f: dict) -> str:
    text = (f.get("visibility") or "") + f["name"]
    return f"{text} : {f['type']}" if f.get("type") else text


def _method_line(m: dict) -> str:
    params = ", ".join(f"{p['name']} : {p['type']}" if p.get("type") else p["name"] for p in m["parameters"])
    text = f"{m.get('visibility') or ''}{m['name']}({params})"
    return f"{text} : {m['return_type']}" if m.get("return_type") else text


def _relation_line(r: dict) -> str:
    source, target = _quoted(r["source"]), _quoted(r["target"])
    far = f' "{r["multiplicity"]}" ' if r.get("multiplicity") else " "
    near = ' "1" ' if r.get("multiplicity") else " "  # the model keeps the far end; one owner is PlantUML's default
    kind = r["kind"]
    if kind in ("inheritance", "implementation"):
        # The parent on the left, as class diagrams are read top-down: `Base <|-- Child`.
        arrow = "<|--" if kind == "inheritance" else "<|.."
        line = f"{target}{far}{arrow}{near}{source}"
    else:
        arrow = {"composition": "*--", "aggregation": "o--", "association": "-->", "dependency": "..>"}[kind]
        line = f"{source}{near}{arrow}{far}{target}"
    return f"{line} : {r['label']}" if r.get("label") else line


def render(model: dict) -> str:
    """The canonical PlantUML class diagram of `model`: classes in model order, then relations, then `@enduml`."""
    lines = ["@startuml"]
    if model.get("title"):
        lines.append(f"title {model['title']}")
    for cls in model["classes"]:
        lines.append("")
        lines.append(f"{_HEADER_KEYWORD[cls['stereotype']]} {_quoted(cls['name'])} {{")
        lines.extend(f"  {_field_line(f)}" for f in cls["fields"])
        lines.extend(f"  {_method_line(m)}" for m in cls["methods"])
        lines.append("}")
    if model["relations"]:
        lines.append("")
        lines.extend(_relation_line(r) for r in model["relations"])
    lines.append("@enduml")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------------------------
# Bracket-aware text helpers (shared by the diagram parser and the source readers)
# ---------------------------------------------------------------------------------------------------------------------

_OPEN, _CLOSE = "([{<", ")]}>"


def _is_arrow_tip(text: str, i: int) -> bool:
    """`>` of `=>`/`->` is an arrow, not the end of a generic argument list."""
    return text[i] == ">" and i > 0 and text[i - 1] in "=-"


def _split_top(text: str, sep: str = ",") -> list[str]:
    """`text` split at `sep` outside brackets: `a: Map<K, V>, b: int` -> two parts."""
    parts, depth, start = [], 0, 0
    for i, c in enumerate(text):
        if c in _OPEN and not (c == "<" and text[i + 1 : i + 2] == "="):
            depth += 1
        elif c in _CLOSE and not _is_arrow_tip(text, i):
            depth = max(0, depth - 1)
        elif c == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def _find_top(text: str, wanted: str) -> int:
    """Index of the first `wanted` character outside brackets (a plain `=`, not `==`, `=>`, `<=`...), or -1."""
    depth = 0
    for i, c in enumerate(text):
        compound = c == "=" and (text[i + 1 : i + 2] in ("=", ">") or (i > 0 and text[i - 1] in "=!<>"))
        if c == wanted and depth == 0 and not compound:
            return i
        if c in _OPEN and not (c == "<" and text[i + 1 : i + 2] == "="):
            depth += 1
        elif c in _CLOSE and not _is_arrow_tip(text, i):
            depth = max(0, depth - 1)
    return -1


def _matching(text: str, start: int) -> int:
    """Index of the bracket closing the one at `start` (counting only that bracket pair), or -1."""
    opening = text[start]
    closing = _CLOSE[_OPEN.index(opening)]
    depth = 0
    for i in range(start, len(text)):
        if text[i] == opening:
            depth += 1
        elif text[i] == closing and not (closing == ">" and _is_arrow_tip(text, i)):
            depth -= 1
            if depth == 0:
                return i
    return -1


def _collapse(text: str) -> str:
    return " ".join(text.split())


def _or_none(text: str | None) -> str | None:
    text = _collapse(text or "")
    return text or None


# ---------------------------------------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------------------------------------

# A name may be dotted (Outer.Inner) but never ends in a dot, so `A..>B` reads as A, `..>`, B.
_NAME = r'(?:"[^"\n]*"|[\w$]+(?:\.[\w$]+)*)'
_HEADER = re.compile(
    r"^(?P<kw>abstract\s+class|abstract|class|interface|enum|struct|entity|exception|protocol|annotation|metaclass"
    r"|record|dataclass)\s+(?P<name>" + _NAME + r")(?P<generic>\s*<(?!<)[^<>]*(?:<[^<>]*>[^<>]*)*>)?"
    r"(?:\s+as\s+(?P<alias>[\w.$]+))?(?P<rest>.*?)\s*(?P<brace>\{\s*(?P<closed>\})?)?$"
)
_KEYWORD_STEREOTYPE = {"abstract": "abstract", "interface": "interface", "protocol": "interface", "enum": "enum"}
_ARROW = (
    r"(?P<left><\||<|\*|o)?(?P<line>-+|\.+)(?:(?:up|down|left|right|u|d|l|r|\[[^\]]*\])(?:-+|\.+))?"
    r"(?P<right>\|>|>|\*|o)?"
)
_RELATION = re.compile(
    rf'^(?P<a>{_NAME})\s*(?:"(?P<am>[^"]*)"\s*)?{_ARROW}\s*(?:"(?P<bm>[^"]*)"\s*)?(?P<b>{_NAME})'
    r"\s*(?::\s*(?P<label>.*?))?\s*$"
)
_SEPARATOR = re.compile(r"^(-{2,}|\.{2,}|={2,}|_{2,})(\s.*)?$")
_MODIFIER = re.compile(r"^\{(static|abstract|classifier|field|method)\}\s*")
_IDENT = r"(?:[^\W\d][\w$]*|\$[\w$]*)"
_MEMBER_NAME = re.compile(rf"^{_IDENT}$")
_PARAM_NAME = re.compile(rf"^(?:\.\.\.|\*{{1,2}})?{_IDENT}$")
_ENUM_VALUE = re.compile(rf"^({_IDENT})\s*[,;]?$")
# Statements that only change the picture; a trailing `{` opens a block (skinparam class {...}) skipped whole.
_IGNORED = re.compile(
    r"^(skinparam|hide|show|remove|restore|left to right direction|top to bottom direction|scale|set|header|footer"
    r"|caption|newpage|allowmixing|allow_mixing|!)\b",
    re.IGNORECASE,
)
_PACKAGE = re.compile(r"^(package|namespace|together|frame|folder|node|rectangle|cloud|database)\b[^{]*\{\s*$")
_NOTE_ALIAS = re.compile(r'^note\s+"[^"]*"\s+as\s+([\w.$]+)\s*$|^note\s+as\s+([\w.$]+)\s*$')


@dataclass
class _Parsed:
    """A model as far as the text allows, the errors met, and where each part was written (for `validate`)."""

    model: dict
    errors: list[DslError] = field(default_factory=list)
    class_lines: list[int] = field(default_factory=list)
    member_lines: list[tuple[list[int], list[int]]] = field(default_factory=list)
    relation_lines: list[int] = field(default_factory=list)


def _unquote(name: str) -> str:
    return name[1:-1] if name.startswith('"') and name.endswith('"') else name


def _parse_param(text: str) -> dict | None:
    text = text.strip()
    colon = _find_top(text, ":")
    if colon >= 0:
        name, type_ = text[:colon].strip(), text[colon + 1 :].strip() or None
        if type_ is None:
            return None
    else:
        # No colon: `name` alone, or Java-style `Type name`, which PlantUML also accepts.
        words = text.rsplit(None, 1)
        name, type_ = words[-1] if words else "", (words[0] if len(words) == 2 else None)
    return {"name": name, "type": type_} if _PARAM_NAME.match(name) else None


def _parse_member(text: str, enum: bool) -> tuple[str, dict] | None:
    """('field'|'method', member) for one line of a class body, or None when it cannot be read."""
    if enum and (value := _ENUM_VALUE.match(text)):
        return "field", {"name": value.group(1), "type": None, "visibility": None}
    visibility = None
    while m := _MODIFIER.match(text):
        text = text[m.end() :]
    if text[:1] in VISIBILITIES:
        visibility, text = text[0], text[1:].lstrip()
    while m := _MODIFIER.match(text):  # `{static}` may come before or after the visibility
        text = text[m.end() :]
    paren, colon = _find_top(text, "("), _find_top(text, ":")
    if paren >= 0 and (colon < 0 or paren < colon):
        end = _matching(text, paren)
        if end < 0:
            return None
        head, inner, tail = text[:paren].strip(), text[paren + 1 : end], text[end + 1 :].strip()
        words = head.rsplit(None, 1)
        name, returns = (words[-1] if words else ""), (words[0] if len(words) == 2 else None)
        if tail:
            if not tail.startswith(":") or returns is not None or not tail[1:].strip():
                return None
            returns = tail[1:].strip()
        params = [_parse_param(p) for p in _split_top(inner)] if inner.strip() else []
        if not _MEMBER_NAME.match(name) or any(p is None for p in params):
            return None
        return "method", {"name": name, "parameters": params, "return_type": returns, "visibility": visibility}
    if colon >= 0:
        name, type_ = text[:colon].strip(), text[colon + 1 :].strip()
        if not type_:
            return None
    else:
        words = text.rsplit(None, 1)
        name, type_ = (words[-1] if words else ""), (words[0] if len(words) == 2 else None)
    if not _MEMBER_NAME.match(name):
        return None
    return "field", {"name": name, "type": type_, "visibility": visibility}


def _relation_from(match: re.Match, at: int, errors: list[DslError]) -> dict | None:
    """The model relation an arrow means: which end is the source depends on where the head is drawn."""
    a, b = _unquote(match["a"]), _unquote(match["b"])
    left, right, dotted = match["left"], match["right"], match["line"].startswith(".")
    label = match["label"] or None
    if left and right:
        if left == "<" and right == ">":
            kind, source, target, far = "association", a, b, match["bm"]
        elif left in "*o" and right == ">":
            kind, source, target, far = ("composition" if left == "*" else "aggregation"), a, b, match["bm"]
        elif left == "<" and right in "*o":
            kind, source, target, far = ("composition" if right == "*" else "aggregation"), b, a, match["am"]
        else:
            errors.append(DslError(f"line {at}", "relation", f"arrow '{match.group(0)}' has two incompatible heads"))
            return None
    elif left == "<|" or right == "|>":
        kind = "implementation" if dotted else "inheritance"
        source, target, far = (b, a, match["am"]) if left else (a, b, match["bm"])
    elif left in ("*", "o") or right in ("*", "o"):
        kind = "composition" if "*" in (left, right) else "aggregation"
        source, target, far = (a, b, match["bm"]) if left else (b, a, match["am"])
    else:
        kind = "dependency" if dotted else "association"
        source, target, far = (b, a, match["am"]) if left == "<" else (a, b, match["bm"])
    return {"source": source, "target": target, "kind": kind, "label": label, "multiplicity": far or None}


def _diagram_bounds(lines: list[str], errors: list[DslError]) -> tuple[int, int] | None:
    """First `@startuml` and the `@enduml` after it; prose and fences around them are not the diagram."""
    start = next((i for i, line in enumerate(lines) if line.strip().lower().startswith("@startuml")), None)
    end = None
    if start is not None:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].strip().lower() == "@enduml"), None)
    if start is None:
        errors.append(DslError("line 1", "@startuml", "missing: a class diagram starts with a line '@startuml'"))
        if not any(line.strip().lower() == "@enduml" for line in lines):
            errors.append(
                DslError(f"line {max(len(lines), 1)}", "@enduml", "missing: the diagram must end with '@enduml'")
            )
        return None
    if end is None:
        errors.append(
            DslError(
                f"line {len(lines)}",
                "@enduml",
                f"missing: the diagram opened by '@startuml' at line {start + 1} never ends with '@enduml'",
            )
        )
        end = len(lines)
    return start, end


def _parse(text: str) -> _Parsed:
    lines = text.splitlines()
    parsed = _Parsed(model={"title": None, "classes": [], "relations": []})
    errors, model = parsed.errors, parsed.model
    bounds = _diagram_bounds(lines, errors)
    if bounds is None:
        return parsed
    current: dict | None = None  # the class whose body is open
    opened_at = 0
    packages: list[int] = []  # lines of open package/namespace blocks
    skip_until: re.Pattern | None = None  # inside a note, legend or block comment
    skip_depth = 0  # inside a skinparam {...} block
    notes: set[str] = set()
    in_comment = False
    for index in range(bounds[0] + 1, bounds[1]):
        at, line = index + 1, lines[index].strip()
        if in_comment:
            in_comment = "'/" not in line
            continue
        if line.startswith("/'"):
            in_comment = "'/" not in line[2:]
            continue
        if skip_until is not None:
            if skip_until.match(line):
                skip_until = None
            continue
        if skip_depth:
            skip_depth += line.count("{") - line.count("}")
            continue
        if not line or line.startswith("'") or line.startswith("```"):
            continue
        if current is not None:
            if line == "}":
                current = None
                continue
            if _HEADER.match(line) or _RELATION.match(line):
                # A class or relation inside a body: the model forgot a `}`. Say so, and read on from this line.
                errors.append(DslError(f"line {opened_at}", "class", f"unclosed '{{' of class {current['name']}"))
                current = None
            else:
                if _SEPARATOR.match(line):
                    continue
                member = _parse_member(line, current["stereotype"] == "enum")
                if member is None:
                    errors.append(DslError(f"line {at}", "member", f"cannot read '{line}' as a field or a method"))
                    continue
                kind, value = member
                current["fields" if kind == "field" else "methods"].append(value)
                parsed.member_lines[-1][0 if kind == "field" else 1].append(at)
                continue
        if line.lower().startswith("@startuml") or line.lower() == "@enduml":
            errors.append(DslError(f"line {at}", "diagram", f"'{line}' inside the diagram"))
            continue
        if title := re.match(r"title(?:\s+(.*))?$", line):
            if title.group(1):
                model["title"] = title.group(1).strip()
            else:
                errors.append(DslError(f"line {at}", "title", "a title line needs text after 'title'"))
            continue
        if header := _HEADER.match(line):
            current = _declare(header, at, parsed)
            opened_at = at
            if not header["brace"] or header["closed"]:
                current = None
            continue
        if relation := _RELATION.match(line):
            if {_unquote(relation["a"]), _unquote(relation["b"])} & notes or "[hidden]" in relation.group(0):
                continue  # a note's connector or a layout hint, not a relation between classes
            value = _relation_from(relation, at, errors)
            if value is not None:
                model["relations"].append(value)
                parsed.relation_lines.append(at)
            continue
        if line == "}":
            if packages:
                packages.pop()
            else:
                errors.append(DslError(f"line {at}", "}", "closes no class or package"))
            continue
        if _PACKAGE.match(line):
            packages.append(at)
            continue
        if _IGNORED.match(line):
            skip_depth = 1 if line.endswith("{") else 0
            continue
        if line.lower().startswith("legend"):
            skip_until = re.compile(r"^end\s*legend\b", re.IGNORECASE)
            continue
        if line.lower().startswith("note"):
            alias = _NOTE_ALIAS.match(line)
            if alias:
                notes.add(alias.group(1) or alias.group(2))
            # One-line notes carry their text after ':' (or are `note "text" as N`); others run to `end note`.
            if ":" not in line and not (alias and alias.group(1)):
                skip_until = re.compile(r"^end\s*note\b", re.IGNORECASE)
            continue
        errors.append(DslError(f"line {at}", "statement", f"cannot read '{line}' as a class, a relation or PlantUML"))
    if current is not None:
        errors.append(DslError(f"line {opened_at}", "class", f"unclosed '{{' of class {current['name']}"))
    errors.extend(DslError(f"line {at}", "package", "unclosed '{' of a package") for at in packages)
    return parsed


def _declare(header: re.Match, at: int, parsed: _Parsed) -> dict:
    """Add the class a header line declares (with the relations an `extends`/`implements` clause states)."""
    keyword = header["kw"].split()[0]
    name = header["alias"] or _unquote(header["name"])  # relations refer to `class "Long Name" as LN` by its alias
    cls = {"name": name, "stereotype": _KEYWORD_STEREOTYPE.get(keyword, "class"), "fields": [], "methods": []}
    parsed.model["classes"].append(cls)
    parsed.class_lines.append(at)
    parsed.member_lines.append(([], []))
    rest = re.sub(r"<<[^>]*>>|#\S+", " ", header["rest"]).strip()
    clauses = re.fullmatch(r"(?:extends\s+(?P<ext>[^{]*?))?\s*(?:implements\s+(?P<impl>[^{]*?))?", rest)
    if clauses is None:
        parsed.errors.append(DslError(f"line {at}", "class", f"cannot read '{rest}' after class {name}"))
        return cls
    for group, kind in (("ext", "inheritance"), ("impl", "implementation")):
        for base in _split_top(clauses[group] or ""):
            if base := _unquote(base.strip()):
                relation = {"source": name, "target": base, "kind": kind, "label": None, "multiplicity": None}
                parsed.model["relations"].append(relation)
                parsed.relation_lines.append(at)
    return cls


def parse(text: str) -> dict:
    """The domain model a PlantUML class diagram describes; `DslSyntaxError` with every problem when it is not one."""
    parsed = _parse(text)
    if parsed.errors:
        raise DslSyntaxError(parsed.errors)
    return parsed.model


# ---------------------------------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------------------------------


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components that are cycles (Tarjan), each sorted; a self-loop counts."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1 or node in edges.get(node, ()):
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return sorted(found)


def validate(text: str) -> list[DslError]:
    """Every problem of a diagram: syntax errors, then relations to undeclared classes, duplicate classes and
    members, empty class names, implementation of a non-interface, and inheritance cycles."""
    parsed = _parse(text)
    errors = list(parsed.errors)
    classes = parsed.model["classes"]
    stereotypes: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for cls, at, (field_lines, method_lines) in zip(classes, parsed.class_lines, parsed.member_lines, strict=True):
        name = cls["name"]
        if not name.strip():
            errors.append(DslError(f"line {at}", "name", "a class needs a name"))
            continue
        if name in first_line:
            errors.append(DslError(f"class {name}", "name", f"declared twice (lines {first_line[name]} and {at})"))
        else:
            first_line[name] = at
            stereotypes[name] = cls["stereotype"]
        seen: dict[object, int] = {}
        for f, line in zip(cls["fields"], field_lines, strict=True):
            if f["name"] in seen:
                errors.append(
                    DslError(
                        f"class {name}", "field", f"'{f['name']}' declared twice (lines {seen[f['name']]} and {line})"
                    )
                )
            seen.setdefault(f["name"], line)
        signatures: dict[tuple, int] = {}
        for m, line in zip(cls["methods"], method_lines, strict=True):
            key = (m["name"], tuple(p["type"] for p in m["parameters"]))
            if key in signatures:
                errors.append(
                    DslError(
                        f"class {name}",
                        "method",
                        f"'{m['name']}' with these parameter types declared twice (lines {signatures[key]} and {line})",
                    )
                )
            signatures.setdefault(key, line)
    parents: dict[str, set[str]] = defaultdict(set)
    for r, at in zip(parsed.model["relations"], parsed.relation_lines, strict=True):
        missing = [end for end in (r["source"], r["target"]) if end not in stereotypes]
        for end in dict.fromkeys(missing):
            errors.append(DslError(f"line {at}", "relation", f"'{end}' is not a declared class"))
        if missing:
            continue
        if r["kind"] == "implementation" and stereotypes[r["target"]] != "interface":
            errors.append(
                DslError(
                    f"line {at}",
                    "relation",
                    f"{r['source']} implements {r['target']}, which is {stereotypes[r['target']]}, not an interface",
                )
            )
        if r["kind"] in ("inheritance", "implementation"):
            parents[r["source"]].add(r["target"])
    for cycle in _cycles(parents):
        errors.append(DslError(f"class {cycle[0]}", "relation", f"inheritance cycle through {', '.join(cycle)}"))
    return errors


# ---------------------------------------------------------------------------------------------------------------------
# From code units: the shared raw form
# ---------------------------------------------------------------------------------------------------------------------


@dataclass
class _Field:
    name: str
    type: str | None
    visibility: str | None
    optional: bool = False  # TypeScript `x?:`: the type alone does not say it may be absent


@dataclass
class _Class:
    name: str
    language: str
    path: str
    stereotype: str = "class"
    fields: list[_Field] = field(default_factory=list)
    methods: list[dict] = field(default_factory=list)
    supertypes: list[str] = field(default_factory=list)
    value_type: bool = False  # owns what its fields hold: dataclass, record, Kotlin data class
    go_embeds: list[str] = field(default_factory=list)  # interfaces an interface embeds

    def add_field(self, f: _Field) -> None:
        # First declaration wins: a dataclass field and a `self.x =` assignment are one attribute.
        if _MEMBER_NAME.match(f.name) and all(g.name != f.name for g in self.fields):
            self.fields.append(f)

    def add_method(self, name: str, params: list[dict], returns: str | None, visibility: str | None) -> None:
        if not _MEMBER_NAME.match(name) or not all(_PARAM_NAME.match(p["name"]) for p in params):
            return  # Kotlin `backtick names` and the like cannot be written as a PlantUML member
        key = (name, [p["type"] for p in params])
        if any((m["name"], [p["type"] for p in m["parameters"]]) == key for m in self.methods):
            return  # overload declarations repeated by their implementation
        self.methods.append({"name": name, "parameters": params, "return_type": returns, "visibility": visibility})


def _param(name: str, type_: str | None) -> dict:
    return {"name": name, "type": _or_none(type_)}


# ---------------------------------------------------------------------------------------------------------------------
# Python
# ---------------------------------------------------------------------------------------------------------------------

_ENUM_BASES = {"Enum", "IntEnum", "StrEnum", "Flag", "IntFlag", "ReprEnum"}
_VALUE_BASES = {"NamedTuple", "TypedDict", "BaseModel"}
_VALUE_DECORATORS = {"dataclass", "define", "frozen", "mutable", "attr.s", "attr.attrs", "attrs.define"}


def _python_visibility(name: str) -> str:
    if name.startswith("__") and not name.endswith("__"):
        return "-"  # name-mangled: private
    return "#" if name.startswith("_") and not name.endswith("__") else "+"


def _unstring(node: ast.expr) -> ast.expr:
    """Forward references (`"Order"`, `list["Order"]`) read as the names they quote."""

    class Unquote(ast.NodeTransformer):
        def visit_Constant(self, const: ast.Constant) -> ast.AST:
            if isinstance(const.value, str):
                try:
                    return ast.parse(const.value, mode="eval").body
                except SyntaxError:
                    return const
            return const

    return Unquote().visit(node)


def _annotation(node: ast.expr | None) -> str | None:
    return _or_none(ast.unparse(_unstring(node))) if node is not None else None


def _python_params(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> list[dict]:
    args = fn.args
    positional = [*args.posonlyargs, *args.args]
    decorators = {ast.unparse(d).split("(")[0].rsplit(".", 1)[-1] for d in fn.decorator_list}
    if positional and "staticmethod" not in decorators:
        positional = positional[1:]  # self / cls: the diagram shows what a caller passes
    params = [_param(a.arg, _annotation(a.annotation)) for a in positional]
    if args.vararg:
        params.append(_param("*" + args.vararg.arg, _annotation(args.vararg.annotation)))
    params += [_param(a.arg, _annotation(a.annotation)) for a in args.kwonlyargs]
    if args.kwarg:
        params.append(_param("**" + args.kwarg.arg, _annotation(args.kwarg.annotation)))
    return params


def _python_class(unit: dict) -> _Class:
    cls = _Class(unit["qualified_name"], "python", unit["path"])
    try:
        header = ast.parse(unit["signature"].rstrip(":") + ": pass").body[0]
    except SyntaxError:
        header = None
    if isinstance(header, ast.ClassDef):
        bases = [ast.unparse(b) for b in header.bases]
        simple = {re.split(r"[\[(]", b)[0].rsplit(".", 1)[-1] for b in bases}
        meta = [ast.unparse(k.value).rsplit(".", 1)[-1] for k in header.keywords if k.arg == "metaclass"]
        if simple & _ENUM_BASES:
            cls.stereotype = "enum"
        elif "Protocol" in simple:
            cls.stereotype = "interface"
        elif "ABC" in simple or "ABCMeta" in meta:
            cls.stereotype = "abstract"
        cls.supertypes = [re.split(r"\[", b)[0] for b in bases]
        cls.value_type = bool(simple & _VALUE_BASES)
    decorators = {re.sub(r"^@|\(.*$", "", d.strip(), flags=re.S) for d in unit.get("decorators", [])}
    cls.value_type |= any(d in _VALUE_DECORATORS or d.rsplit(".", 1)[-1] == "dataclass" for d in decorators)
    try:
        body = ast.parse(unit["body"]).body
    except SyntaxError:
        return cls  # the unit's body was not Python after all; the class still appears, without members
    constructors = []
    for stmt in body:
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            name = stmt.target.id
            cls.add_field(_Field(name, _annotation(stmt.annotation), _python_visibility(name)))
        elif isinstance(stmt, ast.Assign):
            for target in stmt.targets:
                if isinstance(target, ast.Name) and not target.id.startswith("__"):
                    if cls.stereotype == "enum":
                        cls.add_field(_Field(target.id, None, None))  # an enum constant, written bare
                    else:
                        cls.add_field(_Field(target.id, None, _python_visibility(target.id)))
        elif isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
            names = {ast.unparse(d).split("(")[0].rsplit(".", 1)[-1] for d in stmt.decorator_list}
            if "abstractmethod" in names and cls.stereotype == "class":
                cls.stereotype = "abstract"
            cls.add_method(stmt.name, _python_params(stmt), _annotation(stmt.returns), _python_visibility(stmt.name))
            if stmt.name in ("__init__", "__post_init__"):
                constructors.append(stmt)
    for fn in constructors:
        annotated = {
            a.arg: _annotation(a.annotation) for a in [*fn.args.posonlyargs, *fn.args.args, *fn.args.kwonlyargs]
        }
        for node in ast.walk(fn):
            targets: list[tuple[ast.expr, str | None]] = []
            if isinstance(node, ast.AnnAssign):
                targets = [(node.target, _annotation(node.annotation))]
            elif isinstance(node, ast.Assign):
                # `self.rate = rate` copies a parameter: its annotation is the attribute's type.
                copied = annotated.get(node.value.id) if isinstance(node.value, ast.Name) else None
                targets = [(t, copied) for t in node.targets]
            for target, type_ in targets:
                if (
                    isinstance(target, ast.Attribute)
                    and isinstance(target.value, ast.Name)
                    and target.value.id == "self"
                ):
                    cls.add_field(_Field(target.attr, type_, _python_visibility(target.attr)))
    return cls


# ---------------------------------------------------------------------------------------------------------------------
# Other languages: a declaration scanner over the body text
# ---------------------------------------------------------------------------------------------------------------------

# Strings and comments are blanked first so their braces, quotes and semicolons cannot end a declaration.
_NOISE = re.compile(
    r'"""[\s\S]*?"""|"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'|`(?:\\.|[^`\\])*`|/\*[\s\S]*?\*/|//[^\n]*'
)
_ANNOTATION = re.compile(r"(?<![\w$])@[\w.:]+\s*")
# A line ending in one of these (or a next line starting with one) continues the declaration.
_CONTINUES_AFTER = ("=", ",", ".", ":", "(", "[", "+", "*", "/", "&", "|", "?", "->", "=>", "<")
_CONTINUES_BEFORE = (".", "?", ":", "=", "|", "&")


def _blank(text: str) -> str:
    def repl(m: re.Match) -> str:
        token = m.group(0)
        if token.startswith(("//", "/*")):
            return " " + "\n" * token.count("\n")
        return '""' + "\n" * token.count("\n")

    return _NOISE.sub(repl, text)


def _strip_annotations(text: str) -> str:
    """Remove `@Name` and `@Name(args)`: annotations and decorators say nothing the diagram shows."""
    out, pos = [], 0
    while m := _ANNOTATION.search(text, pos):
        out.append(text[pos : m.start()])
        pos = m.end()
        if text[pos : pos + 1] == "(":
            end = _matching(text, pos)
            pos = len(text) if end < 0 else end + 1
    out.append(text[pos:])
    return "".join(out)


@dataclass
class _Segment:
    header: str  # the declaration, whitespace collapsed
    block: str | None  # the text inside the `{...}` that ends it, if one does


def _segments(clean: str, newline_ends: bool) -> list[_Segment]:
    """Top-level declarations of a blanked class body. A declaration ends at `;`, at a `{...}` block (unless it is
    an initializer's value, `x = foo { ... }`), and — outside Java — at a line end that does not continue it."""
    segments: list[_Segment] = []
    current: list[str] = []
    depth = 0  # ( and [
    i = 0

    def flush(block: str | None = None) -> None:
        header = _collapse("".join(current))
        if header or block is not None:
            segments.append(_Segment(header, block))
        current.clear()

    while i < len(clean):
        c = clean[i]
        if c in "([":
            depth += 1
        elif c in ")]":
            depth = max(0, depth - 1)
        elif c == "{":
            end = _matching(clean, i)
            end = len(clean) - 1 if end < 0 else end
            if depth > 0 or _find_top("".join(current), "=") >= 0:
                current.append(" {} ")  # a lambda or initializer value: part of this declaration
            else:
                flush(clean[i + 1 : end])
            i = end + 1
            continue
        elif c == ";" and depth == 0:
            flush()
            i += 1
            continue
        elif c == "\n" and depth == 0 and newline_ends:
            before = "".join(current).rstrip()
            after = clean[i + 1 :].lstrip()
            if before and not before.endswith(_CONTINUES_AFTER) and not after.startswith(_CONTINUES_BEFORE):
                flush()
                i += 1
                continue
        current.append(c)
        i += 1
    flush()
    return [s for s in segments if s.header or s.block]


def _enum_constants(clean: str) -> tuple[list[str], str]:
    """Java/Kotlin enum constants (the list before the first top-level `;`) and the body after them."""
    depth, end = 0, len(clean)
    for i, c in enumerate(clean):
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif c == ";" and depth == 0:
            end = i
            break
    head = _strip_annotations(clean[:end])
    names = []
    while (flat := re.sub(r"\{[^{}]*\}", "", head)) != head:  # constant bodies, innermost first
        head = flat
    for item in _split_top(head):
        item = item.strip()
        if not item:
            continue
        m = re.fullmatch(rf"({_IDENT})\s*(\(.*\))?\s*(\{{.*\}})?", item, re.S)
        if m is None:
            return [], clean  # not a constant list: an enum whose body starts with members
        names.append(m.group(1))
    return names, clean[end + 1 :]


def _type_params_stripped(text: str) -> str:
    """`<T> List<T> name` -> `List<T> name`: a generic method's type parameters are not its return type."""
    text = text.lstrip()
    if text.startswith("<"):
        end = _matching(text, 0)
        if end > 0:
            return text[end + 1 :].lstrip()
    return text


def _words(text: str, modifiers: frozenset[str]) -> tuple[set[str], str]:
    """Leading modifier keywords of a declaration, and what follows them."""
    found = set()
    while True:
        m = re.match(r"([\w-]+)\s+", text)
        if m is None or m.group(1) not in modifiers:
            return found, text
        found.add(m.group(1))
        text = text[m.end() :]


def _keywords(text: str) -> frozenset[str]:
    return frozenset(text.split())


# --- Java ------------------------------------------------------------------------------------------------------------

_JAVA_MODIFIERS = _keywords(
    "public protected private static final abstract synchronized native transient volatile default strictfp"
    " sealed non-sealed"
)
_NESTED_TYPE = re.compile(r"(^|\s)(class|interface|enum|record)\s+[\w$]")


def _java_visibility(modifiers: set[str], in_interface: bool) -> str:
    for word, mark in (("public", "+"), ("private", "-"), ("protected", "#")):
        if word in modifiers:
            return mark
    return "+" if in_interface else "~"  # interface members are implicitly public; others package-private


def _java_params(inner: str) -> list[dict]:
    params = []
    for part in _split_top(_strip_annotations(inner)):
        _, part = _words(part.strip(), frozenset({"final"}))
        m = re.fullmatch(r"(.+?)\s*(\.\.\.)?\s+([\w$]+)", part.strip(), re.S)
        if m:
            params.append(_param(m.group(3), m.group(1) + (m.group(2) or "")))
    return params


def _java_member(cls: _Class, header: str, in_interface: bool) -> None:
    header = _strip_annotations(header).strip()
    paren, assign = _find_top(header, "("), _find_top(header, "=")
    before = header[: paren if paren >= 0 else len(header)]
    if not header or _NESTED_TYPE.search(before if assign < 0 else header[:assign]):
        return
    if paren >= 0 and (assign < 0 or paren < assign):
        modifiers, pre = _words(header[:paren], _JAVA_MODIFIERS)
        pre = _type_params_stripped(pre)
        end = _matching(header, paren)
        m = re.fullmatch(r"(?:(.+?)\s+)?([\w$]+)\s*", pre, re.S)
        if m is None or end < 0:
            return
        cls.add_method(
            m.group(2),
            _java_params(header[paren + 1 : end]),
            _or_none(m.group(1)),
            _java_visibility(modifiers, in_interface),
        )
        return
    modifiers, rest = _words(header, _JAVA_MODIFIERS)
    declarators = _split_top(rest)
    first = re.fullmatch(r"(.+?)\s+([\w$]+)\s*(?:\[\s*\])?", declarators[0].split("=")[0].strip(), re.S)
    if first is None:
        return
    type_, visibility = first.group(1), _java_visibility(modifiers, in_interface)
    cls.add_field(_Field(first.group(2), _or_none(type_), visibility))
    for more in declarators[1:]:  # `int a, b = 2;` declares b too
        name = more.split("=")[0].strip()
        cls.add_field(_Field(name, _or_none(type_), visibility))


def _java_class(unit: dict) -> _Class:
    cls = _Class(unit["qualified_name"], "java", unit["path"])
    signature = _strip_annotations(unit["signature"])
    m = re.search(r"\b(class|interface|enum|record)\s+([\w$]+)", signature)
    kind = m.group(1) if m else "class"
    tail = signature[m.end() :] if m else ""
    modifiers, _ = _words(signature[: m.start()] if m else "", _JAVA_MODIFIERS)
    cls.stereotype = {"interface": "interface", "enum": "enum"}.get(
        kind, "abstract" if "abstract" in modifiers else "class"
    )
    tail = tail.lstrip()
    if tail.startswith("<"):
        end = _matching(tail, 0)
        tail = tail[end + 1 :] if end > 0 else tail
    tail = tail.lstrip()
    if kind == "record" and tail.startswith("("):
        end = _matching(tail, 0)
        for p in _java_params(tail[1:end]):
            cls.add_field(_Field(p["name"], p["type"], "-"))  # record components are private final fields
        tail = tail[end + 1 :]
    cls.value_type = kind == "record" or any(re.match(r"@(\w+\.)*(Value|Embeddable)\b", d) for d in unit["decorators"])
    for clause in re.finditer(r"\b(extends|implements)\s+(.*?)(?=\b(?:extends|implements|permits)\b|$)", tail):
        cls.supertypes += [s.strip() for s in _split_top(clause.group(2)) if s.strip()]
    clean = _blank(unit["body"])
    if kind == "enum":
        constants, clean = _enum_constants(clean)
        for name in constants:
            cls.add_field(_Field(name, None, None))
    for segment in _segments(clean, newline_ends=False):
        _java_member(cls, segment.header, kind == "interface")
    return cls


# --- Kotlin ----------------------------------------------------------------------------------------------------------

_KOTLIN_MODIFIERS = _keywords(
    "public private protected internal open override abstract final lateinit const inline suspend operator infix"
    " tailrec external data sealed enum annotation inner value expect actual noinline crossinline companion"
)


def _kotlin_visibility(modifiers: set[str]) -> str:
    for word, mark in (("private", "-"), ("protected", "#"), ("internal", "~")):
        if word in modifiers:
            return mark
    return "+"


def _kotlin_params(inner: str) -> list[tuple[set[str], dict]]:
    """(modifiers incl. val/var, parameter) for each parameter of a Kotlin parameter list."""
    params = []
    for part in _split_top(_strip_annotations(inner)):
        part = part.strip()
        if not part:
            continue
        assign = _find_top(part, "=")
        part = part[:assign] if assign >= 0 else part
        modifiers, part = _words(part, _KOTLIN_MODIFIERS | {"val", "var", "vararg"})
        colon = _find_top(part, ":")
        if colon < 0:
            continue
        type_ = part[colon + 1 :].strip()
        if "vararg" in modifiers:
            type_ += "..."
        params.append((modifiers, _param(part[:colon].strip(), type_)))
    return params


def _kotlin_inferred(initializer: str) -> str | None:
    """`= BigDecimal("1")` is a BigDecimal: a constructor call (capitalised, by convention) names the type."""
    m = re.match(r"\s*([A-Z][\w.]*)\s*(<[^()]*>)?\s*\(", initializer)
    return m.group(1) + (m.group(2) or "") if m else None


def _kotlin_member(cls: _Class, header: str) -> None:
    header = _strip_annotations(header).strip()
    modifiers, rest = _words(header, _KOTLIN_MODIFIERS)
    visibility = _kotlin_visibility(modifiers)
    if m := re.match(r"fun\s+", rest):
        rest = _type_params_stripped(rest[m.end() :])
        paren = _find_top(rest, "(")
        end = _matching(rest, paren) if paren >= 0 else -1
        if end < 0:
            return
        name = rest[:paren].strip().rsplit(".", 1)[-1]  # `fun String.ext()`: the receiver is not the name
        after = rest[end + 1 :]
        returns = None
        if after.lstrip().startswith(":"):
            after = after.lstrip()[1:]
            stop = min([i for i in (_find_top(after, "="), after.find(" where ")) if i >= 0] or [len(after)])
            returns = after[:stop]
        cls.add_method(name, [p for _, p in _kotlin_params(rest[paren + 1 : end])], _or_none(returns), visibility)
    elif rest.startswith("constructor") and (paren := _find_top(rest, "(")) >= 0:
        end = _matching(rest, paren)
        if end > 0:
            cls.add_method("constructor", [p for _, p in _kotlin_params(rest[paren + 1 : end])], None, visibility)
    elif m := re.match(r"(?:val|var)\s+", rest):
        rest = _type_params_stripped(rest[m.end() :])
        assign = _find_top(rest, "=")
        delegate = rest.find(" by ")
        stop = min([i for i in (assign, delegate) if i >= 0] or [len(rest)])
        declaration = rest[:stop]
        colon = _find_top(declaration, ":")
        name = (declaration[:colon] if colon >= 0 else declaration).strip().rsplit(".", 1)[-1]
        type_ = declaration[colon + 1 :] if colon >= 0 else None
        if type_ is None and assign >= 0:
            type_ = _kotlin_inferred(rest[assign + 1 :])
        cls.add_field(_Field(name, _or_none(type_), visibility))


def _kotlin_class(unit: dict) -> _Class:
    cls = _Class(unit["qualified_name"], "kotlin", unit["path"])
    signature = _blank(_strip_annotations(unit["signature"]))
    m = re.search(r"\b(class|interface|object)\s+([\w$]+)", signature)
    modifiers, _ = _words(signature[: m.start()] if m else "", _KOTLIN_MODIFIERS | {"fun"})
    kind = m.group(1) if m else "class"
    if kind == "interface":
        cls.stereotype = "interface"
    elif "enum" in modifiers:
        cls.stereotype = "enum"
    elif modifiers & {"abstract", "sealed"}:
        cls.stereotype = "abstract"
    cls.value_type = bool(modifiers & {"data", "value"})
    clean = _blank(unit["body"])
    if cls.stereotype == "enum":  # constants first, as the enum declares them before anything else
        constants, clean = _enum_constants(clean)
        for name in constants:
            cls.add_field(_Field(name, None, None))
    tail = (signature[m.end() :] if m else "").lstrip()
    if tail.startswith("<"):
        end = _matching(tail, 0)
        tail = tail[end + 1 :].lstrip() if end > 0 else tail
    ctor = re.match(r"(?:(?:public|private|protected|internal)\s+)?constructor\s*", tail)
    tail = tail[ctor.end() :] if ctor else tail
    if tail.startswith("("):
        end = _matching(tail, 0)
        for param_modifiers, p in _kotlin_params(tail[1:end]):
            if param_modifiers & {"val", "var"}:  # only `val`/`var` parameters are properties
                cls.add_field(_Field(p["name"], p["type"], _kotlin_visibility(param_modifiers)))
        tail = tail[end + 1 :]
    if (colon := tail.strip()).startswith(":"):
        supers = re.split(r"\swhere\s", colon[1:])[0]
        for s in _split_top(supers):
            s = re.split(r"\sby\s", s)[0]  # `Iface by delegate`
            s = s.split("(")[0].strip()
            if s:
                cls.supertypes.append(s)
    for segment in _segments(clean, newline_ends=True):
        _kotlin_member(cls, segment.header)
    return cls


# --- TypeScript / JavaScript -----------------------------------------------------------------------------------------

_TS_MODIFIERS = _keywords("public private protected static readonly abstract declare override async accessor")


def _ts_visibility(modifiers: set[str], name: str) -> str:
    if "private" in modifiers or name.startswith("#"):
        return "-"
    return "#" if "protected" in modifiers else "+"


def _ts_params(inner: str) -> list[tuple[set[str], dict]]:
    params = []
    for position, part in enumerate(_split_top(_strip_annotations(inner)), start=1):
        part = part.strip()
        if not part:
            continue
        assign = _find_top(part, "=")
        part = part[:assign].strip() if assign >= 0 else part
        modifiers, part = _words(part, _TS_MODIFIERS)
        colon = _find_top(part, ":")
        name, type_ = (part[:colon], part[colon + 1 :]) if colon >= 0 else (part, None)
        name = name.strip().rstrip("?").strip()
        if name == "this":
            continue  # TypeScript's `this` parameter types the receiver; callers pass nothing
        if not _PARAM_NAME.match(name):
            name = f"arg{position}"  # a destructured parameter `{ a, b }` has no name of its own
        params.append((modifiers, _param(name, type_)))
    return params


def _ts_member(cls: _Class, segment: _Segment, getters: set[str]) -> None:
    header = _strip_annotations(segment.header).strip()
    if not header or header.startswith("["):
        return  # an index signature describes keys, not a member
    modifiers, rest = _words(header, _TS_MODIFIERS)
    accessor = re.match(r"(get|set)\s+(?=[#\w$])", rest)
    if accessor:
        rest = rest[accessor.end() :]
    m = re.match(r"(#?[\w$]+)\s*([?!])?\s*", rest)
    if m is None:
        return
    name, rest = m.group(1), rest[m.end() :]
    visibility = _ts_visibility(modifiers, name)
    rest = _type_params_stripped(rest) if rest.startswith("<") else rest
    if rest.startswith("("):
        end = _matching(rest, 0)
        if end < 0:
            return
        if accessor and accessor.group(1) == "set" and name in getters:
            return  # the getter already shows the property
        params = _ts_params(rest[1:end])
        after = rest[end + 1 :].strip()
        returns = after[1:] if after.startswith(":") else None
        cls.add_method(name.lstrip("#"), [p for _, p in params], _or_none(returns), visibility)
        if name == "constructor":
            for param_modifiers, p in params:  # `constructor(private readonly x: T)` declares a property
                if param_modifiers & {"public", "private", "protected", "readonly"}:
                    cls.add_field(_Field(p["name"], p["type"], _ts_visibility(param_modifiers, p["name"])))
            for this in re.finditer(r"\bthis\.(#?[\w$]+)\s*=(?![=>])", segment.block or ""):
                cls.add_field(_Field(this.group(1).lstrip("#"), None, _ts_visibility(set(), this.group(1))))
        return
    assign = _find_top(rest, "=")
    declaration = rest[:assign] if assign >= 0 else rest
    type_ = declaration.strip()[1:] if declaration.strip().startswith(":") else None
    if type_ is None and assign >= 0 and (new := re.match(r"\s*new\s+([A-Z][\w.$]*)", rest[assign + 1 :])):
        type_ = new.group(1)
    cls.add_field(_Field(name.lstrip("#"), _or_none(type_), visibility, optional=m.group(2) == "?"))


def _ts_class(unit: dict) -> _Class:
    cls = _Class(unit["qualified_name"], unit["language"], unit["path"])
    signature = _blank(_strip_annotations(unit["signature"]))
    m = re.search(r"\b(class|interface)\s+([\w$]+)", signature)
    kind = m.group(1) if m else "class"
    if kind == "interface":
        cls.stereotype = "interface"
    elif re.search(r"\babstract\s+class\b", signature):
        cls.stereotype = "abstract"
    tail = signature[m.end() :] if m else ""
    for clause in re.finditer(r"\b(extends|implements)\s+(.*?)(?=\b(?:extends|implements)\b|$)", tail):
        for s in _split_top(clause.group(2)):
            if base := re.fullmatch(r"\s*([\w$.]+)\s*(<.*>)?\s*", s, re.S):  # `extends mixin(Base)` is no name
                cls.supertypes.append(base.group(1))
    segments = _segments(_blank(unit["body"]), newline_ends=True)
    getters = {
        g.group(1)
        for s in segments
        if (g := re.match(r"(?:[\w$]+\s+)*?get\s+(#?[\w$]+)\s*\(", _strip_annotations(s.header).strip()))
    }
    for segment in segments:
        _ts_member(cls, segment, getters)
    return cls


# --- Go --------------------------------------------------------------------------------------------------------------


def _go_visibility(name: str) -> str:
    return "+" if name[:1].isupper() else "-"  # exported names start with a capital


def _go_params(inner: str) -> list[dict]:
    """Go parameters: `a, b int` gives both `int`; unnamed parameters (`func(int) error`) are named `_`."""
    parts = [p.strip() for p in _split_top(inner) if p.strip()]
    named = any(re.match(r"[\w$]+\s+\S", p) for p in parts)
    if not named:
        return [_param("_", p) for p in parts]
    params: list[dict] = []
    carried = None
    for part in reversed(parts):
        m = re.match(r"([\w$]+)\s+(\S.*)$", part, re.S)
        if m:
            carried = m.group(2)
            params.append(_param(m.group(1), carried))
        else:
            params.append(_param(part, carried))
    return params[::-1]


def _go_method(cls: _Class, name: str, after_name: str) -> None:
    """`(params) results` after a method's name, from an interface body or a method unit's signature."""
    after_name = after_name.strip()
    if not after_name.startswith("("):
        return
    end = _matching(after_name, 0)
    if end < 0:
        return
    cls.add_method(name, _go_params(after_name[1:end]), _or_none(after_name[end + 1 :]), _go_visibility(name))


def _go_class(unit: dict) -> _Class:
    cls = _Class(unit["qualified_name"], "go", unit["path"])
    interface = bool(re.search(r"\binterface\b", unit["signature"]))
    cls.stereotype = "interface" if interface else "class"
    for segment in _segments(_blank(unit["body"]), newline_ends=True):
        header = segment.header.replace('""', "").strip()  # struct tags were blanked to ""
        if segment.block is not None:  # an inline `nested struct { ... }` field
            m = re.fullmatch(r"([\w$]+(?:\s*,\s*[\w$]+)*)\s+(struct|interface)", header)
            if m and not interface:
                inner = "; ".join(
                    _collapse(line) for line in segment.block.replace('""', "").splitlines() if line.strip()
                )
                type_ = f"{m.group(2)} {{ {inner} }}" if inner else f"{m.group(2)}{{}}"
                for name in m.group(1).split(","):
                    cls.add_field(_Field(name.strip(), type_, _go_visibility(name.strip())))
            continue
        if interface:
            if m := re.match(r"([\w$]+)\s*(\(.*)$", header, re.S):
                _go_method(cls, m.group(1), m.group(2))
            elif re.fullmatch(r"[\w$.]+", header):
                cls.go_embeds.append(header)
            continue
        if embedded := re.fullmatch(r"\*?(?:[\w$]+\.)?([\w$]+)(?:\[.*\])?", header):
            cls.add_field(_Field(embedded.group(1), header, _go_visibility(embedded.group(1))))
        elif m := re.fullmatch(r"([\w$]+(?:\s*,\s*[\w$]+)*)\s+(\S.*)", header, re.S):
            for name in m.group(1).split(","):
                cls.add_field(_Field(name.strip(), _or_none(m.group(2)), _go_visibility(name.strip())))
    return cls


_GO_RECEIVER = re.compile(r"^func\s*\(([^)]*)\)\s*([\w$]+)\s*(?:\[[^\]]*\])?\s*(\(.*)$", re.S)


def _go_receiver_type(receiver: str) -> str:
    words = receiver.split()
    return re.sub(r"\[.*\]$", "", words[-1].lstrip("*")) if words else ""


# ---------------------------------------------------------------------------------------------------------------------
# Relations
# ---------------------------------------------------------------------------------------------------------------------

_COLLECTIONS = _keywords(
    "list set frozenset tuple dict sequence mutablesequence iterable iterator collection mapping mutablemapping"
    " deque defaultdict ordereddict counter array arraylist linkedlist hashset treeset linkedhashset sortedset"
    " navigableset hashmap treemap linkedhashmap sortedmap navigablemap concurrenthashmap concurrentmap map queue"
    " stack vector stream flux readonlyarray readonlymap readonlyset record mutablelist mutableset mutablemap"
    " mutablecollection immutablelist immutableset immutablemap generator asyncgenerator asynciterable"
)
_TOKEN = re.compile(r"[A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*)*|=>|->|\S")
_NULLABLE = re.compile(r"(^|\|)\s*(None|null|undefined)\s*(\||$)")


@dataclass(frozen=True)
class _Ref:
    name: str
    many: bool
    optional: bool
    pointer: bool


def _type_refs(type_text: str) -> Iterator[_Ref]:
    """Every name in a type with how it is held: inside a collection (many), optionally, or behind a Go pointer."""
    if re.search(r"=>|->|\bfunc\s*\(", type_text):
        return  # a function type refers to classes it is called with, it does not hold them
    nullable = bool(_NULLABLE.search(type_text)) or type_text.rstrip().endswith("?")
    go_many = bool(re.match(r"\s*(\*\s*)?(\[\d*\]|map\[|chan\s)", type_text))
    wrappers: list[str] = []
    last = ""
    for m in _TOKEN.finditer(type_text):
        token = m.group(0)
        if token in ("[", "<", "("):
            wrappers.append(last.rsplit(".", 1)[-1].lower())
            last = ""
        elif token in ("]", ">", ")"):
            if wrappers:
                wrappers.pop()
            last = ""
        elif token[0].isalpha() or token[0] in "_$":
            if "callable" in wrappers:
                continue
            after = type_text[m.end() :].lstrip()
            many = go_many or any(w in _COLLECTIONS for w in wrappers) or after.startswith(("[]", "..."))
            optional = nullable or "optional" in wrappers or after.startswith("?")
            pointer = type_text[: m.start()].rstrip().endswith("*")
            yield _Ref(token, many, optional, pointer)
            last = token
        else:
            last = ""


def _relations(classes: list[_Class]) -> list[dict]:
    by_language: dict[str, dict[str, _Class]] = defaultdict(dict)
    simple: dict[str, dict[str, list[_Class]]] = defaultdict(lambda: defaultdict(list))
    for cls in classes:
        by_language[cls.language][cls.name] = cls
        simple[cls.language][cls.name.rsplit(".", 1)[-1]].append(cls)

    def resolve(language: str, name: str) -> _Class | None:
        name = re.sub(r"<.*$|\[.*$", "", name).strip()
        if found := by_language[language].get(name):
            return found
        candidates = simple[language].get(name.rsplit(".", 1)[-1], [])
        return candidates[0] if len(candidates) == 1 else None

    relations: dict[tuple, dict] = {}

    def add(source: str, target: str, kind: str, label: str | None = None, multiplicity: str | None = None) -> None:
        relations.setdefault(
            (source, target, kind, label),
            {"source": source, "target": target, "kind": kind, "label": label, "multiplicity": multiplicity},
        )

    for cls in classes:
        for name in [*cls.supertypes, *cls.go_embeds]:
            parent = resolve(cls.language, name)
            if parent is None or parent is cls:
                continue
            implements = parent.stereotype == "interface" and cls.stereotype != "interface"
            add(cls.name, parent.name, "implementation" if implements else "inheritance")
        for f in cls.fields:
            for ref in _type_refs(f.type or ""):
                target = resolve(cls.language, ref.name)
                if target is None:
                    continue
                multiplicity = "many" if ref.many else "0..1" if (ref.optional or f.optional) else "1"
                held_by_value = cls.language == "go" and not ref.pointer and cls.stereotype == "class"
                owned = (cls.value_type or held_by_value) and target.stereotype != "interface"
                kind = "composition" if owned else "aggregation" if ref.many else "association"
                add(cls.name, target.name, kind, f.name, multiplicity)
    related = {(r["source"], r["target"]) for r in relations.values()}
    for cls in classes:
        for m in cls.methods:
            for type_text in [*(p["type"] for p in m["parameters"]), m["return_type"]]:
                for ref in _type_refs(type_text or ""):
                    target = resolve(cls.language, ref.name)
                    if target is not None and target is not cls and (cls.name, target.name) not in related:
                        related.add((cls.name, target.name))
                        add(cls.name, target.name, "dependency")
    order = {kind: i for i, kind in enumerate(RELATION_KINDS)}
    return sorted(relations.values(), key=lambda r: (r["source"], r["target"], order[r["kind"]], r["label"] or ""))


def _go_implementations(classes: list[_Class]) -> None:
    """Go implements interfaces implicitly: a struct whose method names cover an interface's implements it."""
    interfaces = [c for c in classes if c.language == "go" and c.stereotype == "interface" and c.methods]
    for cls in classes:
        if cls.language != "go" or cls.stereotype != "class":
            continue
        names = {m["name"] for m in cls.methods}
        cls.supertypes += [i.name for i in interfaces if {m["name"] for m in i.methods} <= names]


# ---------------------------------------------------------------------------------------------------------------------
# From code units
# ---------------------------------------------------------------------------------------------------------------------

_READERS = {
    "python": _python_class,
    "java": _java_class,
    "kotlin": _kotlin_class,
    "typescript": _ts_class,
    "javascript": _ts_class,
    "go": _go_class,
}


def _classes(units: Iterable[dict]) -> list[_Class]:
    ordered = sorted(units, key=lambda u: (u["path"], u["start_line"], u["qualified_name"]))
    classes: dict[str, _Class] = {}
    for unit in ordered:
        if unit["kind"] != "class" or unit.get("is_test") or unit["language"] not in _READERS:
            continue  # test classes are not part of the domain
        if unit["signature"].lstrip().startswith("companion object"):
            continue  # a companion's members are the outer class's static ones, which the model does not show
        if unit["qualified_name"] in classes:
            continue  # two classes with one name: the first (by path) stands for both
        classes[unit["qualified_name"]] = _READERS[unit["language"]](unit)
    go_types = {c.name: c for c in classes.values() if c.language == "go"}
    for unit in ordered:
        if unit["language"] == "go" and unit["kind"] == "method" and not unit.get("is_test"):
            m = _GO_RECEIVER.match(unit["signature"])
            owner = go_types.get(_go_receiver_type(m.group(1))) if m else None
            if owner is not None and owner.path.rsplit("/", 1)[0] == unit["path"].rsplit("/", 1)[0]:
                _go_method(owner, m.group(2), m.group(3))
    result = sorted(classes.values(), key=lambda c: c.name)
    _go_implementations(result)
    return result


def domain_model_from_units(units: list[dict], title: str | None = None) -> dict:
    """The domain model of the class units of one source: classes sorted by name with their fields and methods, and
    the inheritance, implementation, composition/aggregation/association and dependency relations between them.
    `title` defaults to the source's name."""
    sources = sorted({u["source"] for u in units})
    if len(sources) > 1:
        raise ValueError(f"units of one source expected, got {', '.join(sources)}")
    classes = _classes(units)
    model_classes = [
        {
            "name": c.name,
            "stereotype": c.stereotype,
            "fields": [{"name": f.name, "type": f.type, "visibility": f.visibility} for f in c.fields],
            "methods": c.methods,
        }
        for c in classes
    ]
    return {
        "title": _or_none(title) or (sources[0] if sources else None),
        "classes": model_classes,
        "relations": _relations(classes),
    }
