"""Discover, step 1: OpenAPI 2.0/3.0/3.1 specs and Postman collections as one `api_endpoint` record per operation.

$refs are resolved within the source's own files (URLs are never fetched); a cycle is marked, not expanded.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import posixpath
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any
from urllib.parse import unquote

import yaml

from flywheel_pipelines.discover.quarantine import Quarantined
from flywheel_pipelines.schemas import validation_errors

STAGE = "api_endpoints"
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
# Limits far beyond real specs that keep every input finite and well inside Python's recursion limit.
MAX_DEPTH = 128  # nesting of a parsed document
MAX_RESOLVED_DEPTH = 192  # nesting of an operation's resolved parts, ref hops included
MAX_RESOLVED_NODES = 50_000  # per operation: acyclic refs can still expand exponentially
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*:|//)")
_VERSION = re.compile(r"^\d+(\.\d+)*([-+].*)?$")
_ARRAY_INDEX = re.compile(r"^(0|[1-9][0-9]*)$")
# Swagger 2.0 puts a non-body parameter's schema keywords on the parameter itself.
_SWAGGER2_SCHEMA_KEYS = (
    "type", "format", "items", "enum", "default", "maximum", "exclusiveMaximum", "minimum", "exclusiveMinimum",
    "maxLength", "minLength", "pattern", "maxItems", "minItems", "uniqueItems", "multipleOf",
)  # fmt: skip
_RAW_LANGUAGE_TYPES = {
    "json": "application/json",
    "xml": "application/xml",
    "html": "text/html",
    "text": "text/plain",
    "javascript": "application/javascript",
}

Fields = dict[str, Any]


class SpecError(Exception):
    """Why a file or an operation cannot become records; the message is the quarantine reason."""


@dataclass
class _Budget:
    """Counts nodes produced, so that alias bombs and exponential ref expansion stop with a reason."""

    left: int
    reason: str

    def spend(self) -> None:
        self.left -= 1
        if self.left < 0:
            raise SpecError(self.reason)


# --- loading ---------------------------------------------------------------------------------------------------


class _KeysAsWritten:
    """Keeps mapping keys as written ("200", not 200): records are JSON, and status codes are strings there."""

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict[str, Any]:
        if not isinstance(node, yaml.MappingNode):
            raise yaml.constructor.ConstructorError(None, None, "expected a mapping", node.start_mark)
        self.flatten_mapping(node)  # merge keys (<<) first, as SafeLoader does
        mapping: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise yaml.constructor.ConstructorError(None, None, "mapping keys must be scalars", key_node.start_mark)
            mapping[key_node.value] = self.construct_object(value_node, deep=deep)
        return mapping


class _PySpecLoader(_KeysAsWritten, yaml.SafeLoader):
    pass


# libyaml is ten times faster, but its composer recurses in C: only documents known to be shallow may go there.
_CSpecLoader = type("_CSpecLoader", (_KeysAsWritten, yaml.CSafeLoader), {}) if yaml.__with_libyaml__ else None

for _loader in (_PySpecLoader, _CSpecLoader):
    if _loader is not None:  # timestamps stay text: a date is no JSON value
        _loader.add_constructor("tag:yaml.org,2002:timestamp", lambda loader, node: loader.construct_scalar(node))


def _load_yaml(text: str) -> Any:
    if _CSpecLoader is None:
        return yaml.load(text, Loader=_PySpecLoader)  # a SafeLoader: no arbitrary objects
    depth = 0
    # Stops at the first level too deep: libyaml's scanner is quadratic in the depth of flow collections.
    for event in yaml.parse(text, Loader=yaml.CSafeLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise SpecError(f"YAML nested deeper than {MAX_DEPTH} levels")
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
    return yaml.load(text, Loader=_CSpecLoader)  # a CSafeLoader: no arbitrary objects


def _parse(path: str, language: str, text: str) -> Any:
    if language == "json" or path.lower().endswith(".json"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise SpecError(f"malformed JSON: {e.msg} (line {e.lineno})") from None
        except RecursionError:
            raise SpecError("malformed JSON: nested too deeply") from None
    try:
        return _load_yaml(text)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = f" (line {mark.line + 1})" if mark else ""
        raise SpecError(f"malformed YAML: {e.problem or e.context}{line}") from None
    except RecursionError:
        raise SpecError("malformed YAML: nested too deeply") from None
    except (yaml.YAMLError, ValueError, TypeError, OverflowError) as e:
        raise SpecError(f"malformed YAML: {e}") from None


def _plain(value: Any, budget: _Budget, depth: int = 0, open_ids: set[int] | None = None) -> Any:
    """`value` as plain JSON data; fails on self-referencing YAML aliases, too deep nesting or too many nodes."""
    budget.spend()
    if depth > MAX_DEPTH:
        raise SpecError(f"nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, dict | list | tuple | set):
        open_ids = set() if open_ids is None else open_ids
        if id(value) in open_ids:
            raise SpecError("a YAML alias contains itself")
        open_ids.add(id(value))
        try:
            return _plain_container(value, budget, depth, open_ids)
        finally:
            open_ids.discard(id(value))
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)  # NaN and Infinity are not JSON
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    return str(value)


def _plain_container(value: Any, budget: _Budget, depth: int, open_ids: set[int]) -> Any:
    # Loops, not comprehensions: on Python 3.11 each comprehension costs a stack frame per level.
    if isinstance(value, dict):
        mapping = {}
        for k, v in value.items():
            mapping[str(k)] = _plain(v, budget, depth + 1, open_ids)
        return mapping
    items = []
    for v in sorted(value, key=str) if isinstance(value, set) else value:
        items.append(_plain(v, budget, depth + 1, open_ids))
    return items


class _Files:
    """The source's files by path, each parsed at most once, for spec detection and for relative-file $refs."""

    def __init__(self, files: list[dict]) -> None:
        self.by_path = {f["path"]: f for f in files if isinstance(f, dict) and isinstance(f.get("path"), str)}
        self._cache: dict[str, Any] = {}

    def __contains__(self, path: str) -> bool:
        return path in self.by_path

    def load(self, path: str) -> Any:
        if path not in self._cache:
            try:
                self._cache[path] = self._load(self.by_path[path])
            except SpecError as e:
                self._cache[path] = e
        found = self._cache[path]
        if isinstance(found, SpecError):
            raise found
        return found

    @staticmethod
    def _load(file: dict) -> Any:
        text = file.get("text")
        if not isinstance(text, str):
            raise SpecError("file has no text")
        doc = _parse(file["path"], str(file.get("language", "")), text)
        # Aliases share nodes, so a few lines of YAML can stand for billions; real documents stay under this.
        budget = _Budget(10 * len(text) + 10_000, "YAML aliases expand to too many nodes")
        try:
            return _plain(doc, budget)
        except RecursionError:
            raise SpecError("nested too deeply") from None


# --- $ref resolution -------------------------------------------------------------------------------------------


class _Resolver:
    """Inlines $refs of one spec. A ref met again while it is being resolved becomes a circular marker."""

    def __init__(self, files: _Files, merge_siblings: bool) -> None:
        self.files = files
        self.merge_siblings = merge_siblings  # OpenAPI 3.1 only: 2.0 and 3.0 say siblings of $ref are ignored

    def resolve(self, node: Any, base: str, budget: _Budget) -> Any:
        return self._resolve(node, base, budget, set(), 0)

    def _resolve(self, node: Any, base: str, budget: _Budget, active: set[tuple[str, str]], depth: int) -> Any:
        budget.spend()
        if depth > MAX_RESOLVED_DEPTH:
            raise SpecError(f"resolved schema nested deeper than {MAX_RESOLVED_DEPTH} levels")
        if isinstance(node, list):
            items = []
            for v in node:
                items.append(self._resolve(v, base, budget, active, depth + 1))
            return items
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str):
            return self._resolve_ref(node, ref, base, budget, active, depth)
        mapping = {}
        for k, v in node.items():
            mapping[k] = self._resolve(v, base, budget, active, depth + 1)
        return mapping

    def _resolve_ref(
        self, node: dict, ref: str, base: str, budget: _Budget, active: set[tuple[str, str]], depth: int
    ) -> Any:
        siblings = {k: v for k, v in node.items() if k != "$ref"}
        key = self.locate(ref, base)
        if key is None:  # a URL: left for whoever reads the record
            result: Any = {"$ref": ref}
            siblings_apply = True
        elif key in active:
            result = {"$ref": ref, "x-circular": True}
            siblings_apply = self.merge_siblings
        else:
            target = self.target(ref, key)
            active.add(key)
            try:
                result = self._resolve(target, key[0], budget, active, depth + 1)
            finally:
                active.discard(key)
            siblings_apply = self.merge_siblings
        if siblings and siblings_apply and isinstance(result, dict):
            extra = {k: self._resolve(v, base, budget, active, depth + 1) for k, v in siblings.items()}
            result = {**result, **extra}
        return result

    def follow(self, node: Any, base: str) -> tuple[Any, str]:
        """`node` with its own $ref chain followed (not its insides), and the file its insides are relative to."""
        seen: set[tuple[str, str]] = set()
        while isinstance(node, dict) and isinstance(node.get("$ref"), str):
            ref = node["$ref"]
            key = self.locate(ref, base)
            if key is None:
                break
            if key in seen:
                raise SpecError(f"circular $ref '{ref}'")
            seen.add(key)
            node, base = self.target(ref, key), key[0]
        return node, base

    @staticmethod
    def locate(ref: str, base: str) -> tuple[str, str] | None:
        """(file, JSON pointer) that `ref` in file `base` points to; None for URLs, which are never fetched."""
        if _URL.match(ref):
            return None
        file_part, _, fragment = ref.partition("#")
        file = posixpath.normpath(posixpath.join(posixpath.dirname(base), unquote(file_part))) if file_part else base
        return file, unquote(fragment)

    def target(self, ref: str, key: tuple[str, str]) -> Any:
        file, pointer = key
        if file not in self.files:
            raise SpecError(f"dangling $ref '{ref}'")
        try:
            node = self.files.load(file)
        except SpecError as e:
            raise SpecError(f"unreadable $ref '{ref}': {e}") from None
        if pointer == "":
            return node
        if not pointer.startswith("/"):  # plain-name fragments ($anchor) are not supported
            raise SpecError(f"dangling $ref '{ref}'")
        for token in pointer[1:].split("/"):
            token = token.replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict) and token in node:
                node = node[token]
            elif isinstance(node, list) and _ARRAY_INDEX.match(token) and int(token) < len(node):
                node = node[int(token)]
            else:
                raise SpecError(f"dangling $ref '{ref}'")
        return node


# --- small readers ---------------------------------------------------------------------------------------------


def _get(obj: Any, key: str) -> Any:
    return obj.get(key) if isinstance(obj, dict) else None


def _text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return str(value)
    return None


def _tags(value: Any) -> list[str]:
    return [t for t in (_text(v) for v in value) if t is not None] if isinstance(value, list) else []


def _schema(value: Any) -> dict | None:
    """A schema object; 3.1's boolean schemas become their object equivalents."""
    if isinstance(value, dict):
        return value
    if isinstance(value, bool):
        return {} if value else {"not": {}}
    return None


def _status(code: Any) -> str:
    status = str(code).strip()
    return "default" if status.lower() == "default" else status.upper()


def _is_json_type(content_type: str) -> bool:
    return content_type.split(";")[0].strip().lower() == "application/json"


def _pick_type(types: Any) -> str | None:
    """application/json when offered, else the first."""
    names = [t for t in types if isinstance(t, str)] if isinstance(types, list) else []
    return next((t for t in names if _is_json_type(t)), names[0] if names else None)


def _pick_media(content: Any) -> tuple[str | None, Any]:
    if not isinstance(content, dict) or not content:
        return None, {}
    chosen = _pick_type(list(content))
    return chosen, content.get(chosen) if chosen is not None else {}


def _media_example(media: Any) -> Any:
    if not isinstance(media, dict):
        return None
    if "example" in media:
        return media["example"]
    examples = media.get("examples")
    if isinstance(examples, dict) and examples:
        first = next(iter(examples.values()))
        return first.get("value") if isinstance(first, dict) else first
    return None


def endpoint_id(source: str, path: str, method: str, url_path: str) -> str:
    return hashlib.sha256(f"{source}\0{path}\0{method}\0{url_path}".encode()).hexdigest()[:16]


# --- OpenAPI and Swagger ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Operation:
    method: str
    url_path: str
    fields: Callable[[], Fields]  # raises SpecError when the operation cannot be read


def _merged_parameters(path_params: Any, op_params: Any, resolve: Callable[[Any], Any]) -> list[Any]:
    """Path-level parameters, then the operation's; on the same name and location the operation's win."""
    merged: dict[Any, Any] = {}
    for position, param in enumerate([*_list(path_params), *_list(op_params)]):
        resolved = resolve(param)
        name, where = _get(resolved, "name"), _get(resolved, "in")
        key = (name, where) if isinstance(name, str) and isinstance(where, str) else position
        merged[key] = resolved
    return list(merged.values())


def _list(value: Any) -> list:
    return value if isinstance(value, list) else []


def _parameter(param: Any, schema: dict | None) -> Fields:
    where = _get(param, "in")
    return {
        "name": _get(param, "name"),
        "in": where,
        "required": _get(param, "required") is True or where == "path",  # path parameters are always required
        "description": _text(_get(param, "description")),
        "schema": schema,
    }


def _openapi3_parameter(param: Any) -> Fields:
    schema = _get(param, "schema")
    if schema is None:  # a parameter may describe itself by media type instead
        schema = _get(_pick_media(_get(param, "content"))[1], "schema")
    return _parameter(param, _schema(schema))


def _swagger2_parameter(param: Any) -> Fields:
    if isinstance(param, dict) and "schema" in param:
        return _parameter(param, _schema(param["schema"]))
    schema = {k: param[k] for k in _SWAGGER2_SCHEMA_KEYS if k in param} if isinstance(param, dict) else {}
    return _parameter(param, schema or None)


def _openapi3_fields(op: dict, item: dict, resolve: Callable[[Any], Any]) -> Fields:
    params = _merged_parameters(item.get("parameters"), op.get("parameters"), resolve)
    body = resolve(op.get("requestBody"))
    request_body = None
    if isinstance(body, dict):
        content_type, media = _pick_media(body.get("content"))
        request_body = {
            "content_type": content_type,
            "required": body.get("required") is True,
            "schema": _schema(_get(media, "schema")),
            "example": _media_example(media),
        }
    responses = []
    for status, response in _responses(op):
        resolved = resolve(response)
        content_type, media = _pick_media(_get(resolved, "content"))
        responses.append(
            {
                "status": _status(status),
                "description": _text(_get(resolved, "description")),
                "content_type": content_type,
                "schema": _schema(_get(media, "schema")),
            }
        )
    return {
        **_described(op, item),
        "parameters": [_openapi3_parameter(p) for p in params],
        "request_body": request_body,
        "responses": responses,
    }


def _swagger2_fields(op: dict, item: dict, doc: dict, resolve: Callable[[Any], Any]) -> Fields:
    params = _merged_parameters(item.get("parameters"), op.get("parameters"), resolve)
    body = next((p for p in params if _get(p, "in") == "body"), None)
    request_body = None
    if body is not None:
        request_body = {
            "content_type": _pick_type(op.get("consumes", doc.get("consumes"))),
            "required": body.get("required") is True,
            "schema": _schema(body.get("schema")),
            "example": None,
        }
    produces = _pick_type(op.get("produces", doc.get("produces")))
    responses = []
    for status, response in _responses(op):
        resolved = resolve(response)
        schema = _schema(_get(resolved, "schema"))
        responses.append(
            {
                "status": _status(status),
                "description": _text(_get(resolved, "description")),
                "content_type": produces if schema is not None else None,
                "schema": schema,
            }
        )
    return {
        **_described(op, item),
        "parameters": [_swagger2_parameter(p) for p in params if _get(p, "in") != "body"],
        "request_body": request_body,
        "responses": responses,
    }


def _responses(op: dict) -> list[tuple[str, Any]]:
    responses = op.get("responses")
    if not isinstance(responses, dict):
        return []
    return [(status, r) for status, r in responses.items() if not status.startswith("x-")]


def _described(op: dict, item: dict) -> Fields:
    """The operation's own words; a path item's summary and description apply to operations without them."""
    return {
        "operation_id": _text(op.get("operationId")),
        "summary": _text(op.get("summary")) or _text(item.get("summary")),
        "description": _text(op.get("description")) or _text(item.get("description")),
        "tags": _tags(op.get("tags")),
    }


def _openapi_operations(
    doc: dict, path: str, fmt: str, resolver: _Resolver, problems: list[tuple[str, str]]
) -> Iterator[_Operation]:
    paths = doc.get("paths")
    if paths is None and fmt == "openapi-3.1":
        return  # 3.1 specs may hold only webhooks or components
    if not isinstance(paths, dict):
        problems.append(("", "spec has no 'paths' mapping"))
        return
    for url_path, raw_item in paths.items():
        if url_path.startswith("x-"):
            continue
        try:
            item, base = resolver.follow(raw_item, path)
        except SpecError as e:
            problems.append((url_path, str(e)))
            continue
        if not isinstance(item, dict):
            problems.append((url_path, "path item is not a mapping"))
            continue
        for method, op in item.items():
            if method not in METHODS:
                continue
            fields = partial(_operation_fields, op, item, doc, base, fmt, resolver)
            yield _Operation(method.upper(), url_path, fields)


def _operation_fields(op: Any, item: dict, doc: dict, base: str, fmt: str, resolver: _Resolver) -> Fields:
    if not isinstance(op, dict):
        raise SpecError("operation is not a mapping")
    budget = _Budget(MAX_RESOLVED_NODES, f"resolved schemas exceed {MAX_RESOLVED_NODES} nodes")
    resolve = partial(resolver.resolve, base=base, budget=budget)
    if fmt == "openapi-2.0":
        return _swagger2_fields(op, item, doc, resolve)
    return _openapi3_fields(op, item, resolve)


# --- Postman ---------------------------------------------------------------------------------------------------


def _postman_requests(items: Any, folders: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], dict]]:
    """Every request item, depth first, with the names of the folders around it."""
    for item in _list(items):
        if not isinstance(item, dict):
            continue
        if "request" in item:
            yield folders, item
        elif isinstance(item.get("item"), list):
            yield from _postman_requests(item["item"], (*folders, _text(item.get("name")) or ""))


def _postman_text(value: Any) -> str | None:
    """Postman descriptions are strings or {content, type} objects."""
    return _text(_get(value, "content")) if isinstance(value, dict) else _text(value)


def _path_from_raw(raw: str) -> str:
    rest = raw.split("#", 1)[0].split("?", 1)[0].strip()
    scheme_host = re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/]*", rest)
    if scheme_host:
        rest = rest[scheme_host.end() :]
    elif not rest.startswith("/"):  # the first segment is the host: {{baseUrl}}, api.shop.example, localhost:8080
        rest = rest.partition("/")[2]
    return "/" + rest.lstrip("/")


def _query_from_raw(raw: str) -> list[dict]:
    query = raw.split("#", 1)[0].partition("?")[2]
    pairs = (p.partition("=") for p in query.split("&") if p)
    return [{"key": key, "value": value} for key, _, value in pairs]


def _postman_url(url: Any) -> tuple[str, list, list]:
    """(url path as written without the host, query entries, path variable entries)."""
    if isinstance(url, str):
        return _path_from_raw(url), _query_from_raw(url), []
    raw = _text(_get(url, "raw")) or ""
    segments = _get(url, "path")
    if isinstance(segments, list):
        parts = [_text(s) if not isinstance(s, dict) else _text(s.get("value")) for s in segments]
        url_path = "/" + "/".join(p or "" for p in parts)
    elif isinstance(segments, str):
        url_path = "/" + segments.lstrip("/")
    else:
        url_path = _path_from_raw(raw)
    query = _get(url, "query")
    return url_path, _list(query) if query is not None else _query_from_raw(raw), _list(_get(url, "variable"))


def _header_value(headers: Any, name: str) -> str | None:
    for header in _list(headers):
        if str(_get(header, "key")).lower() == name and _get(header, "disabled") is not True:
            return _text(_get(header, "value"))
    return None


def _postman_parameters(url_path: str, query: list, variables: list, headers: Any) -> list[Fields]:
    params = []
    declared = set()
    for var in variables:
        declared.add(_text(_get(var, "key")))
        params.append(_postman_parameter(var, "path"))
    for segment in url_path.split("/"):
        if segment.startswith(":") and segment[1:] not in declared:
            declared.add(segment[1:])
            params.append(_postman_parameter({"key": segment[1:]}, "path"))
    params += [_postman_parameter(q, "query") for q in query]
    # Content-Type describes the body, as in OpenAPI, where it is not a header parameter.
    params += [_postman_parameter(h, "header") for h in _list(headers) if str(_get(h, "key")).lower() != "content-type"]
    return params


def _postman_parameter(entry: Any, where: str) -> Fields:
    return {
        "name": _text(_get(entry, "key")),
        "in": where,
        "required": where == "path",  # Postman has no notion of optional; only path variables must be there
        "description": _postman_text(_get(entry, "description")),
        "schema": None,
    }


def _json_value(raw: str) -> tuple[bool, Any]:
    try:
        return True, _plain(json.loads(raw), _Budget(10 * len(raw) + 100, "too large"))
    except (ValueError, RecursionError, SpecError):
        return False, None


def _postman_body(body: Any, headers: Any) -> Fields | None:
    if not isinstance(body, dict) or body.get("disabled") is True:
        return None
    mode = body.get("mode")
    declared = _header_value(headers, "content-type")
    if mode == "raw":
        raw = body.get("raw")
        if not isinstance(raw, str) or not raw.strip():
            return None
        is_json, parsed = _json_value(raw)
        language = _get(_get(_get(body, "options"), "raw"), "language")
        # Raw bodies often hold {{variables}}, which no JSON parser accepts; they still read as JSON.
        json_like = is_json or language == "json" or raw.lstrip()[0] in "{["
        content_type = declared or ("application/json" if json_like else _RAW_LANGUAGE_TYPES.get(str(language)))
        example = parsed if is_json else raw
    elif mode in ("urlencoded", "formdata"):
        fields = {
            str(f["key"]): f.get("value", f.get("src"))
            for f in _list(body.get(mode))
            if isinstance(f, dict) and "key" in f and f.get("disabled") is not True
        }
        default = "application/x-www-form-urlencoded" if mode == "urlencoded" else "multipart/form-data"
        content_type, example = declared or default, fields or None
    elif mode == "graphql":
        content_type, example = declared or "application/json", body.get("graphql")
    elif mode == "file":
        content_type, example = declared or "application/octet-stream", None
    else:
        return None
    return {"content_type": content_type, "required": True, "schema": None, "example": example}


def _postman_response(response: Any) -> Fields:
    code = _get(response, "code")
    content_type = _header_value(_get(response, "header"), "content-type")
    if content_type is None and _get(response, "_postman_previewlanguage") == "json":
        content_type = "application/json"
    return {
        "status": _status(code) if isinstance(code, int | str) else "default",
        "description": _text(_get(response, "name")) or _text(_get(response, "status")),
        "content_type": content_type,
        "schema": None,
    }


def _postman_fields(item: dict, folders: tuple[str, ...], url_path: str, request: dict) -> Fields:
    if request.get("url") is None:
        raise SpecError("request has no URL")
    _, query, variables = _postman_url(request.get("url"))
    headers = request.get("header")
    return {
        "operation_id": None,
        "summary": _text(item.get("name")),
        "description": _postman_text(request.get("description")) or _postman_text(item.get("description")),
        "tags": [f for f in folders if f],
        "parameters": _postman_parameters(url_path, query, variables, headers),
        "request_body": _postman_body(request.get("body"), headers),
        "responses": [_postman_response(r) for r in _list(item.get("response"))],
    }


def _postman_operations(doc: dict) -> Iterator[_Operation]:
    for folders, item in _postman_requests(doc.get("item")):
        request = item["request"]
        if isinstance(request, str):  # v2.1 allows a bare URL for a GET
            request = {"url": request, "method": "GET"}
        if not isinstance(request, dict):
            request = {}
        url_path = _postman_url(request.get("url"))[0]
        method = (_text(request.get("method")) or "GET").upper()
        yield _Operation(method, url_path, partial(_postman_fields, item, folders, url_path, request))


# --- detection and the public entry point ----------------------------------------------------------------------


def spec_format(doc: Any) -> str | None:
    """The format of a parsed document, or None when it is no API spec; raises on a spec version not supported."""
    if not isinstance(doc, dict):
        return None
    if "swagger" in doc or "openapi" in doc:
        key = "swagger" if "swagger" in doc else "openapi"
        version = _text(doc[key]) or ""
        if key == "swagger" and version == "2.0":
            return "openapi-2.0"
        if key == "openapi" and re.match(r"^3\.[01](\.\d+)?([-+].*)?$", version):
            return f"openapi-3.{version[2]}"
        if _VERSION.match(version):  # `swagger: true` in a service config is no spec; `openapi: 3.2.0` is
            raise SpecError(f"unsupported {key} version '{version}'")
        return None
    schema = _text(_get(doc.get("info"), "schema")) or ""
    if "collection/v2.1" in schema or "collection/v2.0" in schema:
        return "postman-2.1"
    return None


def looks_like_spec(path: str, text: str) -> bool:
    """Whether an unparsable file was probably meant as a spec, so that its failure is worth reporting."""
    name = posixpath.basename(path).lower()
    if any(word in name for word in ("openapi", "swagger", "api")) or name.endswith(".postman_collection.json"):
        return True
    return "openapi:" in text or '"openapi"' in text or "swagger" in text.lower()


def _spec_info(doc: dict, fmt: str) -> tuple[str | None, str | None]:
    info = doc.get("info")
    if fmt != "postman-2.1":
        return _text(_get(info, "title")), _text(_get(info, "version"))
    version = _get(info, "version")
    if isinstance(version, dict):  # {major, minor, patch}
        version = ".".join(str(version.get(k, 0)) for k in ("major", "minor", "patch"))
    return _text(_get(info, "name")), _text(version)


def _extract_file(file: dict, files: _Files) -> tuple[list[dict], list[Quarantined]]:
    source, path = str(file.get("source", "")), file["path"]

    def quarantine(reason: str, item: str = "") -> Quarantined:
        return Quarantined(source, path, STAGE, reason, item)

    try:
        doc = files.load(path)
    except SpecError as e:
        return [], [quarantine(str(e))] if looks_like_spec(path, file["text"]) else []
    try:
        fmt = spec_format(doc)
    except SpecError as e:
        return [], [quarantine(str(e))]
    if fmt is None:
        return [], []

    problems: list[tuple[str, str]] = []
    if fmt == "postman-2.1":
        operations = _postman_operations(doc)
    else:
        operations = _openapi_operations(doc, path, fmt, _Resolver(files, fmt == "openapi-3.1"), problems)
    title, version = _spec_info(doc, fmt)
    records: list[dict] = []
    rejected: list[Quarantined] = []
    seen: set[str] = set()
    for op in operations:
        item = f"{op.method} {op.url_path}"
        try:
            fields = op.fields()
        except SpecError as e:
            rejected.append(quarantine(str(e), item))
            continue
        except RecursionError:
            rejected.append(quarantine("nested too deeply", item))
            continue
        record = {
            "endpoint_id": endpoint_id(source, path, op.method, op.url_path),
            "source": source,
            "path": path,
            "spec_format": fmt,
            "spec_title": title,
            "spec_version": version,
            "method": op.method,
            "url_path": op.url_path,
            **fields,
        }
        if errors := validation_errors("api_endpoint", record):
            rejected.append(quarantine("; ".join(errors), item))
        elif record["endpoint_id"] in seen:  # Postman collections often save several requests to one endpoint
            rejected.append(quarantine("duplicate of an earlier operation with the same method and path", item))
        else:
            seen.add(record["endpoint_id"])
            records.append(record)
    rejected += [quarantine(reason, item) for item, reason in problems]
    return records, rejected


def extract_api_endpoints(files: list[dict]) -> tuple[list[dict], list[Quarantined]]:
    """One `api_endpoint` record per operation of every API spec among one source's crawled files.

    Files that are no spec yield nothing; what a spec holds that cannot become a record is quarantined.
    """
    store = _Files(files)
    records: list[dict] = []
    quarantined: list[Quarantined] = []
    for file in files:
        if not (
            isinstance(file, dict)
            and file.get("language") in ("yaml", "json")
            and isinstance(file.get("path"), str)
            and isinstance(file.get("text"), str)
        ):
            continue
        try:
            found, rejected = _extract_file(file, store)
        except Exception as e:  # a bug met by one odd file must not cost the source its other specs
            reason = f"internal error: {e!r}"
            found, rejected = [], [Quarantined(str(file.get("source", "")), file["path"], STAGE, reason)]
        records += found
        quarantined += rejected
    return records, quarantined
