r"""API design as a markdown table: one row per operation, bodies in a compact JSON-like type notation.

An LLM reads and writes markdown tables well, and every cell here is machine-checkable::

    ### Pet Shop Catalogue API

    | API | Method | Description | Request | Response | Error response |
    | --- | --- | --- | --- | --- | --- |
    | /pets/{petId} | GET | Show one pet | path: {petId: integer} | 200: {id: integer} | 404: {code: string} |

The title line is optional, and the table may be surrounded by prose (a model's answer): `parse` reads the first
table whose header is the one above (else the first table, and says its header is wrong). The title is the `### `
heading right above the table, blank lines and code fences between them allowed.

Grammar (EBNF; whitespace between tokens is free; `/.../` is a regular expression)::

    design    = [ "### " title NL NL ] header NL delimiter NL { row NL } ;
    header    = "| API | Method | Description | Request | Response | Error response |" ;
    delimiter = "|" { /:?-+:?/ "|" } ;                        (* one cell per column *)
    row       = "|" api "|" method "|" description "|" request "|" response "|" errors "|" ;
    method    = "GET" | "PUT" | "POST" | "DELETE" | "OPTIONS" | "HEAD" | "PATCH" | "TRACE" ;
    request   = "-" | part { ";" part } ;                       (* "-": no parameters and no body *)
    part      = ( "path" | "query" | "header" | "cookie" | "form" ) ":" object
              | "body" [ "?" ] ":" type ;                       (* "body?": the body is optional *)
    response  = "-" | outcome ;                                 (* the lowest 2xx response *)
    errors    = "-" | outcome { ";" outcome } ;                 (* 4xx, 5xx and default responses *)
    outcome   = status ":" ( type | "-" ) ;                     (* "-": a response without a body *)
    status    = /[1-5][0-9X]{2}/ | "default" ;
    type      = member { "|" member } ;                         (* a union; enums are unions of literals *)
    member    = "any" | primitive [ "<" format ">" ] | literal | object | array | ref ;
    primitive = "string" | "integer" | "number" | "boolean" | "null" ;   (* <format> on the first three only *)
    format    = /[A-Za-z0-9][A-Za-z0-9_.+-]*/ ;                 (* date-time, int64, uuid, binary ... *)
    literal   = json-string | json-number | "true" | "false" ;
    object    = "{" [ field { "," field } ] "}" ;
    field     = name [ "?" ] ":" type ;                         (* "?": the property is optional *)
    name      = /[A-Za-z0-9_$@][A-Za-z0-9_$@.-]*/ | json-string ;
    array     = "[" type "]" ;
    ref       = /[A-Z][A-Za-z0-9_.-]*/ ;                        (* a schema met again inside itself: Category *)

Inside a cell `\|` stands for `|` (so a union reads `"dog"\|"cat"` in the table) and `\\` for `\`; any other
backslash is itself. Description is one line: the summary, else the first line of the description.

From `api_endpoint` records: path, query, header (not Accept, Content-Type or Authorization), cookie and Swagger form
parameters; the request body (without a schema, Postman's, the shape of its JSON example); the lowest 2xx response
and every 4xx, 5xx and default one. Not said: content types, 1xx/3xx responses, parameter and property descriptions,
constraints (minimum, pattern, default ...), maps (additionalProperties), tuples and `not`; allOf of objects is
merged into one object, allOf of anything else is its first part.

The parsed form (`api_design.schema.json`) is plain JSON data; a type is one of
`{"kind": "any"}`, `{"kind": "primitive", "type": "string", "format": "date-time" | None}`,
`{"kind": "literal", "value": "dog"}`, `{"kind": "object", "fields": [{"name", "optional", "type"}]}`,
`{"kind": "array", "items": type}`, `{"kind": "union", "of": [type, ...]}` and `{"kind": "ref", "name": "Category"}`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn
from urllib.parse import unquote

from flywheel_pipelines.discover.dsl import DslError, DslSyntaxError
from flywheel_pipelines.schemas import validation_errors

COLUMNS = ("API", "Method", "Description", "Request", "Response", "Error response")
METHODS = ("GET", "PUT", "POST", "DELETE", "OPTIONS", "HEAD", "PATCH", "TRACE")
PARAM_PARTS = ("path", "query", "header", "cookie", "form")
PARTS = (*PARAM_PARTS, "body")
PRIMITIVES = ("string", "integer", "number", "boolean", "null")
FORMATTED = ("string", "integer", "number")
# Far deeper than any real body, and shallow enough that the recursive parser never nears Python's stack limit.
MAX_NESTING = 64
# OpenAPI says header parameters with these names are ignored: they are plumbing, not API design.
IGNORED_HEADERS = frozenset({"accept", "content-type", "authorization"})

Type = dict[str, Any]

_NAME = re.compile(r"[A-Za-z0-9_$@][A-Za-z0-9_$@.\-]*")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")
_REF = re.compile(r"[A-Z][A-Za-z0-9_.\-]*")
_FORMAT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+\-]*")
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_STATUS = re.compile(r"default|[1-5][0-9X]{2}")
_DELIMITER_CELL = re.compile(r":?-+:?")
_TEMPLATE = re.compile(r"\{[^{}/]*\}")
_JSON = json.JSONDecoder()


def _any() -> Type:
    return {"kind": "any"}  # a fresh dict each time: callers may change the designs they get


def _null() -> Type:
    return {"kind": "primitive", "type": "null", "format": None}


# --- from api_endpoint records ---------------------------------------------------------------------------------


def design_from_endpoints(endpoints: list[dict]) -> dict:
    """The design of these `api_endpoint` records, one operation each, in their order.

    The title is the records' spec title when they share one (a design usually covers one spec), else None.
    """
    titles = {_fold(e.get("spec_title")) for e in endpoints} - {""}
    return {
        "title": titles.pop() if len(titles) == 1 else None,
        "operations": [_operation(e) for e in endpoints],
    }


def _fold(text: Any) -> str:
    """One line: a cell or a heading cannot hold a line break, and runs of whitespace carry no meaning."""
    return " ".join(text.split()) if isinstance(text, str) else ""


def _description(endpoint: dict) -> str:
    summary = _fold(endpoint.get("summary"))
    if summary:
        return summary
    lines = (endpoint.get("description") or "").splitlines()
    return next((_fold(line) for line in lines if line.strip()), "")


def _operation(endpoint: dict) -> dict:
    postman = endpoint.get("spec_format") == "postman-2.1"
    api = _fold(endpoint["url_path"])
    if postman:
        api = _postman_path(api)
    return {
        "api": api,
        "method": endpoint["method"],
        "description": _description(endpoint),
        "request": _request_parts(endpoint, api, postman),
        "response": _success(endpoint.get("responses") or []),
        "error_response": _failures(endpoint.get("responses") or []),
    }


def _postman_path(path: str) -> str:
    """Postman's `:id` segments and `{{id}}` variables as OpenAPI's `{id}`: one path-parameter syntax to check."""
    path = re.sub(r"\{\{\s*([^{}/\s]+)\s*\}\}", r"{\1}", path)
    return "/".join("{" + s[1:] + "}" if s.startswith(":") and len(s) > 1 else s for s in path.split("/"))


def _request_parts(endpoint: dict, api: str, postman: bool) -> list[dict]:
    fields: dict[str, dict[str, dict]] = {part: {} for part in PARAM_PARTS}
    for param in endpoint.get("parameters") or []:
        part = "form" if param["in"] == "formData" else param["in"]
        name = param["name"]
        if part == "header" and name.lower() in IGNORED_HEADERS:
            continue
        optional = not (param.get("required") or part == "path")
        fields[part].setdefault(name, _field(name, optional, schema_type(param.get("schema"), 1)))
    if postman:  # a {{variable}} in a Postman URL is a path parameter nobody declared
        for name in _template_names(api):
            fields["path"].setdefault(name, _field(name, False, _any()))
    parts = [_part(part, False, _object(list(found.values()))) for part, found in fields.items() if found]
    body = endpoint.get("request_body")
    if body is not None:
        parts.append(_part("body", not body.get("required"), _body_type(body)))
    return parts


def _template_names(api: str) -> list[str]:
    return [m.group()[1:-1] for m in _TEMPLATE.finditer(api)]


def _body_type(body: dict) -> Type:
    """The body's schema; without one (Postman), the shape of its JSON example, else any."""
    if body.get("schema") is not None:
        return schema_type(body["schema"])
    example = body.get("example")
    return example_type(example) if isinstance(example, dict | list) else _any()


def _status_key(status: str) -> tuple[int, int, str]:
    """200 before 201 before 2XX; default after every code."""
    if status == "default":
        return 9, 0, ""
    return int(status[0]), 1 if "X" in status else 0, status


def _outcome(response: dict) -> dict:
    if response.get("schema") is not None:
        body: Type | None = schema_type(response["schema"])
    else:  # a content type without a schema (Postman) is a body of unknown shape; neither is no body at all
        body = _any() if response.get("content_type") else None
    return {"status": response["status"], "body": body}


def _success(responses: list[dict]) -> dict | None:
    ok = sorted((r for r in responses if r["status"].startswith("2")), key=lambda r: _status_key(r["status"]))
    return _outcome(ok[0]) if ok else None


def _is_failure(status: str) -> bool:
    return status == "default" or status[0] in "45"


def _failures(responses: list[dict]) -> list[dict]:
    failures = sorted((r for r in responses if _is_failure(r["status"])), key=lambda r: _status_key(r["status"]))
    seen: set[str] = set()
    outcomes = []
    for response in failures:
        if response["status"] not in seen:  # 4xx and 4XX both became 4XX
            seen.add(response["status"])
            outcomes.append(_outcome(response))
    return outcomes


# --- JSON Schema to the notation -------------------------------------------------------------------------------


def _field(name: str, optional: bool, type_: Type) -> dict:
    return {"name": name, "optional": optional, "type": type_}


def _part(part: str, optional: bool, type_: Type) -> dict:
    return {"part": part, "optional": optional, "type": type_}


def _object(fields: list[dict]) -> Type:
    return {"kind": "object", "fields": fields}


def _primitive(name: str, fmt: Any = None) -> Type:
    keep = name in FORMATTED and isinstance(fmt, str) and _FORMAT.fullmatch(fmt)
    return {"kind": "primitive", "type": name, "format": fmt if keep else None}


def _literal(value: Any) -> Type | None:
    if value is None:
        return _null()  # an enum's null and the null type are one value
    if isinstance(value, str | bool) or (isinstance(value, int | float) and math.isfinite(value)):
        return {"kind": "literal", "value": value}
    return None


def _union(members: list[Type]) -> Type:
    """Flat, without repeats; `any` absorbs the rest; one member is itself."""
    flat: list[Type] = []
    for member in members:
        for m in member["of"] if member["kind"] == "union" else [member]:
            if m["kind"] == "any":
                return _any()
            if m not in flat:
                flat.append(m)
    if not flat:
        return _any()
    return flat[0] if len(flat) == 1 else {"kind": "union", "of": flat}


def _ref_type(ref: str) -> Type:
    """A $ref left as is (a cycle, or a URL) as the last segment of its path, made a valid SchemaName."""
    segments = [s for s in re.split(r"[/#]", ref) if s]
    name = unquote(segments[-1]).replace("~1", "/").replace("~0", "~") if segments else ""
    name = re.sub(r"^[^A-Za-z]+", "", re.sub(r"[^A-Za-z0-9_.\-]", "_", name))
    if not name:
        return _any()
    name = name[0].upper() + name[1:]
    if name.lower() in (*PRIMITIVES, "any"):  # `String` would read as a misspelt primitive
        name += "_"
    return {"kind": "ref", "name": name}


def schema_type(schema: Any, depth: int = 0) -> Type:
    """The notation for a resolved JSON Schema; what it cannot say (maps, tuples, `not`) becomes `any`."""
    if not isinstance(schema, dict) or depth >= MAX_NESTING - 2:  # room for the request part's own object
        return _any()
    if isinstance(schema.get("$ref"), str):
        return _ref_type(schema["$ref"])
    if "const" in schema and (literal := _literal(schema["const"])) is not None:
        return literal
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        members = [_literal(v) for v in schema["enum"]]
        if all(m is not None for m in members):
            return _union(members)  # type: ignore[arg-type]
    for key in ("oneOf", "anyOf"):
        if isinstance(schema.get(key), list) and schema[key]:
            return _union([schema_type(s, depth + 1) for s in schema[key]])
    if isinstance(schema.get("allOf"), list) and schema["allOf"]:
        return _all_of(schema, depth)
    return _typed(schema, depth)


def _type_names(schema: dict) -> list[str]:
    declared = schema.get("type")
    if isinstance(declared, list):
        return [t for t in declared if isinstance(t, str)]
    if isinstance(declared, str):
        return [declared]
    if "properties" in schema:
        return ["object"]
    return ["array"] if "items" in schema else []


def _typed(schema: dict, depth: int) -> Type:
    members = [_one_type(name, schema, depth) for name in _type_names(schema)]
    if schema.get("nullable") is True and members:  # OpenAPI 3.0's way of saying type: [x, null]
        members.append(_null())
    return _union(members)


def _one_type(name: str, schema: dict, depth: int) -> Type:
    if name == "object":
        properties = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
        required = _required(schema)
        fields = [_field(k, k not in required, schema_type(v, depth + 1)) for k, v in properties.items()]
        return _object(fields)
    if name == "array":
        items = schema.get("items")
        return {"kind": "array", "items": schema_type(items, depth + 1) if isinstance(items, dict) else _any()}
    if name == "file":  # Swagger 2.0's upload; OpenAPI 3 says string<binary>
        return _primitive("string", "binary")
    return _primitive(name, schema.get("format")) if name in PRIMITIVES else _any()


def _all_of(schema: dict, depth: int) -> Type:
    """allOf as one object when its parts are objects (the usual NewPet + {id} composition), else its first part."""
    rest = {k: v for k, v in schema.items() if k != "allOf"}
    members = [schema_type(s, depth + 1) for s in schema["allOf"]]
    if _type_names(rest):  # properties next to allOf belong to the same object
        members.append(_typed(rest, depth))
    members = [m for m in members if m["kind"] != "any"]
    objects = [m for m in members if m["kind"] == "object"]
    if not objects:
        return members[0] if members else _any()
    # A part may require what another part declares: allOf: [Base, {required: [id]}].
    required = {name for part in [*schema["allOf"], rest] for name in _required(part)}
    merged: dict[str, dict] = {}
    for obj in objects:
        for f in obj["fields"]:
            before = merged.get(f["name"])
            if before is None:
                merged[f["name"]] = f
            else:  # required anywhere is required; the later, more specific type wins unless it says nothing
                type_ = before["type"] if f["type"]["kind"] == "any" else f["type"]
                merged[f["name"]] = _field(f["name"], before["optional"] and f["optional"], type_)
    return _object([{**f, "optional": f["optional"] and f["name"] not in required} for f in merged.values()])


def _required(schema: Any) -> list[str]:
    names = schema.get("required") if isinstance(schema, dict) else None
    return [n for n in names if isinstance(n, str)] if isinstance(names, list) else []


def example_type(value: Any, depth: int = 0) -> Type:
    """The shape of a JSON example: every property it shows is taken as required."""
    if depth >= MAX_NESTING - 2:
        return _any()
    if isinstance(value, dict):
        return _object([_field(str(k), False, example_type(v, depth + 1)) for k, v in value.items()])
    if isinstance(value, list):
        return {"kind": "array", "items": example_type(value[0], depth + 1) if value else _any()}
    if isinstance(value, bool):
        return _primitive("boolean")
    if isinstance(value, int):
        return _primitive("integer")
    if isinstance(value, float):
        return _primitive("number")
    return _primitive("string") if isinstance(value, str) else _null()


# --- rendering -------------------------------------------------------------------------------------------------


def render(design: dict) -> str:
    """The canonical text of a design; raises ValueError for one that breaks `api_design.schema.json`."""
    problems = validation_errors("api_design", design)
    if problems:
        raise ValueError("not an API design: " + "; ".join(problems))
    if any(_nesting(t) > MAX_NESTING for op in design["operations"] for t in _types_of(op)):
        raise ValueError(f"not an API design: a type nests deeper than {MAX_NESTING} levels")
    lines = [f"### {design['title']}", ""] if design["title"] is not None else []
    lines.append(_row(COLUMNS))
    lines.append(_row(["---"] * len(COLUMNS)))
    lines += [_row([_escape(cell) for cell in _cells_of(op)]) for op in design["operations"]]
    return "\n".join(lines) + "\n"


def _types_of(op: dict) -> list[Type]:
    outcomes = [op["response"], *op["error_response"]] if op["response"] else op["error_response"]
    return [p["type"] for p in op["request"]] + [o["body"] for o in outcomes if o["body"] is not None]


def _nesting(type_: Type) -> int:
    """Brackets around the deepest part, as the reader counts them."""
    if type_["kind"] == "array":
        return 1 + _nesting(type_["items"])
    if type_["kind"] == "object":
        return 1 + max((_nesting(f["type"]) for f in type_["fields"]), default=0)
    if type_["kind"] == "union":
        return max(_nesting(m) for m in type_["of"])
    return 0


def _row(cells: list[str] | tuple[str, ...]) -> str:
    return "| " + " | ".join(cells) + " |"


def _escape(text: str) -> str:
    """`|` as `\\|`; a backslash doubled only where it would otherwise be read as an escape."""
    out = []
    for i, char in enumerate(text):
        if char == "|":
            out.append("\\|")
        elif char == "\\" and (i + 1 == len(text) or text[i + 1] in "|\\"):
            out.append("\\\\")
        else:
            out.append(char)
    return "".join(out)


def _cells_of(op: dict) -> list[str]:
    return [
        op["api"],
        op["method"],
        op["description"],
        render_request(op["request"]),
        render_outcome(op["response"]) if op["response"] is not None else "-",
        " ; ".join(render_outcome(o) for o in op["error_response"]) or "-",
    ]


def render_request(parts: list[dict]) -> str:
    rendered = (f"{p['part']}{'?' if p['optional'] else ''}: {render_type(p['type'])}" for p in parts)
    return "; ".join(rendered) or "-"


def render_outcome(outcome: dict) -> str:
    body = outcome["body"]
    return f"{outcome['status']}: {render_type(body) if body is not None else '-'}"


def render_type(type_: Type) -> str:
    """One type in the notation (unescaped: a union's `|` is escaped when the type goes into a cell)."""
    kind = type_["kind"]
    if kind == "primitive":
        return type_["type"] + (f"<{type_['format']}>" if type_["format"] else "")
    if kind == "literal":
        return _json(type_["value"])
    if kind == "ref":
        return type_["name"]
    if kind == "array":
        return f"[{render_type(type_['items'])}]"
    if kind == "union":
        return "|".join(render_type(m) for m in type_["of"])
    if kind == "object":
        fields = (
            f"{_name(f['name'])}{'?' if f['optional'] else ''}: {render_type(f['type'])}" for f in type_["fields"]
        )
        return "{" + ", ".join(fields) + "}"
    return "any"


def _name(name: str) -> str:
    return name if _NAME.fullmatch(name) else _json(name)


def _json(value: str | float | bool) -> str:
    """JSON, readable: non-ASCII kept, but not the characters that tools other than ours take for line breaks."""
    text = json.dumps(value, ensure_ascii=False)
    return text.replace("\x85", "\\u0085").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


# --- reading the notation --------------------------------------------------------------------------------------


class _NotationError(Exception):
    def __init__(self, pos: int, message: str):
        super().__init__(message)
        self.pos = pos
        self.message = message


class _Reader:
    """A cursor over one cell's notation; every failure names the position where it happened."""

    def __init__(self, text: str):
        self.text = text
        self.pos = 0
        self.depth = 0

    def peek(self) -> str:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def take(self, pattern: re.Pattern[str]) -> str | None:
        self.peek()
        match = pattern.match(self.text, self.pos)
        if match is None:
            return None
        self.pos = match.end()
        return match.group()

    def found(self) -> str:
        char = self.peek()
        return f"'{char}'" if char else "the end of the cell"

    def fail(self, message: str, pos: int | None = None) -> NoReturn:
        raise _NotationError(self.pos if pos is None else pos, message)

    def expect(self, char: str, context: str) -> None:
        if self.peek() != char:
            self.fail(f"expected '{char}' {context}, found {self.found()}")
        self.pos += 1

    def end(self, context: str) -> None:
        if self.peek():
            self.fail(f"expected {context}, found {self.found()}")

    def dash(self) -> bool:
        """Takes a `-` that stands for nothing: one followed by the end of the cell or by `;`."""
        if self.peek() != "-":
            return False
        rest = self.text[self.pos + 1 :].lstrip()
        if rest and rest[0] != ";":
            return False
        self.pos += 1
        return True

    def nest(self) -> None:
        self.depth += 1
        if self.depth > MAX_NESTING:
            self.fail(f"nested deeper than {MAX_NESTING} levels")


def _read_type(r: _Reader) -> Type:
    members = [_read_member(r)]
    while r.peek() == "|":
        r.pos += 1
        members.append(_read_member(r))
    return members[0] if len(members) == 1 else {"kind": "union", "of": members}


def _read_member(r: _Reader) -> Type:
    char = r.peek()
    if char == "{":
        return _read_object(r)
    if char == "[":
        return _read_array(r)
    if char == '"':
        return {"kind": "literal", "value": _read_string(r)}
    if char == "-" or char.isdigit():
        return {"kind": "literal", "value": _read_number(r)}
    start = r.pos
    word = r.take(_WORD)
    if word is None:
        r.fail(f"expected a type, found {r.found()}")
    return _read_named(r, word, start)


def _read_named(r: _Reader, word: str, start: int) -> Type:
    if word == "any":
        return _any()
    if word in ("true", "false"):
        return {"kind": "literal", "value": word == "true"}
    if word in PRIMITIVES:
        return {"kind": "primitive", "type": word, "format": _read_format(r, word)}
    if _REF.fullmatch(word):
        return {"kind": "ref", "name": word}
    expected = "string, integer, number, boolean, null, any, a literal, {...}, [...] or a SchemaName"
    r.fail(f"unknown type '{word}'; expected {expected}", start)


def _read_format(r: _Reader, primitive: str) -> str | None:
    if r.peek() != "<":
        return None
    if primitive not in FORMATTED:
        r.fail(f"{primitive} takes no <format>; only string, integer and number do")
    r.pos += 1
    fmt = r.take(_FORMAT)
    if fmt is None:
        r.fail(f"expected a format such as date-time, found {r.found()}")
    r.expect(">", "to close the format")
    return fmt


def _read_string(r: _Reader) -> str:
    try:
        value, r.pos = _JSON.raw_decode(r.text, r.pos)
    except json.JSONDecodeError as e:
        r.fail(f"bad string: {e.msg}", e.pos)
    return value


def _read_number(r: _Reader) -> int | float:
    start = r.pos
    text = r.take(_NUMBER)
    if text is None:
        r.fail(f"expected a type, found {r.found()}")
    value = json.loads(text)
    if not math.isfinite(value):
        r.fail(f"number {text} is too large", start)
    return value


def _read_object(r: _Reader) -> Type:
    r.nest()
    r.pos += 1
    fields: list[dict] = []
    if r.peek() == "}":
        r.pos += 1
    else:
        fields.append(_read_field(r))
        while r.peek() == ",":
            r.pos += 1
            fields.append(_read_field(r))
        r.expect("}", f"or ',' after field '{fields[-1]['name']}'")
    r.depth -= 1
    return _object(fields)


def _read_field(r: _Reader) -> dict:
    if r.peek() == '"':
        name = _read_string(r)
    else:
        name = r.take(_NAME)
        if name is None:
            r.fail(f"expected a field name, found {r.found()}")
    optional = r.peek() == "?"
    if optional:
        r.pos += 1
    r.expect(":", f"after field name '{name}'")
    return _field(name, optional, _read_type(r))


def _read_array(r: _Reader) -> Type:
    r.nest()
    r.pos += 1
    items = _read_type(r)
    r.expect("]", "to close the array")
    r.depth -= 1
    return {"kind": "array", "items": items}


def _read_request(r: _Reader) -> list[dict]:
    if r.dash():
        r.end("the end of the cell after '-' (no request data)")
        return []
    parts = [_read_part(r)]
    while r.peek() == ";":
        r.pos += 1
        parts.append(_read_part(r))
    r.end("';' before the next part, or the end of the cell")
    return parts


def _read_part(r: _Reader) -> dict:
    r.peek()
    start = r.pos
    name = r.take(_WORD)
    if name not in PARTS:
        what = f"'{name}'" if name else r.found()
        r.fail(f"expected a request part (path, query, header, cookie, form or body), found {what}", start)
    optional = name == "body" and r.peek() == "?"
    if optional:
        r.pos += 1
    r.expect(":", f"after '{name}'")
    if name == "body":
        return _part(name, optional, _read_type(r))
    if r.peek() != "{":
        r.fail(f"expected '{{' ({name} takes an object of parameters), found {r.found()}")
    return _part(name, False, _read_object(r))


def _read_outcome(r: _Reader) -> dict:
    status = r.take(_STATUS)
    if status is None:
        r.fail(f"expected a status such as 200, 4XX or default, found {r.found()}")
    r.expect(":", f"after status {status}")
    body = None if r.dash() else _read_type(r)
    return {"status": status, "body": body}


def _read_response(r: _Reader) -> dict | None:
    if r.dash():
        r.end("the end of the cell after '-' (no success response)")
        return None
    outcome = _read_outcome(r)
    r.end("the end of the cell (one success response here; errors go in Error response)")
    return outcome


def _read_errors(r: _Reader) -> list[dict]:
    if r.dash():
        r.end("the end of the cell after '-' (no error responses)")
        return []
    outcomes = [_read_outcome(r)]
    while r.peek() == ";":
        r.pos += 1
        outcomes.append(_read_outcome(r))
    r.end("';' before the next response, or the end of the cell")
    return outcomes


# --- reading the table -----------------------------------------------------------------------------------------


@dataclass
class _Cell:
    """A cell as written (trimmed) and its text with escapes undone; `where` maps text positions to written ones."""

    written: str
    text: str
    where: list[int]


@dataclass
class _Table:
    title: str | None = None
    rows: list[tuple[int, dict]] = field(default_factory=list)  # (1-based row, operation) of rows read cleanly
    row_count: int = 0
    errors: list[DslError] = field(default_factory=list)


def _split_row(line: str) -> list[_Cell]:
    """The cells between unescaped pipes; the closing pipe may be missing, as markdown allows."""
    body = line.strip()
    cells, start, i = [], 1, 1
    while i < len(body):
        if body[i] == "\\" and i + 1 < len(body) and body[i + 1] in "|\\":
            i += 2
            continue
        if body[i] == "|":
            cells.append(body[start:i])
            start = i + 1
        i += 1
    if body[start:].strip():
        cells.append(body[start:])
    return [_unescape(c.strip()) for c in cells]


def _unescape(written: str) -> _Cell:
    text, where, i = [], [], 0
    while i < len(written):
        escaped = written[i] == "\\" and i + 1 < len(written) and written[i + 1] in "|\\"
        text.append(written[i + 1] if escaped else written[i])
        where.append(i)
        i += 2 if escaped else 1
    where.append(len(written))  # errors at the end of the text point just past the cell's last character
    return _Cell(written, "".join(text), where)


def _is_table_line(line: str) -> bool:
    return line.lstrip().startswith("|")


def _find_table(lines: list[str]) -> tuple[int, int] | None:
    """(first, past-last) line of the table with our header, else of the first table; None without a table."""
    blocks: list[tuple[int, int]] = []
    i = 0
    while i < len(lines):
        if _is_table_line(lines[i]):
            start = i
            while i < len(lines) and _is_table_line(lines[i]):
                i += 1
            blocks.append((start, i))
        i += 1
    wanted = [c.casefold() for c in COLUMNS]
    for start, end in blocks:
        if [c.text.casefold() for c in _split_row(lines[start])] == wanted:
            return start, end
    return blocks[0] if blocks else None


def _title(lines: list[str], header: int) -> str | None:
    i = header - 1
    while i >= 0 and (not lines[i].strip() or lines[i].strip().startswith("```")):
        i -= 1
    line = lines[i].strip() if i >= 0 else ""
    return (line[4:].strip() or None) if line.startswith("### ") else None


def _header_errors(cells: list[_Cell]) -> list[DslError]:
    found = [c.text for c in cells]
    if len(found) != len(COLUMNS):
        expected = " | ".join(COLUMNS)
        reason = f"expected {len(COLUMNS)} columns ({expected}), found {len(found)}: {' | '.join(found)}"
        return [DslError("header", "columns", reason)]
    return [
        DslError("header", "columns", f"column {i} is '{got}', expected '{want}'")
        for i, (got, want) in enumerate(zip(found, COLUMNS, strict=True), 1)
        if got != want
    ]


def _is_delimiter(cells: list[_Cell]) -> bool:
    return bool(cells) and all(_DELIMITER_CELL.fullmatch(c.text.replace(" ", "")) for c in cells)


def _read_table(text: str) -> _Table:
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    found = _find_table(lines)
    if found is None:
        reason = "no markdown table found; expected a header row | " + " | ".join(COLUMNS) + " |"
        return _Table(errors=[DslError("text", "table", reason)])
    start, end = found
    table = _Table(title=_title(lines, start), errors=_header_errors(_split_row(lines[start])))
    rows = [_split_row(line) for line in lines[start + 1 : end]]
    if rows and _is_delimiter(rows[0]):
        if len(rows[0]) != len(COLUMNS):
            reason = f"has {len(rows[0])} cells, expected {len(COLUMNS)}"
            table.errors.append(DslError("header", "delimiter", reason))
        rows = rows[1:]
    else:  # without it markdown sees no table; the line is read as the first row all the same
        table.errors.append(DslError("header", "delimiter", "expected the row | --- | --- | ... under the header"))
    table.row_count = len(rows)
    for number, cells in enumerate(rows, 1):
        operation, errors = _read_row(number, cells)
        table.errors += errors
        if operation is not None:
            table.rows.append((number, operation))
    return table


def _read_row(number: int, cells: list[_Cell]) -> tuple[dict | None, list[DslError]]:
    where = f"row {number}"
    if len(cells) != len(COLUMNS):
        reason = (
            f"has {len(cells)} cells, expected {len(COLUMNS)} ({' | '.join(COLUMNS)}); write a | inside a cell as \\|"
        )
        return None, [DslError(where, "columns", reason)]
    errors: list[DslError] = []
    method = cells[1].text
    if method not in METHODS:
        errors.append(DslError(where, "Method", f"unknown method '{method}'; expected one of {', '.join(METHODS)}"))
    operation = {
        "api": cells[0].text,
        "method": method,
        "description": cells[2].text,
        "request": _read_cell(where, "Request", cells[3], _read_request, errors),
        "response": _read_cell(where, "Response", cells[4], _read_response, errors),
        "error_response": _read_cell(where, "Error response", cells[5], _read_errors, errors),
    }
    return (None if errors else operation), errors


def _read_cell(where: str, column: str, cell: _Cell, read: Callable[[_Reader], Any], errors: list[DslError]) -> Any:
    reader = _Reader(cell.text)
    try:
        return read(reader)
    except _NotationError as e:
        errors.append(DslError(where, column, f"at character {cell.where[e.pos] + 1}: {e.message}"))
        return None


def parse(text: str) -> dict:
    """The design in `text` (a table, maybe with prose around it); raises DslSyntaxError with every problem."""
    table = _read_table(text)
    if table.errors:
        raise DslSyntaxError(table.errors)
    return {"title": table.title, "operations": [op for _, op in table.rows]}


# --- checking --------------------------------------------------------------------------------------------------


def validate(text: str) -> list[DslError]:
    """Every problem of `text`: what stops it parsing, then what makes the design inconsistent."""
    table = _read_table(text)
    errors = list(table.errors)
    if table.row_count == 0 and not errors:
        errors.append(DslError("table", "rows", "the table has no operations"))
    seen: dict[tuple[str, str], tuple[int, str]] = {}
    for number, op in table.rows:
        where = f"row {number}"
        errors += [DslError(where, column, reason) for column, reason in _operation_problems(op)]
        route = (op["method"], _TEMPLATE.sub("{}", op["api"]))  # /pets/{id} and /pets/{petId} are one route
        if route in seen:
            first, api = seen[route]
            errors.append(DslError(where, "API", f"{op['method']} {op['api']} is already row {first} ({api})"))
        else:
            seen[route] = (number, op["api"])
    return errors


def _operation_problems(op: dict) -> list[tuple[str, str]]:
    """(column, reason) for each inconsistency within one operation."""
    problems = [("API", reason) for reason in _path_problems(op["api"])]
    if not op["description"]:
        problems.append(("Description", "is empty; say in one line what the operation does"))
    problems += [("Request", reason) for reason in _request_problems(op)]
    if op["response"] is not None:
        if not op["response"]["status"].startswith("2"):
            status = op["response"]["status"]
            problems.append(("Response", f"status {status} is not a success (2xx); errors go in Error response"))
        problems += [("Response", reason) for reason in _type_problems(op["response"]["body"])]
    problems += [("Error response", reason) for reason in _errors_problems(op["error_response"])]
    return problems


def _path_params(api: str) -> tuple[list[str], str | None]:
    """The names in {braces}, and why the braces do not balance (None when they do)."""
    names: list[str] = []
    current: list[str] | None = None
    for char in api:
        if char == "{":
            if current is not None:
                return names, "'{' inside a path parameter"
            current = []
        elif char == "}":
            if current is None:
                return names, "'}' without its '{'"
            names.append("".join(current))
            current = None
        elif current is not None:
            current.append(char)
    return names, ("'{' without its '}'" if current is not None else None)


def _path_problems(api: str) -> list[str]:
    problems = [] if api.startswith("/") else [f"path '{api}' does not start with '/'"]
    names, unbalanced = _path_params(api)
    if unbalanced:
        return [*problems, f"unbalanced braces in path parameters: {unbalanced}"]
    for i, name in enumerate(names):
        if not name.strip():
            problems.append("empty path parameter {}")
        elif "/" in name:
            problems.append(f"path parameter {{{name}}} spans a '/'")
        elif name in names[:i]:
            problems.append(f"path parameter {{{name}}} appears twice")
    return problems


def _request_problems(op: dict) -> list[str]:
    problems: list[str] = []
    parts = [p["part"] for p in op["request"]]
    problems += [f"part '{p}' appears twice" for i, p in enumerate(parts) if p in parts[:i]]
    if op["method"] in ("GET", "HEAD") and "body" in parts:
        problems.append(f"a {op['method']} request has no body; send its data as query parameters")
    for part in op["request"]:
        problems += _type_problems(part["type"])
    path_fields = [f for p in op["request"] if p["part"] == "path" for f in p["type"]["fields"]]
    problems += [f"path parameter '{f['name']}' cannot be optional" for f in path_fields if f["optional"]]
    names, unbalanced = _path_params(op["api"])
    if unbalanced:  # which names the path holds is unclear: the API column's error says enough
        return problems
    declared = {f["name"] for f in path_fields}
    problems += [
        f"path parameter {{{n}}} of {op['api']} is missing from path: {{...}}"
        for n in dict.fromkeys(names)
        if n not in declared
    ]
    problems += [f"path: declares '{d}', but {op['api']} has no {{{d}}}" for d in sorted(declared - set(names))]
    return problems


def _errors_problems(outcomes: list[dict]) -> list[str]:
    problems = []
    statuses = [o["status"] for o in outcomes]
    for i, status in enumerate(statuses):
        if not _is_failure(status):
            problems.append(f"status {status} is not an error (4xx, 5xx or default)")
        if status in statuses[:i]:
            problems.append(f"status {status} appears twice")
    for outcome in outcomes:
        problems += _type_problems(outcome["body"])
    return problems


def _type_problems(type_: Type | None) -> list[str]:
    """Repeated fields, and SchemaNames that are primitives written with a capital (Integer for integer)."""
    if type_ is None:
        return []
    kind = type_["kind"]
    if kind == "ref" and type_["name"].lower() in (*PRIMITIVES, "any"):
        return [f"'{type_['name']}' is no type; primitive types are lower-case: {type_['name'].lower()}"]
    if kind == "array":
        return _type_problems(type_["items"])
    if kind == "union":
        return [p for m in type_["of"] for p in _type_problems(m)]
    if kind != "object":
        return []
    names = [f["name"] for f in type_["fields"]]
    problems = [f"field '{n}' appears twice" for i, n in enumerate(names) if n in names[:i]]
    return problems + [p for f in type_["fields"] for p in _type_problems(f["type"])]
