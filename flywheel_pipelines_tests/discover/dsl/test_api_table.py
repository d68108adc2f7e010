"""Step 2: API designs as a markdown table an LLM can write and a machine can check, to and from endpoint records."""

from __future__ import annotations

import hashlib
import json
import random
from collections import defaultdict
from pathlib import Path

import pytest

from flywheel_pipelines.discover.api_specs import extract_api_endpoints
from flywheel_pipelines.discover.dsl import DslError, DslSyntaxError
from flywheel_pipelines.discover.dsl.api_table import (
    MAX_NESTING,
    design_from_endpoints,
    parse,
    render,
    schema_type,
    validate,
)
from flywheel_pipelines.schemas import validation_errors

API_SAMPLES = Path(__file__).resolve().parents[3] / "data" / "samples" / "api"
HEADER = "| API | Method | Description | Request | Response | Error response |\n| --- | --- | --- | --- | --- | --- |\n"


def crawled(path: str, text: str) -> dict:
    """A file record as the crawl step makes it."""
    language = "json" if path.endswith(".json") else "yaml"
    digest = hashlib.sha256(text.encode()).hexdigest()
    return {
        "source": "shop",
        "path": path,
        "language": language,
        "size_bytes": len(text.encode()),
        "sha256": digest,
        "text": text,
    }


def sample_files() -> list[dict]:
    paths = sorted(p for p in API_SAMPLES.rglob("*") if p.is_file())
    return [crawled(p.relative_to(API_SAMPLES).as_posix(), p.read_text(encoding="utf-8")) for p in paths]


def sample_designs() -> dict[str, dict]:
    """One design per sample spec file."""
    records, rejected = extract_api_endpoints(sample_files())
    assert rejected == []
    by_spec: dict[str, list[dict]] = defaultdict(list)
    for record in records:
        by_spec[record["path"]].append(record)
    return {path: design_from_endpoints(found) for path, found in by_spec.items()}


def rows_of(text: str) -> dict[str, str]:
    """The table's data rows, keyed 'METHOD /path'."""
    rows = {}
    for line in text.splitlines()[text.splitlines().index(HEADER.splitlines()[1]) + 1 :]:
        cells = line.split(" | ")
        rows[f"{cells[1]} {cells[0][2:]}"] = line
    return rows


def parsed(text: str) -> dict:
    """`parse`, checking on the way that what it returns is a valid design."""
    design = parse(text)
    assert validation_errors("api_design", design) == []
    return design


def table(*rows: str, title: str | None = None) -> str:
    return (f"### {title}\n\n" if title else "") + HEADER + "".join(row + "\n" for row in rows)


def syntax_errors(text: str) -> list[DslError]:
    with pytest.raises(DslSyntaxError) as raised:
        parse(text)
    assert validate(text)[: len(raised.value.errors)] == raised.value.errors  # validate reports them too
    return raised.value.errors


def design_of(spec: dict, path: str = "api.json") -> dict:
    """The design of an inline OpenAPI document."""
    records, rejected = extract_api_endpoints([crawled(path, json.dumps(spec))])
    assert rejected == []
    return design_from_endpoints(records)


# --- from the sample specs -------------------------------------------------------------------------------------


def test_every_sample_spec_renders_to_a_table_that_parses_back_to_the_same_design():
    designs = sample_designs()
    assert set(designs) == {
        "petstore-openapi3.yaml",
        "checkout-openapi3.yaml",
        "inventory-swagger2.json",
        "orders-openapi31.yaml",
        "shop.postman_collection.json",
    }
    for path, design in designs.items():
        assert validation_errors("api_design", design) == [], path
        text = render(design)
        assert parsed(text) == design, path
        assert render(parse(text)) == text, path


def test_every_sample_spec_design_validates_clean():
    for path, design in sample_designs().items():
        assert validate(render(design)) == [], path


def test_the_petstore_table_reads_like_the_spec():
    text = render(sample_designs()["petstore-openapi3.yaml"])
    assert text.startswith("### Pet Shop Catalogue API\n\n" + HEADER)
    rows = rows_of(text)
    error = "{code: string, message: string, details?: [{field?: string, issue?: string}]}"
    pet = (
        '{name: string, species: "dog"\\|"cat"\\|"bird"\\|"fish", price?: number<double>, born?: string<date>, '
        'id: integer<int64>, status?: "available"\\|"reserved"\\|"sold"}'
    )
    assert rows["GET /pets/{petId}"] == (
        f"| /pets/{{petId}} | GET | Show one pet | path: {{petId: integer<int64>}} | 200: {pet} | 404: {error} |"
    )
    assert rows["GET /pets"] == (
        '| /pets | GET | List pets for sale | query: {limit?: integer, species?: "dog"\\|"cat"\\|"bird"\\|"fish"} '
        f"| 200: [{pet}] | default: {error} |"
    )
    # The header parameter is part of the design; a 204 has a status but no body.
    assert rows["DELETE /pets/{petId}"] == (
        "| /pets/{petId} | DELETE | Take a pet off sale | path: {petId: integer<int64>}; "
        f"header: {{X-Request-Id?: string<uuid>}} | 204: - | 4XX: {error} |"
    )


def test_a_circular_schema_shows_as_its_name_and_nullable_types_as_unions():
    rows = rows_of(render(sample_designs()["orders-openapi31.yaml"]))
    assert "200: {id: integer, name: string, parent?: Category}" in rows["GET /categories/{categoryId}"]
    assert "unitPrice?: number\\|null" in rows["POST /orders"]
    assert "placedAt?: string<date-time>" in rows["POST /orders"]
    # A body the spec does not require is marked optional; the 422 error keeps its problem+json schema.
    assert "; body?: {lines: [" in rows["PATCH /orders/{orderId}"]
    assert rows["POST /orders"].endswith(
        "| 422: {code: string, message: string, details?: [{field?: string, issue?: string}]} |"
    )


def test_swagger_form_fields_and_file_uploads_become_a_form_part():
    rows = rows_of(render(sample_designs()["inventory-swagger2.json"]))
    assert rows["POST /stock/{sku}/photo"] == (
        "| /stock/{sku}/photo | POST | Upload a product photo | path: {sku: string}; "
        "form: {photo: string<binary>, caption?: string} | 204: - | - |"
    )
    assert (
        "| 400: {code?: string, message?: string} ; 404: {code?: string, message?: string} |"
        in rows["PUT /stock/{sku}"]
    )


def test_a_postman_collection_gets_openapi_style_paths_and_bodies_from_its_examples():
    rows = rows_of(render(sample_designs()["shop.postman_collection.json"]))
    assert rows["GET /carts/{cartId}"] == "| /carts/{cartId} | GET | Get cart | path: {cartId: any} | - | - |"
    # The {{orderId}} variable is a path parameter nobody declared; the body is a raw string with variables.
    assert rows["POST /orders/{orderId}/payments"] == (
        "| /orders/{orderId}/payments | POST | Pay for order | path: {orderId: any}; query: {dryRun?: any}; "
        "header: {Idempotency-Key?: any}; body: any | - | - |"
    )
    # Saved responses have a status and a JSON content type, but no schema.
    assert rows["POST /carts/{cartId}/items"].endswith(
        "| path: {cartId: any}; body: {sku: string, quantity: integer} | 201: any | 422: any |"
    )


def test_only_the_lowest_success_is_the_response_and_errors_are_ordered_with_default_last():
    spec = {
        "openapi": "3.0.3",
        "info": {"title": "T", "version": "1"},
        "paths": {
            "/things": {
                "post": {
                    "responses": {
                        "default": {"description": "d"},
                        "503": {"description": "x", "content": {"application/json": {"schema": {"type": "string"}}}},
                        "4XX": {"description": "x"},
                        "404": {"description": "x"},
                        "202": {"description": "x", "content": {"application/json": {"schema": {"type": "boolean"}}}},
                        "201": {"description": "x", "content": {"application/json": {"schema": {"type": "integer"}}}},
                        "302": {"description": "a redirect is neither"},
                    }
                }
            }
        },
    }
    operation = design_of(spec)["operations"][0]
    assert operation["response"] == {"status": "201", "body": {"kind": "primitive", "type": "integer", "format": None}}
    assert [o["status"] for o in operation["error_response"]] == ["404", "4XX", "503", "default"]
    assert rows_of(render(design_of(spec)))["POST /things"] == (
        "| /things | POST |  | - | 201: integer | 404: - ; 4XX: - ; 503: string ; default: - |"
    )


def test_the_description_is_the_summary_else_the_first_line_of_the_description_on_one_line():
    spec = {
        "openapi": "3.0.3",
        "info": {"title": "  Two\nlines  ", "version": "1"},
        "paths": {
            "/a": {"get": {"summary": "Pipes | and\n  breaks", "description": "ignored", "responses": {}}},
            "/b": {"get": {"description": "\n\nFirst  line.\nSecond line.", "responses": {}}},
        },
    }
    design = design_of(spec)
    assert design["title"] == "Two lines"
    assert [op["description"] for op in design["operations"]] == ["Pipes | and breaks", "First line."]
    text = render(design)
    assert "| Pipes \\| and breaks |" in text
    assert parsed(text) == design


def test_schemas_the_notation_cannot_say_become_any_and_compositions_are_merged():
    assert schema_type({}) == {"kind": "any"}
    assert schema_type({"type": "object", "additionalProperties": {"type": "integer"}}) == {
        "kind": "object",
        "fields": [],
    }
    assert schema_type({"oneOf": [{"type": "string"}, {}]}) == {"kind": "any"}
    nullable = schema_type({"type": "string", "format": "date", "nullable": True})
    assert nullable == {
        "kind": "union",
        "of": [
            {"kind": "primitive", "type": "string", "format": "date"},
            {"kind": "primitive", "type": "null", "format": None},
        ],
    }
    merged = schema_type(
        {
            "allOf": [
                {"type": "object", "properties": {"a": {"type": "string"}, "b": {}}},
                {"type": "object", "required": ["a"], "properties": {"b": {"type": "integer"}}},
            ],
            "properties": {"c": {"type": "boolean"}},
        }
    )
    assert [(f["name"], f["optional"], f["type"].get("type")) for f in merged["fields"]] == [
        ("a", False, "string"),
        ("b", True, "integer"),
        ("c", True, "boolean"),
    ]
    # A format the notation could not read back is dropped; so is a format on a boolean.
    assert schema_type({"type": "string", "format": "has space"})["format"] is None
    assert schema_type({"type": "boolean", "format": "flag"})["format"] is None
    # A schema named like a primitive keeps a name that cannot be mistaken for it.
    assert schema_type({"$ref": "#/definitions/string", "x-circular": True}) == {"kind": "ref", "name": "String_"}


def test_a_very_deep_schema_is_cut_to_any_and_still_round_trips():
    schema: dict = {"type": "string"}
    example: object = "leaf"
    for _ in range(3 * MAX_NESTING):
        schema = {"type": "object", "required": ["x"], "properties": {"x": {"type": "array", "items": schema}}}
        example = {"x": [example]}
    record = {
        "spec_title": "Deep",
        "spec_format": "postman-2.1",
        "method": "POST",
        "url_path": "/deep/:id",
        "summary": "Deep",
        "description": None,
        "parameters": [{"name": "q", "in": "query", "required": True, "description": None, "schema": schema}],
        "request_body": {"content_type": "application/json", "required": True, "schema": None, "example": example},
        "responses": [{"status": "200", "description": None, "content_type": "application/json", "schema": schema}],
    }
    design = design_from_endpoints([record])
    text = render(design)
    assert "any" in text and "string" not in text
    assert parsed(text) == design
    assert validate(text) == []


# --- hand-written designs ---------------------------------------------------------------------------------------


def prim(name: str, fmt: str | None = None) -> dict:
    return {"kind": "primitive", "type": name, "format": fmt}


def obj(*fields: tuple[str, bool, dict]) -> dict:
    return {"kind": "object", "fields": [{"name": n, "optional": o, "type": t} for n, o, t in fields]}


def lit(value: object) -> dict:
    return {"kind": "literal", "value": value}


HAND_WRITTEN = {
    "title": "Odd corners",
    "operations": [
        {
            "api": "/files/{fileId}",
            "method": "PUT",
            "description": 'Says "hi" | escapes \\ and ends with a backslash \\',
            "request": [
                {"part": "path", "optional": False, "type": obj(("fileId", False, prim("string", "uuid")))},
                {"part": "header", "optional": False, "type": obj(("If-Match", True, prim("string")))},
                {"part": "cookie", "optional": False, "type": obj(("session", False, {"kind": "any"}))},
                {
                    "part": "body",
                    "optional": True,
                    "type": obj(
                        ("first name", False, prim("string")),
                        ("@type", False, lit("file")),
                        ("", True, prim("null")),
                        ("size", False, {"kind": "union", "of": [lit(1), lit(-2.5), lit(1e21), lit(True)]}),
                        ("tags", True, {"kind": "array", "items": {"kind": "array", "items": prim("number")}}),
                        ("meta", True, obj()),
                        ("parent", True, {"kind": "ref", "name": "File.v2"}),
                        ("quote", False, {"kind": "union", "of": [lit('a|b"c\\'), lit("日本\u2028"), prim("null")]}),
                    ),
                },
            ],
            "response": {"status": "2XX", "body": {"kind": "union", "of": [obj(("a", False, prim("integer"))), obj()]}},
            "error_response": [{"status": "409", "body": None}, {"status": "default", "body": {"kind": "any"}}],
        },
        {
            "api": "/",
            "method": "OPTIONS",
            "description": "",
            "request": [],
            "response": None,
            "error_response": [],
        },
    ],
}


def test_a_hand_written_design_with_odd_names_literals_and_escapes_round_trips():
    assert validation_errors("api_design", HAND_WRITTEN) == []
    text = render(HAND_WRITTEN)
    assert parsed(text) == HAND_WRITTEN
    assert render(parse(text)) == text
    row = text.split("\n")[4]  # splitlines() would also break at the U+2028 the JSON escapes
    assert row.startswith('| /files/{fileId} | PUT | Says "hi" \\| escapes \\ and ends with a backslash \\\\ | ')
    assert '"first name": string, "@type": "file"' not in row  # @type needs no quotes
    assert '{"first name": string, @type: "file", ""?: null, size: 1\\|-2.5\\|1e+21\\|true, ' in row
    assert '"日本\\u2028"' in row
    assert "| 2XX: {a: integer}\\|{} | 409: - ; default: any |" in row
    assert text.split("\n")[5] == "| / | OPTIONS |  | - | - | - |"


def test_canonical_text_written_by_hand_renders_back_byte_for_byte():
    text = table(
        "| /pets/{petId} | GET | Show one pet | path: {petId: integer<int64>} "
        "| 200: {id: integer, tag?: string\\|null} | 404: {code: string} ; default: any |",
        '| /pets | POST | Add a pet | body: {name: string, kind: "dog"\\|"cat"} | 201: - | 422: [{field: string}] |',
        title="Pets",
    )
    assert render(parsed(text)) == text


def test_without_a_title_line_the_title_is_none_and_no_heading_is_rendered():
    text = table("| /health | GET | Health check | - | 200: - | - |")
    design = parsed(text)
    assert design["title"] is None
    assert render(design) == text


def random_type(rng: random.Random, depth: int = 0, union: bool = True) -> dict:
    kinds = ["any", "primitive", "literal", "ref"] + (["object", "array"] + ["union"] * union if depth < 4 else [])
    kind = rng.choice(kinds)
    if kind == "primitive":
        name = rng.choice(["string", "integer", "number", "boolean", "null"])
        fmt = rng.choice([None, "date-time", "int64", "x.y+z"]) if name in ("string", "integer", "number") else None
        return prim(name, fmt)
    if kind == "literal":
        return lit(rng.choice([random_text(rng), rng.randint(-99, 99), rng.random() * 10 ** rng.randint(-5, 25), True]))
    if kind == "ref":
        return {"kind": "ref", "name": rng.choice(["Category", "A", "Node.v1", "X-y_z"])}
    if kind == "object":
        return random_object(rng, depth + 1)
    if kind == "array":
        return {"kind": "array", "items": random_type(rng, depth + 1)}
    if kind == "union":
        return {"kind": "union", "of": [random_type(rng, depth + 1, union=False) for _ in range(rng.randint(2, 3))]}
    return {"kind": "any"}


def random_object(rng: random.Random, depth: int) -> dict:
    fields = [(random_text(rng), rng.random() < 0.5, random_type(rng, depth)) for _ in range(rng.randint(0, 3))]
    return obj(*fields)


def random_text(rng: random.Random) -> str:
    return "".join(rng.choice('ab Z9_-.@$|\\"{}:;?,<>[]\t日') for _ in range(rng.randint(0, 8)))


def random_operation(rng: random.Random) -> dict:
    parts = rng.sample(["path", "query", "header", "cookie", "form"], rng.randint(0, 2))
    request = [{"part": part, "optional": False, "type": random_object(rng, 1)} for part in parts]
    if rng.random() < 0.5:
        request.append({"part": "body", "optional": rng.random() < 0.5, "type": random_type(rng)})
    statuses = rng.sample(["400", "5XX", "default"], rng.randint(0, 3))
    return {
        "api": " ".join(("/" + random_text(rng)).split()),
        "method": rng.choice(["GET", "POST", "TRACE"]),
        "description": " ".join(random_text(rng).split()),
        "request": request,
        "response": rng.choice([None, {"status": "200", "body": random_type(rng)}, {"status": "204", "body": None}]),
        "error_response": [{"status": s, "body": rng.choice([None, random_type(rng)])} for s in statuses],
    }


def random_design(rng: random.Random) -> dict:
    operations = [random_operation(rng) for _ in range(rng.randint(0, 4))]
    return {"title": rng.choice([None, "API", "Ünïcode | title"]), "operations": operations}


def test_any_valid_design_survives_render_and_parse():
    rng = random.Random(20240611)
    for _ in range(300):
        design = random_design(rng)
        assert validation_errors("api_design", design) == []
        text = render(design)
        assert parse(text) == design, text


def test_render_refuses_what_is_no_design():
    broken = {"title": None, "operations": [{**HAND_WRITTEN["operations"][1], "description": "two\nlines"}]}
    with pytest.raises(ValueError, match="description"):
        render(broken)
    unflat = {"kind": "union", "of": [{"kind": "union", "of": [prim("string"), prim("null")]}, prim("integer")]}
    nested_union = {
        "title": None,
        "operations": [{**HAND_WRITTEN["operations"][1], "response": {"status": "200", "body": unflat}}],
    }
    with pytest.raises(ValueError):
        render(nested_union)
    query_not_object = {"part": "query", "optional": False, "type": prim("string")}
    with pytest.raises(ValueError):
        render({"title": None, "operations": [{**HAND_WRITTEN["operations"][1], "request": [query_not_object]}]})
    too_deep: dict = prim("string")
    for _ in range(MAX_NESTING + 1):
        too_deep = {"kind": "array", "items": too_deep}
    with pytest.raises(ValueError, match="deeper"):
        render(
            {
                "title": None,
                "operations": [{**HAND_WRITTEN["operations"][1], "response": {"status": "200", "body": too_deep}}],
            }
        )


# --- a model's answer --------------------------------------------------------------------------------------------


def test_a_models_answer_with_prose_around_the_table_is_read():
    answer = (
        "Sure! Here is the API design you asked for.\n"
        "\n"
        "| Assumption | Why |\n"
        "| --- | --- |\n"
        "| ids are integers | the spec says so |\n"
        "\n"
        "### Pets\n"
        "\n"
        "```markdown\n"
        "| API | Method | Description | Request | Response | Error response |\r\n"
        "|:----|:------:|-------------|---------|----------|---------------:|\r\n"
        "|/pets/{petId}|GET|Show one pet|path: {petId: integer}|200: {id: integer,name: string}|404: any\r\n"
        "```\n"
        "\n"
        "Let me know if you want changes.\n"
    )
    design = parsed(answer)
    assert design == {
        "title": "Pets",
        "operations": [
            {
                "api": "/pets/{petId}",
                "method": "GET",
                "description": "Show one pet",
                "request": [{"part": "path", "optional": False, "type": obj(("petId", False, prim("integer")))}],
                "response": {
                    "status": "200",
                    "body": obj(("id", False, prim("integer")), ("name", False, prim("string"))),
                },
                "error_response": [{"status": "404", "body": {"kind": "any"}}],
            }
        ],
    }
    assert validate(answer) == []


def test_text_without_a_table_says_so():
    errors = syntax_errors("I could not design this API, sorry.")
    assert errors == [DslError("text", "table", errors[0].reason)]
    assert "| API | Method |" in errors[0].reason


def test_a_wrong_header_names_the_column_that_is_wrong():
    text = table("| /a | GET | A | - | - | - |").replace("| Error response |", "| Errors |")
    assert syntax_errors(text) == [DslError("header", "columns", "column 6 is 'Errors', expected 'Error response'")]
    short = "| API | Method | Description |\n| --- | --- | --- |\n| /a | GET | A |\n"
    errors = syntax_errors(short)
    assert errors[0].location == "header" and "expected 6 columns" in errors[0].reason
    assert DslError("header", "delimiter", "has 3 cells, expected 6") in errors
    assert any(e.location == "row 1" and e.field == "columns" for e in errors)


def test_a_missing_delimiter_row_is_reported_and_the_line_read_as_a_row():
    text = HEADER.splitlines()[0] + "\n| /a | GET | A | - | - | - |\n"
    assert syntax_errors(text) == [
        DslError("header", "delimiter", "expected the row | --- | --- | ... under the header")
    ]


def test_a_row_with_a_missing_column_is_reported_as_row_n():
    text = table(
        "| /a | GET | A | - | 200: - | - |",
        "| /b | GET | B | - | 200: - |",
        "| /c | GET | C | - | 200: - | - |",
    )
    errors = syntax_errors(text)
    assert [(e.location, e.field) for e in errors] == [("row 2", "columns")]
    assert errors[0].reason.startswith("has 5 cells, expected 6")


def test_an_unescaped_pipe_in_a_union_is_reported_with_the_way_to_write_it():
    errors = syntax_errors(table('| /a | GET | A | query: {kind: "a"|"b"} | 200: - | - |'))
    assert errors[0].location == "row 1"
    assert "has 7 cells" in errors[0].reason and "\\|" in errors[0].reason


def test_a_malformed_request_body_names_the_row_the_column_and_the_position():
    text = table(
        "| /a | GET | A | - | 200: - | - |",
        "| /b | POST | B | body: {name string} | 201: - | - |",
    )
    assert syntax_errors(text) == [
        DslError("row 2", "Request", "at character 13: expected ':' after field name 'name', found 's'")
    ]


def test_positions_count_the_cell_as_written_escapes_included():
    errors = syntax_errors(table('| /b | POST | B | body: {k: "a"\\|"b" x} | 201: - | - |'))
    # The request cell: b-o-d-y-:-space-{-k-:-space is 1 to 10, "a" is 11 to 13, \\| is 14 and 15, "b" 16 to 18.
    assert errors == [DslError("row 1", "Request", "at character 20: expected '}' or ',' after field 'k', found 'x'")]


@pytest.mark.parametrize(
    ("cell", "column", "reason"),
    [
        ("body: {a: int}", "Request", "at character 11: unknown type 'int'"),
        ("query: string", "Request", "at character 8: expected '{' (query takes an object of parameters)"),
        ("body: {a: string", "Request", "at character 17: expected '}' or ','"),
        ("params: {a: string}", "Request", "at character 1: expected a request part"),
        ('body: "unterminated', "Request", "at character 7: bad string: Unterminated string"),
        ("body: boolean<flag>", "Request", "at character 14: boolean takes no <format>"),
        ("body: 1e999", "Request", "at character 7: number 1e999 is too large"),
        ("body: [string", "Request", "at character 14: expected ']' to close the array"),
        ("body: {a: string}; ", "Request", "at character 19: expected a request part"),  # just past the end
    ],
)
def test_each_kind_of_notation_mistake_is_explained(cell: str, column: str, reason: str):
    (error,) = syntax_errors(table(f"| /a | POST | A | {cell} | 200: - | - |"))
    assert (error.location, error.field) == ("row 1", column)
    assert error.reason.startswith(reason), error.reason


def test_responses_in_the_wrong_shape_are_explained():
    errors = syntax_errors(table("| /a | GET | A | - | 200: string ; 404: - | 4xx: any |"))
    assert [(e.field, e.reason.split(":")[0]) for e in errors] == [
        ("Response", "at character 13"),
        ("Error response", "at character 1"),
    ]
    assert "errors go in Error response" in errors[0].reason
    assert "expected a status such as 200, 4XX or default" in errors[1].reason


def test_an_unknown_or_lower_case_method_is_reported():
    errors = syntax_errors(table("| /a | get | A | - | - | - |", "| /b | FETCH | B | - | - | - |"))
    assert [(e.location, e.field) for e in errors] == [("row 1", "Method"), ("row 2", "Method")]
    assert errors[0].reason.startswith("unknown method 'get'; expected one of GET, PUT")


def test_every_problem_is_reported_at_once():
    text = table(
        "| /a | GET | A | body: {a: } | 200: | nope |",
        "| /b | GET | B | - | - |",
        "| /c | PUTT | C | - | - | - |",
    )
    errors = syntax_errors(text)
    assert [(e.location, e.field) for e in errors] == [
        ("row 1", "Request"),
        ("row 1", "Response"),
        ("row 1", "Error response"),
        ("row 2", "columns"),
        ("row 3", "Method"),
    ]
    assert "row 1, Request: at character 11" in str(DslSyntaxError(errors))


def test_nesting_beyond_the_limit_is_an_error_not_a_crash():
    deep = "[" * 5000 + "string" + "]" * 5000
    (error,) = syntax_errors(table(f"| /a | POST | A | body: {deep} | - | - |"))
    assert error.reason == f"at character {6 + MAX_NESTING + 1}: nested deeper than {MAX_NESTING} levels"


# --- consistency checks ------------------------------------------------------------------------------------------


def reasons(text: str) -> list[tuple[str, str, str]]:
    return [(e.location, e.field, e.reason) for e in validate(text)]


def test_a_get_with_path_param_id_missing_from_the_request_is_flagged():
    text = table("| /orders/{id} | GET | Show an order | query: {expand?: boolean} | 200: {id: string} | - |")
    assert parsed(text)["operations"][0]["api"] == "/orders/{id}"  # it parses: the table is fine, the design not
    assert reasons(text) == [("row 1", "Request", "path parameter {id} of /orders/{id} is missing from path: {...}")]


def test_path_fields_must_match_the_path_and_be_required():
    text = table("| /orders/{id} | GET | Show | path: {id?: string, orderId: string} | - | - |")
    assert reasons(text) == [
        ("row 1", "Request", "path parameter 'id' cannot be optional"),
        ("row 1", "Request", "path: declares 'orderId', but /orders/{id} has no {orderId}"),
    ]


def test_the_same_route_twice_is_flagged_even_with_another_parameter_name():
    text = table(
        "| /pets/{petId} | GET | Show | path: {petId: integer} | - | - |",
        "| /pets/{petId} | DELETE | Remove | path: {petId: integer} | - | - |",
        "| /pets/{id} | GET | Show again | path: {id: integer} | - | - |",
    )
    assert reasons(text) == [("row 3", "API", "GET /pets/{id} is already row 1 (/pets/{petId})")]


def test_bad_paths_are_flagged():
    text = table(
        "| pets | GET | No slash | - | - | - |",
        "| /pets/{petId | GET | Unclosed | path: {petId: integer} | - | - |",
        "| /a/{x}/b/{x}/{} | GET | Twice and empty | path: {x: string} | - | - |",
    )
    assert reasons(text) == [
        ("row 1", "API", "path 'pets' does not start with '/'"),
        ("row 2", "API", "unbalanced braces in path parameters: '{' without its '}'"),
        ("row 3", "API", "path parameter {x} appears twice"),
        ("row 3", "API", "empty path parameter {}"),
        ("row 3", "Request", "path parameter {} of /a/{x}/b/{x}/{} is missing from path: {...}"),
    ]


def test_statuses_in_the_wrong_column_and_other_inconsistencies_are_flagged():
    text = table(
        "| /a | GET |  | query: {q: string}; query: {r: string}; body: {a: string, a: Integer} | 404: any "
        "| 200: - ; 500: - ; 500: - |",
    )
    assert reasons(text) == [
        ("row 1", "Description", "is empty; say in one line what the operation does"),
        ("row 1", "Request", "part 'query' appears twice"),
        ("row 1", "Request", "a GET request has no body; send its data as query parameters"),
        ("row 1", "Request", "field 'a' appears twice"),
        ("row 1", "Request", "'Integer' is no type; primitive types are lower-case: integer"),
        ("row 1", "Response", "status 404 is not a success (2xx); errors go in Error response"),
        ("row 1", "Error response", "status 200 is not an error (4xx, 5xx or default)"),
        ("row 1", "Error response", "status 500 appears twice"),
    ]


def test_an_empty_table_parses_but_does_not_validate():
    assert parsed(HEADER) == {"title": None, "operations": []}
    assert reasons(HEADER) == [("table", "rows", "the table has no operations")]


def test_validate_reports_syntax_errors_and_checks_the_rows_that_did_parse():
    text = table("| /a | GET | A | - | - | - |", "| /a | GET | Again | - | - |", "| /a | GET | Third | - | - | - |")
    assert [(loc, field) for loc, field, _ in reasons(text)] == [("row 2", "columns"), ("row 3", "API")]
