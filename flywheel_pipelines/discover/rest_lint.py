"""Lint `api_endpoint` records against REST conventions, and score the result.

Why: a model fine-tuned on `POST /createPost` learns to write `POST /createPost`. Training data is therefore linted
before it is used, and the same lint later scores the endpoints a model writes (`score` is that eval metric).

Entry points: `lint_endpoint(record)` for one operation, `lint_endpoints(records)` for a batch (adds the rules that need
the rest of the spec), `score(findings, endpoint_count)`. Records may be odd (missing keys, None, wrong types): the
lint never raises, it lints what is there.

Rules (ids are stable; see `RULES`):

| id                     | severity | flags                                                                     |
|------------------------|----------|---------------------------------------------------------------------------|
| verb-in-path           | error    | a static segment that is or starts with a verb (`createPost`, `get-user`) |
| singular-collection    | warning  | a collection segment (before a `{param}`, or a POST/GET-list target) that |
|                        |          | is singular (`/user/{id}`, `POST /order`)                                 |
| get-with-body          | error    | GET, HEAD or DELETE with a request body                                   |
| post-for-read          | warning  | a POST that reads (see `_post_for_read`)                                  |
| missing-error-response | warning  | no 4xx, 5xx or default response                                           |
| inconsistent-casing    | warning  | kebab/snake/camelCase mixed within a spec, or uppercase in a segment      |
| trailing-slash         | info     | `/pets/`                                                                  |
| file-extension-in-path | warning  | `/pets.json`                                                              |
| missing-path-param     | error    | `{id}` in the path with no `in: path` parameter named `id`                |

Limits (deliberate, to keep false positives down; the lint is heuristic, not a grammar):
- Words that are both verbs and common resource nouns (`post`, `set`, `upload`, `export`, `process`, ...) count as
  verbs only as the first word of a compound segment (`postComment`, `export-csv`), never alone.
- Run-together lowercase segments (`createpost`) are caught only for a few CRUD verbs (`_RUN_TOGETHER_VERBS`).
- Singular/plural comes from a small rule set (regular plurals, -ies, -es, irregulars, uncountables), not a
  dictionary; `inflect` is not a dependency. Words it does not know are judged by their ending.
- Postman `{{variables}}` are environment substitutions, not declared parameters, so they never count as missing.
- A Postman request with no saved responses says nothing about the API's errors: it is not flagged as missing them.
- `search` alone is allowed (like `login`, `health`: `ALLOWED_SEGMENTS`), `search-pets` is a verb-led segment.
- A verb-led segment is not also judged for casing or plurality: its fix (createPost -> posts) replaces it.
- Google AIP custom methods (`/orders/{id}:cancel`) are an accepted convention: the `:verb` part is not linted.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

Severity = Literal["error", "warning", "info"]


def _wordset(text: str) -> frozenset[str]:
    """Word tables are written as whitespace-separated text: long lists stay readable."""
    return frozenset(text.split())


RULES: dict[str, tuple[Severity, str]] = {
    "verb-in-path": (
        "error",
        "A path segment is or starts with a verb (createPost, get-user); the HTTP method carries the action.",
    ),
    "singular-collection": (
        "warning",
        "A collection segment (followed by a {param}, or the target of a POST or of a GET that returns a list) is "
        "singular: /user/{id}, POST /order.",
    ),
    "get-with-body": ("error", "A GET, HEAD or DELETE has a request body, which many servers and proxies drop."),
    "post-for-read": (
        "warning",
        "A POST reads: its operationId, summary or path starts with a read verb (get, list, show...; search, query, "
        "find and filter only without a body), or it has no body, only a 200 with a body, and no state-changing word.",
    ),
    "missing-error-response": ("warning", "The operation documents no 4xx, 5xx or default response."),
    "inconsistent-casing": (
        "warning",
        "A static segment has uppercase letters, or uses kebab-case, snake_case or camelCase while the spec mostly "
        "uses another; flagged once per offending segment per spec.",
    ),
    "trailing-slash": ("info", "The path ends in '/'; /pets/ and /pets are different URIs."),
    "file-extension-in-path": (
        "warning",
        "A segment ends in a format extension (/pets.json); formats belong in content negotiation (Accept).",
    ),
    "missing-path-param": ("error", "A {param} in the path has no parameter of the same name with in: path."),
}

# Score weights: an error is a convention a reviewer would reject, a warning one they would query, an info a nit.
SEVERITY_WEIGHTS: dict[Severity, float] = {"error": 1.0, "warning": 0.25, "info": 0.05}

# Verbs flagged alone (`/list`) or as the first word of a segment (`createPost`, `get-user`, `update_item`).
_VERBS = _wordset(
    """
    create get fetch retrieve read list find show lookup load delete remove destroy erase purge update modify edit
    add insert do make perform execute invoke save write cancel approve reject validate verify submit send calculate
    compute generate apply assign unassign activate deactivate enable disable subscribe unsubscribe publish unpublish
    reset restore rename move clone duplicate toggle convert mark unmark
    """
)
# Verbs that are also everyday resource nouns (/posts, /uploads, /exports): flagged only as the first word of a
# compound segment (postComment, upload-photo), never when they stand alone.
_PREFIX_VERBS = _wordset("post put set patch view search upload download import export process check copy run sync")
# Run-together lowercase segments (`createpost`, `getuser`) are caught for these only, and only when what follows the
# verb is not a derivational suffix (`listings`, `readers`, `settings` stay nouns).
_RUN_TOGETHER_VERBS = ("retrieve", "create", "delete", "update", "modify", "remove", "insert", "fetch", "get")
_NOT_A_NOUN_REMAINDER = _wordset(
    "s es d ed r er ers or ors ing ings ion ions ation ations ment ments able ible al als ive ives ure ures y ly iness "
    "orial ee ees ter ters"
)

# Action-like segments that style guides commonly accept; not flagged as verbs nor as singular collections.
ALLOWED_SEGMENTS = _wordset(
    """
    search login logout me health status batch
    healthz readyz livez readiness liveness ping token authorize signin signout signup self
    """
)
# Namespaces, not resources: never judged as (singular) collections.
_NAMESPACES = _wordset("api apis rest graphql admin internal public private auth oauth oauth2 well-known")
_VERSION = re.compile(r"^v\d+(?:\.\d+)*(?:(?:alpha|beta|rc)\d*)?$", re.IGNORECASE)

# Read words that make a POST suspicious whatever its body; search-like ones are fine with a query in the body.
_READ_WORDS = _wordset("get fetch retrieve read list show view")
_SEARCH_WORDS = _wordset("search query find filter lookup")
# Words that say a POST changes state; any of them keeps the "200 with a body" clause of post-for-read quiet.
_STATE_WORDS = (
    (
        _VERBS
        | _PREFIX_VERBS
        | _wordset(
            """
        place pay charge refund book reserve buy purchase checkout order start stop pause resume register login logout
        signin signout signup token authorize refresh batch notify trigger accept decline confirm close open lock
        unlock archive transfer upsert merge share invite join leave webhook webhooks event events callback
        """
        )
    )
    - _READ_WORDS
    - _SEARCH_WORDS
)

# Format extensions: the representation is the Accept header's business, not the URI's.
_FORMAT_EXTENSIONS = _wordset("json xml yaml yml csv tsv html htm txt php asp aspx jsp cgi")
# Files that conventionally live at fixed names; serving them is not a REST design choice.
_WELL_KNOWN_FILES = _wordset(
    "openapi.json openapi.yaml openapi.yml swagger.json swagger.yaml robots.txt sitemap.xml security.txt"
)

# --- singular / plural -------------------------------------------------------------------------------------------
# A small rule set instead of a dependency: regular plurals, -ies, -es, the irregulars APIs actually use, and
# uncountables (neither singular nor plural, never flagged).
_UNCOUNTABLE = _wordset(
    """
    data metadata info information health status stock inventory feedback equipment media news software hardware
    firmware config auth billing shipping pricing analytics history content traffic weather money music
    evidence advice staff personnel access storage cache audio search login logout me series species sheep fish deer
    aircraft moose bison swine trout salmon
    """
)
_IRREGULAR_PLURALS = {
    "person": "people", "child": "children", "man": "men", "woman": "women", "mouse": "mice", "goose": "geese",
    "foot": "feet", "tooth": "teeth", "ox": "oxen", "criterion": "criteria", "phenomenon": "phenomena",
    "index": "indices", "matrix": "matrices", "vertex": "vertices", "appendix": "appendices", "analysis": "analyses",
    "axis": "axes", "basis": "bases", "crisis": "crises", "diagnosis": "diagnoses", "thesis": "theses",
    "synopsis": "synopses", "datum": "data", "medium": "media", "life": "lives", "wife": "wives", "knife": "knives",
    "leaf": "leaves", "half": "halves", "shelf": "shelves", "wolf": "wolves", "thief": "thieves", "hero": "heroes",
    "potato": "potatoes", "tomato": "tomatoes", "echo": "echoes", "veto": "vetoes", "alias": "aliases",
    "canvas": "canvases", "atlas": "atlases", "bias": "biases", "gas": "gases", "quiz": "quizzes", "bus": "buses",
    "campus": "campuses", "virus": "viruses", "bonus": "bonuses", "census": "censuses", "corpus": "corpora",
}  # fmt: skip
_IRREGULAR_SINGULARS = {plural: singular for singular, plural in _IRREGULAR_PLURALS.items()}


def is_singular(word: str) -> bool:
    """True when `word` is a countable noun in the singular; uncountables and plurals are False."""
    w = word.lower()
    if w in _UNCOUNTABLE or w in _IRREGULAR_SINGULARS:
        return False
    if w in _IRREGULAR_PLURALS:
        return True
    # -ss (address), -us (campus), -is (analysis) end in s and are singular; any other final s reads as a plural.
    return not w.endswith("s") or w.endswith(("ss", "us", "is"))


def pluralize(word: str) -> str:
    """The plural of a (lowercase) noun by the same rule set; uncountables are returned unchanged."""
    w = word.lower()
    if w in _UNCOUNTABLE or not is_singular(w):
        return w
    if w in _IRREGULAR_PLURALS:
        return _IRREGULAR_PLURALS[w]
    if len(w) > 1 and w.endswith("y") and w[-2] not in "aeiou":
        return w[:-1] + "ies"
    if w.endswith(("s", "x", "z", "ch", "sh")):
        return w + "es"
    return w + "s"


# --- findings --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """One broken convention: `rule` is an id of `RULES`, `endpoint` reads like "GET /pets/{id}"."""

    rule: str
    severity: Severity
    endpoint: str
    message: str


def _finding(rule: str, endpoint: str, message: str) -> Finding:
    return Finding(rule, RULES[rule][0], endpoint, message)


# --- reading odd records ---------------------------------------------------------------------------------------


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _dicts(value: Any) -> list[dict]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


@dataclass(frozen=True)
class _Segment:
    raw: str  # as written in the path
    kind: str  # "static", "param" ({id}, :id, {{var}}, or a segment holding one), "empty"
    text: str  # static: the name linted (extension, custom method and a leading $ or . stripped)
    extension: str | None  # "json" for pets.json or {id}.json


_TEMPLATE = re.compile(r"(?<!\{)\{([^{}]+)\}(?!\})")  # {id}, not {{var}}
_POSTMAN_VAR = re.compile(r"\{\{[^{}]*\}\}")
_EXTENSION = re.compile(r"\.([A-Za-z0-9]+)$")


def _segment(raw: str) -> _Segment:
    if not raw:
        return _Segment(raw, "empty", "", None)
    match = _EXTENSION.search(raw)
    extension = match.group(1).lower() if match and match.group(1).lower() in _FORMAT_EXTENSIONS else None
    if raw.lower() in _WELL_KNOWN_FILES:
        extension = None
    if raw.startswith(":") or _TEMPLATE.search(raw) or _POSTMAN_VAR.search(raw):
        return _Segment(raw, "param", "", extension)
    text = raw[: match.start()] if extension and match else raw
    # AIP custom method (books/{id}:archive, books:batchGet): the part after ':' is an accepted convention.
    text = text.split(":", 1)[0]
    text = text.lstrip("$.")  # OData $batch, /.well-known
    return _Segment(raw, "static" if text else "empty", text, extension)


def _path(endpoint: dict) -> str:
    # Records hold the path alone, but an odd one may carry a query or fragment; neither is part of the resource.
    return re.split(r"[?#]", _str(endpoint.get("url_path")), maxsplit=1)[0]


def _segments(path: str) -> list[_Segment]:
    return [_segment(part) for part in path.split("/")[1 if path.startswith("/") else 0 :]]


_CAMEL_WORDS = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")


def _words(text: str) -> list[str]:
    """`createPost` -> [create, post]; `get-user`, `update_item`, `HTTPServer` -> [http, server]; lowercase."""
    return [w.lower() for part in re.split(r"[-_.\s]+", text) for w in _CAMEL_WORDS.findall(part)]


def _label(endpoint: dict) -> str:
    method = _str(endpoint.get("method")).upper() or "?"
    return f"{method} {_str(endpoint.get('url_path')) or '?'}"


def _method(endpoint: dict) -> str:
    return _str(endpoint.get("method")).upper()


def _has_body(endpoint: dict) -> bool:
    body = endpoint.get("request_body")
    return body is not None and body is not False and body != {} and body != ""


def _responses(endpoint: dict) -> list[tuple[str, dict]]:
    return [(str(r.get("status")).strip().upper(), r) for r in _dicts(endpoint.get("responses"))]


def _is_allowed(text: str) -> bool:
    return re.sub(r"[-_]", "", text.lower()) in ALLOWED_SEGMENTS


# --- per-endpoint rules ----------------------------------------------------------------------------------------

# The method a CRUD verb asks for, so a message can say what to write instead.
_VERB_METHODS = {
    **dict.fromkeys(_wordset("create add insert make post submit"), "POST"),
    **dict.fromkeys(_wordset("get fetch retrieve read list find show view lookup load search"), "GET"),
    **dict.fromkeys(_wordset("update modify edit set put patch"), "PATCH"),
    **dict.fromkeys(_wordset("delete remove destroy erase purge"), "DELETE"),
}


def _leading_verb(text: str) -> tuple[str, list[str]] | None:
    """The verb a static segment is or starts with, and the words after it; None when it does not."""
    if _is_allowed(text):
        return None
    words = _words(text)
    if not words:
        return None
    first, rest = words[0], words[1:]
    if first in _VERBS or (first in _PREFIX_VERBS and rest):
        return first, rest
    if len(words) == 1:
        for verb in _RUN_TOGETHER_VERBS:
            remainder = first[len(verb) :]
            if first.startswith(verb) and len(remainder) >= 3 and remainder not in _NOT_A_NOUN_REMAINDER:
                return verb, [remainder]
    return None


def _verb_in_path(endpoint: dict, segments: list[_Segment]) -> list[Finding]:
    findings = []
    for i, seg in enumerate(segments):
        if seg.kind != "static" or _VERSION.match(seg.text):
            continue
        found = _leading_verb(seg.text)
        if found is None:
            continue
        verb, rest = found
        method = _VERB_METHODS.get(verb)
        if method is None:  # cancel, approve, ...: an action on a resource rather than CRUD
            parent = "/" + "/".join(s.raw for s in segments[:i])
            advice = (
                f"model '{verb}' as a noun sub-resource created with POST, or as a state change with PATCH {parent}"
            )
        else:
            noun = [*rest[:-1], pluralize(rest[-1])] if rest else []
            replaced = (
                [s.raw for s in segments[:i]] + (["-".join(noun)] if noun else []) + [s.raw for s in segments[i + 1 :]]
            )
            how = "name the resource" if noun else "drop the segment"
            advice = f"let the method carry the action and {how}: {method} /{'/'.join(replaced)}"
        what = "is the verb" if not rest else "starts with the verb"
        findings.append(
            _finding("verb-in-path", _label(endpoint), f"path segment '{seg.raw}' {what} '{verb}'; {advice}")
        )
    return findings


def _returns_list(endpoint: dict) -> bool:
    for status, response in _responses(endpoint):
        schema = response.get("schema")
        if status.startswith("2") and isinstance(schema, dict):
            kind = schema.get("type")
            if kind == "array" or (isinstance(kind, list) and "array" in kind):
                return True
    return False


def _collection_candidate(seg: _Segment) -> bool:
    return (
        seg.kind == "static"
        and not _VERSION.match(seg.text)
        and not _is_allowed(seg.text)
        and seg.text.lower() not in _NAMESPACES
        and _leading_verb(seg.text) is None  # already an error; a second finding on it would say nothing new
    )


def _singular_collection(endpoint: dict, segments: list[_Segment]) -> list[Finding]:
    present = [s for s in segments if s.kind != "empty"]
    method = _method(endpoint)
    reasons: dict[int, str] = {}
    for i in range(len(present)):
        if i + 1 < len(present) and present[i + 1].kind == "param":
            reasons[i] = f"is followed by the parameter '{present[i + 1].raw}'"
    if present and present[-1].kind == "static":
        if method == "POST":
            reasons.setdefault(len(present) - 1, "is what this POST creates in")
        elif method == "GET" and _returns_list(endpoint):
            reasons.setdefault(len(present) - 1, "is what this GET lists")
    findings = []
    for i, reason in sorted(reasons.items()):
        seg = present[i]
        words = _words(seg.text)
        if not _collection_candidate(seg) or not words or len(words[-1]) < 2 or not is_singular(words[-1]):
            continue
        plural = "-".join([*words[:-1], pluralize(words[-1])])
        findings.append(
            _finding(
                "singular-collection",
                _label(endpoint),
                f"collection segment '{seg.raw}' {reason} but is singular; name collections in the plural: '{plural}'",
            )
        )
    return findings


def _get_with_body(endpoint: dict) -> list[Finding]:
    method = _method(endpoint)
    if method not in ("GET", "HEAD", "DELETE") or not _has_body(endpoint):
        return []
    instead = "query parameters" if method != "DELETE" else "the path (or a POST to a batch resource)"
    return [
        _finding(
            "get-with-body",
            _label(endpoint),
            f"{method} has a request body, which has no defined meaning for {method} and is dropped by many "
            f"clients and proxies; pass its data in {instead}",
        )
    ]


def _stems(word: str) -> set[str]:
    """`Lists` -> list, `Creates` -> create, `placed` -> place: enough English to read a summary's first word."""
    stems = {word}
    if word.endswith("ies"):
        stems.add(word[:-3] + "y")
    if word.endswith("s"):
        stems.add(word[:-1])
    if word.endswith(("es", "ed")):
        stems.update({word[:-2], word[:-1]})
    if word.endswith("ing"):
        stems.update({word[:-3], word[:-3] + "e"})
    return stems


def _post_for_read(endpoint: dict, segments: list[_Segment]) -> list[Finding]:
    """POST used for a read. Conservative on purpose, as a false alarm teaches the wrong lesson too:

    1. the operationId's or the summary's first word, or a static path segment's first word, is a read verb
       (get, fetch, retrieve, read, list, show, view); search, query, find, filter and lookup count only when the
       POST has no body, since POST with the query in the body is an accepted search pattern;
    2. or the POST has no body, its only 2xx response is a 200 with content, and no state-changing word appears in
       its path, operationId or summary.
    """
    if _method(endpoint) != "POST":
        return []
    has_body = _has_body(endpoint)
    operation_id, summary = _str(endpoint.get("operation_id")), _str(endpoint.get("summary"))
    # Candidate words: the first of the operationId (listPets), of the summary, stemmed (Lists pets), and of each
    # static segment. A segment's read word counts only where verb-in-path would see a verb: /views is a noun.
    places = [("operationId", operation_id, set(_words(operation_id)[:1]))]
    places += [("summary", summary, _stems(_words(summary)[0]) if _words(summary) else set())]
    for seg in (s for s in segments if s.kind == "static"):
        first = _words(seg.text)[:1]
        if first and (first[0] in _SEARCH_WORDS or _leading_verb(seg.text) is not None):
            places.append(("path segment", seg.raw, set(first)))
    for where, text, words in places:
        read = words & _READ_WORDS or (words & _SEARCH_WORDS if not has_body else set())
        if read:
            word = sorted(read)[0]
            if word in _READ_WORDS:
                why, how = f"starts with '{word}'", "use GET with query parameters"
            else:
                why = f"starts with '{word}' but the POST has no body"
                how = "use GET with query parameters, or send the query in the request body"
            return [_finding("post-for-read", _label(endpoint), f"POST reads: {where} '{text}' {why}; {how}")]
    success = [(status, r) for status, r in _responses(endpoint) if status.startswith("2")]
    if has_body or [status for status, _ in success] != ["200"]:
        return []
    response = success[0][1]
    if response.get("schema") is None and response.get("content_type") is None:
        return []
    words = {w for text in (operation_id, summary, _path(endpoint)) for w in _words(text)}
    if any(_stems(w) & _STATE_WORDS for w in words):
        return []
    return [
        _finding(
            "post-for-read",
            _label(endpoint),
            "POST reads: it takes no body, answers only 200 with content and no word in its path, operationId or "
            "summary says it changes anything; use GET, or return 201/202/204 if it does change state",
        )
    ]


def _missing_error_response(endpoint: dict) -> list[Finding]:
    statuses = [status for status, _ in _responses(endpoint)]
    if any(s.startswith(("4", "5")) or s == "DEFAULT" for s in statuses):
        return []
    if not statuses and _str(endpoint.get("spec_format")).startswith("postman"):
        return []  # saved responses are optional examples in Postman; none saved says nothing about errors
    documented = f"documents only {', '.join(statuses)}" if statuses else "documents no responses at all"
    return [
        _finding(
            "missing-error-response",
            _label(endpoint),
            f"the operation {documented}; document its 4xx (and 5xx or default) responses with an error schema",
        )
    ]


def _trailing_slash(endpoint: dict) -> list[Finding]:
    path = _path(endpoint)
    if len(path) <= 1 or not path.endswith("/"):
        return []
    return [
        _finding(
            "trailing-slash",
            _label(endpoint),
            f"the path ends in '/'; write '{path.rstrip('/') or '/'}', as /pets/ and /pets are different URIs",
        )
    ]


def _file_extension(endpoint: dict, segments: list[_Segment]) -> list[Finding]:
    findings = []
    for seg in segments:
        if seg.extension is None:
            continue
        bare = seg.raw[: -len(seg.extension) - 1]
        findings.append(
            _finding(
                "file-extension-in-path",
                _label(endpoint),
                f"path segment '{seg.raw}' ends in the file extension '.{seg.extension}'; drop it ('{bare}') and "
                f"choose the format by content negotiation (Accept header)",
            )
        )
    return findings


def _missing_path_param(endpoint: dict, segments: list[_Segment]) -> list[Finding]:
    declared = {
        p.get("name") for p in _dicts(endpoint.get("parameters")) if p.get("in") == "path" and p.get("name") is not None
    }
    findings, seen = [], set()
    for seg in segments:
        # Postman {{variables}} are substituted from the environment; they are not parameters to declare.
        names = [(n, "{" + n + "}") for n in _TEMPLATE.findall(seg.raw)]
        if seg.raw.startswith(":") and len(seg.raw) > 1:
            names.append((seg.raw[1:], seg.raw))
        for name, written in names:
            if name in declared or name in seen:
                continue
            seen.add(name)
            findings.append(
                _finding(
                    "missing-path-param",
                    _label(endpoint),
                    f"path template '{written}' has no parameter named '{name}' with in: path; declare it "
                    f"(in: path, required: true) or fix the name",
                )
            )
    return findings


def _endpoint_findings(endpoint: dict) -> list[Finding]:
    segments = _segments(_path(endpoint))
    return [
        *_verb_in_path(endpoint, segments),
        *_singular_collection(endpoint, segments),
        *_get_with_body(endpoint),
        *_post_for_read(endpoint, segments),
        *_missing_error_response(endpoint),
        *_trailing_slash(endpoint),
        *_file_extension(endpoint, segments),
        *_missing_path_param(endpoint, segments),
    ]


# --- spec-wide rule: casing ------------------------------------------------------------------------------------

_STYLE_PREFERENCE = ("kebab-case", "snake_case", "camelCase")  # breaks ties when picking a spec's convention


def _style(text: str) -> str | None:
    """kebab-case, snake_case, camelCase (PascalCase too), "mixed" (- and _), or None for a single lowercase word."""
    if "-" in text and "_" in text:
        return "mixed"
    if "-" in text:
        return "kebab-case"
    if "_" in text:
        return "snake_case"
    if re.search(r"[a-z][A-Z]", text) or (text[:1].isupper() and any(c.islower() for c in text)):
        return "camelCase"
    return None


def _casing(endpoints: list[dict]) -> dict[int, list[Finding]]:
    """inconsistent-casing findings by endpoint index, one per offending segment per spec, at its first endpoint."""
    specs: dict[tuple[str, str], dict[str, int]] = {}  # spec -> segment text -> first endpoint index
    for index, endpoint in enumerate(endpoints):
        spec = (_str(endpoint.get("source")), _str(endpoint.get("path")))
        first_seen = specs.setdefault(spec, {})
        for seg in _segments(_path(endpoint)):
            # A verb-led segment is an error whose fix replaces it (createPost -> posts); its casing is moot.
            if seg.kind == "static" and any(c.isalpha() for c in seg.text) and _leading_verb(seg.text) is None:
                first_seen.setdefault(seg.text, index)
    found: dict[int, list[Finding]] = {}
    for first_seen in specs.values():
        counts = {style: 0 for style in _STYLE_PREFERENCE}
        for text in first_seen:
            style = _style(text)
            if style in counts:
                counts[style] += 1
        used = [style for style in _STYLE_PREFERENCE if counts[style]]
        # The convention is the style most segments use; with one style or none, nothing is mixed.
        convention = max(used, key=lambda s: counts[s]) if len(used) > 1 else None
        for text, index in first_seen.items():
            style = _style(text)
            reasons = []
            if any(c.isupper() for c in text):
                reasons.append("has uppercase letters")
            if style == "mixed":
                reasons.append("mixes '-' and '_'")
            elif convention is not None and style is not None and style != convention:
                reasons.append(f"is {style} while this spec mostly uses {convention}")
            if not reasons:
                continue
            separator = "_" if convention == "snake_case" else "-"  # camelCase is never the fix: it has capitals
            endpoint = endpoints[index]
            found.setdefault(index, []).append(
                _finding(
                    "inconsistent-casing",
                    _label(endpoint),
                    f"path segment '{text}' {' and '.join(reasons)}; write it '{separator.join(_words(text))}'",
                )
            )
    return found


# --- entry points ----------------------------------------------------------------------------------------------


def lint_endpoints(endpoints: Iterable[Any]) -> list[Finding]:
    """All findings for a batch of endpoint records, in record order; casing is judged per spec (source, path)."""
    records = [e if isinstance(e, dict) else {} for e in (endpoints or [])]
    casing = _casing(records)
    findings: list[Finding] = []
    for index, endpoint in enumerate(records):
        findings += _endpoint_findings(endpoint)
        findings += casing.get(index, [])
    return findings


def lint_endpoint(endpoint: Any) -> list[Finding]:
    """Findings for one endpoint record; casing is judged within its own path."""
    return lint_endpoints([endpoint])


def score(findings: Iterable[Finding], endpoint_count: int) -> float:
    """1.0 for clean endpoints, falling towards 0 as findings pile up.

    score = 1 / (1 + penalty / max(endpoint_count, 1)), penalty = Σ SEVERITY_WEIGHTS[finding.severity]
    (error 1.0, warning 0.25, info 0.05; an unknown severity weighs as a warning).

    So one error per endpoint scores 0.5, one warning per endpoint 0.8. The curve never reaches 0 and never clamps,
    so a worse output always scores lower, and it is normalised by size, so specs of any size compare.
    """
    penalty = sum(SEVERITY_WEIGHTS.get(getattr(f, "severity", None), SEVERITY_WEIGHTS["warning"]) for f in findings)
    try:
        count = max(int(endpoint_count), 1)
    except (TypeError, ValueError, OverflowError):
        count = 1
    return 1.0 / (1.0 + penalty / count)
