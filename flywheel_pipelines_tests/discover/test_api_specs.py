"""Step 1: OpenAPI/Swagger specs and Postman collections become one endpoint record per operation, refs resolved."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from flywheel_pipelines.discover import api_specs
from flywheel_pipelines.discover.api_specs import extract_api_endpoints
from flywheel_pipelines.schemas import schema, validation_errors

API_SAMPLES = Path(__file__).resolve().parents[2] / "data" / "samples" / "api"
LANGUAGE = {".yaml": "yaml", ".yml": "yaml", ".json": "json", ".md": "markdown", ".py": "python"}


def crawled(path: str, text: str, source: str = "shop") -> dict:
    """A file record as the crawl step makes it."""
    return {
        "source": source,
        "path": path,
        "language": LANGUAGE.get(Path(path).suffix, "text"),
        "size_bytes": len(text.encode()),
        "sha256": hashlib.sha256(text.encode()).hexdigest(),
        "text": text,
    }


def sample_files() -> list[dict]:
    return [
        crawled(p.relative_to(API_SAMPLES).as_posix(), p.read_text(encoding="utf-8"))
        for p in sorted(API_SAMPLES.rglob("*"))
        if p.is_file()
    ]


def samples() -> dict[tuple[str, str, str], dict]:
    records, rejected = extract_api_endpoints(sample_files())
    assert rejected == []
    return {(r["path"], r["method"], r["url_path"]): r for r in records}


def extract(*files: tuple[str, str]) -> tuple[dict[str, dict], list]:
    """Records of inline files, keyed 'METHOD /path', and the quarantine."""
    records, rejected = extract_api_endpoints([crawled(path, text) for path, text in files])
    return {f"{r['method']} {r['url_path']}": r for r in records}, rejected


def refs_left(value: object) -> list[dict]:
    if isinstance(value, dict):
        found = [value] if "$ref" in value else []
        return found + [r for v in value.values() for r in refs_left(v)]
    if isinstance(value, list):
        return [r for v in value for r in refs_left(v)]
    return []


# --- the samples -----------------------------------------------------------------------------------------------


def test_each_sample_spec_yields_one_endpoint_per_operation_with_resolved_schemas():
    records = samples()
    assert set(records) == {
        ("petstore-openapi3.yaml", "GET", "/pets"),
        ("petstore-openapi3.yaml", "POST", "/pets"),
        ("petstore-openapi3.yaml", "GET", "/pets/{petId}"),
        ("petstore-openapi3.yaml", "DELETE", "/pets/{petId}"),
        ("checkout-openapi3.yaml", "POST", "/baskets/{basketId}/payments"),
        ("checkout-openapi3.yaml", "POST", "/baskets/{basketId}/discount-codes"),
        ("checkout-openapi3.yaml", "POST", "/guest-checkouts"),
        ("inventory-swagger2.json", "GET", "/stock"),
        ("inventory-swagger2.json", "GET", "/stock/{sku}"),
        ("inventory-swagger2.json", "PUT", "/stock/{sku}"),
        ("inventory-swagger2.json", "POST", "/stock/{sku}/photo"),
        ("orders-openapi31.yaml", "GET", "/orders"),
        ("orders-openapi31.yaml", "POST", "/orders"),
        ("orders-openapi31.yaml", "PATCH", "/orders/{orderId}"),
        ("orders-openapi31.yaml", "GET", "/categories/{categoryId}"),
        ("shop.postman_collection.json", "GET", "/carts/:cartId"),
        ("shop.postman_collection.json", "POST", "/carts/:cartId/items"),
        ("shop.postman_collection.json", "POST", "/v1/orders"),
        ("shop.postman_collection.json", "POST", "/orders/{{orderId}}/payments"),
        ("shop.postman_collection.json", "GET", "/health"),
    }
    for record in records.values():
        assert validation_errors("api_endpoint", record) == []
        json.dumps(record, allow_nan=False)  # plain JSON all the way down
        assert all(r.get("x-circular") is True for r in refs_left(record)), record["url_path"]
    formats = {r["path"]: (r["spec_format"], r["spec_title"], r["spec_version"]) for r in records.values()}
    assert formats == {
        "checkout-openapi3.yaml": ("openapi-3.0", "Checkout API", "1.2.0"),
        "petstore-openapi3.yaml": ("openapi-3.0", "Pet Shop Catalogue API", "1.4.0"),
        "inventory-swagger2.json": ("openapi-2.0", "Inventory API", "2.1.0"),
        "orders-openapi31.yaml": ("openapi-3.1", "Orders API", "3.0.0"),
        "shop.postman_collection.json": ("postman-2.1", "Shop API", None),
    }


def test_the_record_schema_is_draft_2020_12_and_closed():
    Draft202012Validator.check_schema(schema("api_endpoint"))
    record = samples()[("petstore-openapi3.yaml", "GET", "/pets")]
    assert validation_errors("api_endpoint", {**record, "extra": 1}) == [
        "(record): Additional properties are not allowed ('extra' was unexpected)"
    ]
    assert validation_errors("api_endpoint", {**record, "endpoint_id": "xyz"})[0].startswith("endpoint_id:")


def test_without_libyaml_the_pure_python_loader_gives_the_same_records(monkeypatch: pytest.MonkeyPatch):
    fast = samples()
    monkeypatch.setattr(api_specs, "_CSpecLoader", None)
    assert samples() == fast
    _, rejected = extract(("openapi.yaml", "openapi: 3.0.0\npaths: " + "[" * 5000 + "]" * 5000 + "\n"))
    assert [q.reason for q in rejected] == ["malformed YAML: nested too deeply"]


def test_an_operation_keeps_its_id_words_tags_and_resolved_parameters():
    pets = samples()[("petstore-openapi3.yaml", "GET", "/pets")]
    assert (pets["operation_id"], pets["summary"], pets["tags"]) == ("listPets", "List pets for sale", ["pets"])
    limit, species = pets["parameters"]
    assert limit == {
        "name": "limit",
        "in": "query",
        "required": False,
        "description": "How many pets per page.",
        "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20},
    }
    assert species["schema"]["enum"] == ["dog", "cat", "bird", "fish"]
    listed = pets["responses"][0]
    assert listed["status"] == "200" and listed["schema"]["items"]["allOf"][1]["required"] == ["id"]


def test_the_endpoint_id_is_a_hash_of_source_spec_method_and_path():
    record = samples()[("petstore-openapi3.yaml", "DELETE", "/pets/{petId}")]
    expected = hashlib.sha256(b"shop\0petstore-openapi3.yaml\0DELETE\0/pets/{petId}").hexdigest()[:16]
    assert record["endpoint_id"] == expected
    again, _ = extract_api_endpoints(sample_files())
    assert expected in {r["endpoint_id"] for r in again}


def test_a_relative_file_ref_is_resolved_from_the_referring_files_folder():
    missing = samples()[("petstore-openapi3.yaml", "GET", "/pets/{petId}")]["responses"][1]
    assert (missing["status"], missing["description"]) == ("404", "Something went wrong.")
    error = missing["schema"]
    assert error["required"] == ["code", "message"]
    # error.yaml's own '#/ErrorDetail' is read in error.yaml, not in the spec that pointed there.
    assert error["properties"]["details"]["items"]["properties"]["issue"]["example"] == "must be positive"


def test_path_level_parameters_are_merged_into_each_operation():
    deleted = samples()[("petstore-openapi3.yaml", "DELETE", "/pets/{petId}")]
    assert [(p["name"], p["in"], p["required"]) for p in deleted["parameters"]] == [
        ("petId", "path", True),
        ("X-Request-Id", "header", False),
    ]
    assert [r["status"] for r in deleted["responses"]] == ["204", "4XX"]
    assert deleted["responses"][0]["content_type"] is None


def test_an_operations_parameter_wins_over_the_path_levels_of_the_same_name():
    spec = """
openapi: 3.0.0
info: {title: t, version: '1'}
paths:
  /items/{id}:
    parameters:
      - {name: id, in: path, required: true, description: path level, schema: {type: string}}
      - {name: id, in: query, description: a query id is another parameter}
    get:
      parameters:
        - {name: id, in: path, required: true, description: operation level, schema: {type: integer}}
      responses: {'200': {description: ok}}
"""
    records, _ = extract(("openapi.yaml", spec))
    params = records["GET /items/{id}"]["parameters"]
    assert [(p["in"], p["description"]) for p in params] == [
        ("path", "operation level"),
        ("query", "a query id is another parameter"),
    ]
    assert params[0]["schema"] == {"type": "integer"}


def test_status_codes_are_strings_even_unquoted_in_yaml_and_ranges_are_upper_case():
    spec = """
openapi: 3.0.0
info: {title: t, version: 1.0.0}
paths:
  /x:
    get:
      responses: {200: {description: ok}, 2xx: {description: range}, Default: {description: other}}
"""
    records, _ = extract(("openapi.yaml", spec))
    assert [r["status"] for r in records["GET /x"]["responses"]] == ["200", "2XX", "default"]


def test_json_is_picked_among_several_content_types_and_yaml_dates_stay_text():
    body = samples()[("petstore-openapi3.yaml", "POST", "/pets")]["request_body"]
    assert body["content_type"] == "application/json" and body["required"] is True
    assert body["example"] == {"name": "Rex", "species": "dog", "price": 120.0, "born": "2023-06-01"}
    assert body["schema"]["required"] == ["name", "species"]
    patch = samples()[("orders-openapi31.yaml", "PATCH", "/orders/{orderId}")]["request_body"]
    assert patch["content_type"] == "application/merge-patch+json" and patch["required"] is False


def test_the_first_named_example_is_the_request_bodys_example():
    placed = samples()[("orders-openapi31.yaml", "POST", "/orders")]
    assert placed["request_body"]["example"] == {"lines": [{"sku": "DOG-BED-L", "quantity": 2}]}
    rejected = placed["responses"][1]
    assert (rejected["content_type"], rejected["schema"]["properties"]["code"]["type"]) == (
        "application/problem+json",
        "string",
    )


# --- $ref resolution -------------------------------------------------------------------------------------------


def test_a_circular_schema_is_marked_not_expanded_forever():
    category = samples()[("orders-openapi31.yaml", "GET", "/categories/{categoryId}")]["responses"][0]["schema"]
    assert category["properties"]["parent"] == {
        "$ref": "#/components/schemas/Category",
        "x-circular": True,
        "description": "The enclosing category; absent at the top of the tree.",
    }
    line = samples()[("orders-openapi31.yaml", "GET", "/orders")]["responses"][0]["schema"]["items"]["allOf"][0]
    nested = line["properties"]["lines"]["items"]["properties"]["category"]
    assert nested["properties"]["parent"]["x-circular"] is True


def json_response(schema_ref: str) -> dict:
    return {"description": "d", "content": {"application/json": {"schema": {"$ref": schema_ref}}}}


def test_mutually_recursive_refs_and_a_ref_to_itself_terminate():
    spec = {
        "openapi": "3.0.1",
        "info": {"title": "t", "version": "1"},
        "paths": {
            "/a": {"get": {"responses": {"200": {"$ref": "#/components/responses/A"}}}},
            "/self": {"get": {"responses": {"200": json_response("#/components/schemas/Self")}}},
        },
        "components": {
            "responses": {"A": {"$ref": "#/components/responses/B"}, "B": {"$ref": "#/components/responses/A"}},
            "schemas": {"Self": {"$ref": "#/components/schemas/Self"}},
        },
    }
    records, rejected = extract(("openapi.json", json.dumps(spec)))
    assert rejected == []
    assert records["GET /a"]["responses"][0]["description"] is None
    assert records["GET /self"]["responses"][0]["schema"] == {"$ref": "#/components/schemas/Self", "x-circular": True}


def test_openapi_31_merges_ref_siblings_over_the_target_but_30_ignores_them():
    order = samples()[("orders-openapi31.yaml", "POST", "/orders")]["responses"][0]["schema"]["allOf"][1]
    assert order["properties"]["status"] == {
        "type": "string",
        "enum": ["placed", "paid", "shipped", "cancelled"],
        "description": "Where the order is in its life cycle.",
    }
    spec = """
openapi: 3.0.3
info: {title: t, version: '1'}
paths:
  /x:
    get:
      responses:
        '200':
          description: ok
          content: {application/json: {schema: {$ref: '#/components/schemas/X', description: ignored in 3.0}}}
components: {schemas: {X: {type: string}}}
"""
    records, _ = extract(("openapi.yaml", spec))
    assert records["GET /x"]["responses"][0]["schema"] == {"type": "string"}


def test_json_pointer_escapes_and_percent_encoding_are_understood():
    spec = {
        "openapi": "3.0.0",
        "info": {"title": "t", "version": "1"},
        "paths": {
            "/a/{b}": {"get": {"responses": {"200": {"description": "d"}}}},
            "/copy": {"$ref": "#/paths/~1a~1%7Bb%7D"},
            "/tilde": {"get": {"responses": {"200": {"$ref": "#/x-responses/a~0b"}}}},
            "/list": {"get": {"responses": {"200": {"$ref": "#/x-list/1"}}}},
        },
        "x-responses": {"a~b": {"description": "tilde"}},
        "x-list": [{"description": "zero"}, {"description": "one"}],
    }
    records, rejected = extract(("openapi.json", json.dumps(spec)))
    assert rejected == []
    assert records["GET /copy"]["responses"][0]["description"] == "d"
    assert records["GET /tilde"]["responses"][0]["description"] == "tilde"
    assert records["GET /list"]["responses"][0]["description"] == "one"


def test_a_dangling_ref_quarantines_only_its_operation():
    spec = """
openapi: 3.0.3
info: {title: t, version: '1'}
paths:
  /good:
    get:
      responses: {'200': {description: ok, content: {application/json: {schema: {$ref: '#/components/schemas/A'}}}}}
  /bad:
    get:
      responses: {'200': {description: ok, content: {application/json: {schema: {$ref: '#/components/schemas/Gone'}}}}}
    post:
      requestBody: {$ref: 'bodies/missing.yaml#/Body'}
      responses: {'201': {description: created}}
    put:
      parameters: [{$ref: 'params.yaml#/Nope'}]
      responses: {'200': {description: ok}}
components: {schemas: {A: {type: object}}}
"""
    params = "Limit: {name: limit, in: query}\n"
    records, rejected = extract(("specs/openapi.yaml", spec), ("specs/params.yaml", params))
    assert set(records) == {"GET /good"}
    assert {(q.item, q.reason) for q in rejected} == {
        ("GET /bad", "dangling $ref '#/components/schemas/Gone'"),
        ("POST /bad", "dangling $ref 'bodies/missing.yaml#/Body'"),
        ("PUT /bad", "dangling $ref 'params.yaml#/Nope'"),
    }
    assert {(q.source, q.path, q.stage) for q in rejected} == {("shop", "specs/openapi.yaml", "api_endpoints")}


def test_a_ref_into_a_file_that_does_not_parse_quarantines_its_operation():
    spec = """
openapi: 3.0.3
info: {title: t, version: '1'}
paths:
  /x:
    get:
      responses: {'200': {$ref: 'common.yaml#/Ok'}}
"""
    records, rejected = extract(("openapi.yaml", spec), ("common.yaml", "Ok: [\n"))
    assert records == {}
    assert [(q.path, q.item) for q in rejected] == [("openapi.yaml", "GET /x")]
    assert rejected[0].reason.startswith("unreadable $ref 'common.yaml#/Ok': malformed YAML: ")


def test_url_refs_are_left_as_they_are_and_never_fetched():
    spec = """
openapi: 3.1.0
info: {title: t, version: '1'}
paths:
  /x:
    get:
      responses:
        '200':
          description: ok
          content: {application/json: {schema: {$ref: 'https://schemas.example/money.json#/Money'}}}
"""
    records, rejected = extract(("openapi.yaml", spec))
    assert rejected == []
    assert records["GET /x"]["responses"][0]["schema"] == {"$ref": "https://schemas.example/money.json#/Money"}


def test_refs_that_expand_exponentially_quarantine_the_operation_instead_of_filling_memory():
    def twice(ref: str) -> dict:  # each level refers to the next one twice: 2**40 nodes once inlined
        return {"type": "object", "properties": {"a": {"$ref": ref}, "b": {"$ref": ref}}}

    schemas = {f"S{i}": twice(f"#/definitions/S{i + 1}") for i in range(40)}
    schemas["S40"] = {"type": "string"}
    ok = {"description": "d", "schema": {"$ref": "#/definitions/S0"}}
    spec = {"swagger": "2.0", "paths": {"/big": {"get": {"responses": {"200": ok}}}}, "definitions": schemas}
    started = time.monotonic()
    records, rejected = extract(("swagger.json", json.dumps(spec)))
    assert records == {} and [q.item for q in rejected] == ["GET /big"]
    assert "exceed" in rejected[0].reason and time.monotonic() - started < 10


# --- Swagger 2.0 and Postman -----------------------------------------------------------------------------------


def test_swagger_20_body_parameters_become_the_request_body():
    adjust = samples()[("inventory-swagger2.json", "PUT", "/stock/{sku}")]
    assert [p["name"] for p in adjust["parameters"]] == ["sku"]
    assert adjust["parameters"][0]["schema"] == {"type": "string"}
    body = adjust["request_body"]
    assert (body["content_type"], body["required"], body["example"]) == ("application/json", True, None)
    assert body["schema"]["properties"]["reason"]["enum"] == ["delivery", "damaged", "lost", "returned"]
    ok = adjust["responses"][0]
    assert ok["content_type"] == "application/json"  # picked from `produces`, which lists XML first
    assert ok["schema"]["properties"]["warehouse"]["properties"]["code"]["example"] == "AMS-1"


def test_swagger_20_form_data_stays_parameters_and_shared_definitions_resolve():
    photo = samples()[("inventory-swagger2.json", "POST", "/stock/{sku}/photo")]
    assert photo["request_body"] is None
    assert [(p["name"], p["in"], p["required"], p["schema"]) for p in photo["parameters"]] == [
        ("sku", "path", True, {"type": "string"}),
        ("photo", "formData", True, {"type": "file"}),
        ("caption", "formData", False, {"type": "string", "maxLength": 140}),
    ]
    stock = samples()[("inventory-swagger2.json", "GET", "/stock")]
    assert stock["parameters"][1]["schema"] == {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}
    missing = samples()[("inventory-swagger2.json", "GET", "/stock/{sku}")]["responses"][1]
    assert (missing["description"], missing["schema"]["properties"]["message"]) == ("No such SKU.", {"type": "string"})


def test_postman_folders_are_flattened_with_their_names_as_tags():
    postman = {k[2]: r for k, r in samples().items() if k[0] == "shop.postman_collection.json"}
    assert postman["/carts/:cartId"]["tags"] == ["Cart"]
    assert postman["/orders/{{orderId}}/payments"]["tags"] == ["Checkout", "Payments"]
    assert postman["/health"]["tags"] == [] and postman["/health"]["method"] == "GET"
    assert postman["/carts/:cartId"]["summary"] == "Get cart"
    cart_id = postman["/carts/:cartId"]["parameters"][0]
    assert (cart_id["name"], cart_id["in"], cart_id["required"], cart_id["description"]) == (
        "cartId",
        "path",
        True,
        "The cart's id.",
    )


def test_postman_raw_json_bodies_become_examples_and_saved_responses_become_responses():
    postman = {k[2]: r for k, r in samples().items() if k[0] == "shop.postman_collection.json"}
    added = postman["/carts/:cartId/items"]
    assert added["request_body"] == {
        "content_type": "application/json",
        "required": True,
        "schema": None,
        "example": {"sku": "DOG-BED-L", "quantity": 2},
    }
    assert added["description"].startswith("Adds a quantity of one SKU")
    assert [(r["status"], r["description"], r["content_type"]) for r in added["responses"]] == [
        ("201", "Item added", "application/json; charset=utf-8"),
        ("422", "Unknown SKU", "application/json"),
    ]
    # No Content-Type header, but JSON all the same; {{variables}} make it no JSON, so the text is kept.
    assert postman["/v1/orders"]["request_body"]["content_type"] == "application/json"
    assert postman["/v1/orders"]["parameters"][0]["description"] == "Email the customer a confirmation."
    paid = postman["/orders/{{orderId}}/payments"]["request_body"]
    assert paid["example"] == '{"amount": {{amount}}, "currency": "EUR"}'
    assert paid["content_type"] == "application/json"


def test_postman_requests_to_one_endpoint_keep_the_first_and_quarantine_the_rest():
    collection = {
        "info": {"name": "c", "schema": "https://schema.getpostman.com/json/collection/v2.0.0/collection.json"},
        "item": [
            {"name": "ok", "request": {"method": "post", "url": "http://localhost:8080/orders"}},
            {"name": "invalid", "request": {"method": "POST", "url": "{{host}}/orders"}},
            {"name": "copy", "request": {"method": "COPY", "url": "{{host}}/orders"}},
        ],
    }
    records, rejected = extract(("collection.json", json.dumps(collection)))
    assert list(records) == ["POST /orders"] and records["POST /orders"]["summary"] == "ok"
    reasons = {q.item: q.reason for q in rejected}
    assert reasons["POST /orders"].startswith("duplicate")
    assert reasons["COPY /orders"].startswith("method:")  # not an HTTP method OpenAPI knows


# --- what is not a spec, and broken input ----------------------------------------------------------------------


def test_yaml_and_json_that_are_no_specs_yield_nothing():
    files = [
        ("config/app.yaml", "server:\n  port: 8080\nswagger: true\n"),
        ("schemas/pet.yaml", "Pet:\n  type: object\n"),
        ("list.json", "[1, 2, 3]"),
        ("scalar.yaml", "just text"),
        ("empty.yaml", ""),
        ("broken-config.yaml", "a: [1, 2\n"),
        ("README.md", "openapi: 3.0.0\npaths: {}\n"),
    ]
    assert extract(*files) == ({}, [])


def test_malformed_yaml_in_a_spec_file_is_quarantined_with_the_parsers_line():
    text = "openapi: 3.0.0\ninfo:\n  title: t\n  version: 1\n paths: {}\n"
    records, rejected = extract(("petstore.yaml", text), ("notes.yaml", "openapi: 3.0.0\nx: [\n"))
    assert records == {}
    reasons = {q.path: q.reason for q in rejected}
    assert reasons["petstore.yaml"].startswith("malformed YAML: ") and reasons["petstore.yaml"].endswith("(line 5)")
    assert reasons["notes.yaml"].startswith("malformed YAML: ")  # not named like a spec, but says `openapi:`
    assert all(q.item == "" and q.stage == "api_endpoints" for q in rejected)


def test_malformed_json_in_a_collection_is_quarantined_with_the_parsers_line():
    _, rejected = extract(("shop.postman_collection.json", '{\n  "info": {\n    "name": "x",\n  }\n}'))
    assert [q.reason for q in rejected] == [
        "malformed JSON: Expecting property name enclosed in double quotes (line 4)"
    ]


def test_unsupported_versions_and_specs_without_paths_are_reported():
    records, rejected = extract(
        ("a.yaml", "openapi: 3.2.0\ninfo: {title: t, version: '1'}\npaths: {}\n"),
        ("b.yaml", "swagger: '1.2'\n"),
        ("c.yaml", "openapi: 3.0.0\ninfo: {title: t, version: '1'}\n"),
        ("d.yaml", "openapi: 3.1.0\ninfo: {title: t, version: '1'}\ncomponents: {schemas: {}}\n"),
        ("e.yaml", "openapi: 3.0.0\ninfo: {title: t, version: '1'}\npaths: {}\n"),
    )
    assert records == {}
    assert {q.path: q.reason for q in rejected} == {
        "a.yaml": "unsupported openapi version '3.2.0'",
        "b.yaml": "unsupported swagger version '1.2'",
        "c.yaml": "spec has no 'paths' mapping",
    }


def test_a_record_that_breaks_the_schema_is_quarantined_with_the_errors():
    spec = """
swagger: '2.0'
info: {title: t, version: 1.0}
paths:
  /x:
    get:
      parameters: [{in: query, type: string}, {name: y, in: somewhere}]
      responses: {'200': {description: ok}}
    post:
      responses: {'201': {description: created}, '42': {description: odd}}
  /y:
    get: not an operation
  /z: [1, 2]
"""
    records, rejected = extract(("swagger.yaml", spec))
    assert records == {}
    reasons = {q.item: q.reason for q in rejected}
    assert "parameters.0.name: None is not of type 'string'" in reasons["GET /x"]
    assert "parameters.1.in: 'somewhere' is not one of" in reasons["GET /x"]
    assert reasons["POST /x"].startswith("responses.1.status: '42' does not match")
    assert reasons["GET /y"] == "operation is not a mapping"
    assert reasons["/z"] == "path item is not a mapping"


ALIAS_BOMB = "openapi: 3.0.0\na: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [{', '.join([f'*{p}'] * 10)}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True)
)
REF_CHAIN = {
    "swagger": "2.0",
    "paths": {"/x": {"get": {"responses": {"200": {"description": "d", "schema": {"$ref": "#/definitions/D0"}}}}}},
    "definitions": {f"D{i}": {"$ref": f"#/definitions/D{i + 1}"} for i in range(2000)},
}
ODD_COLLECTION = {
    "info": {"schema": "collection/v2.1"},
    "item": [
        1,
        {"request": 5},
        {"item": "x"},
        {"request": {"url": {"path": [{"value": 3}]}, "body": {"mode": "raw", "raw": "[" * 5000}}},
    ],
}
ODD_SHAPES = "openapi: 3.0.0\ninfo: [1]\npaths:\n  /x: {get: {parameters: 5, responses: [1], tags: {a: 1}}}\n"


@pytest.mark.parametrize(
    ("path", "text"),
    [
        ("deep.json", '{"openapi": "3.0.0", "paths": ' + "[" * 50_000 + "]" * 50_000 + "}"),
        ("deep.yaml", "openapi: 3.0.0\npaths: " + "[" * 50_000 + "]" * 50_000 + "\n"),
        ("deep-ok.json", '{"openapi": "3.0.0", "x": ' + "[" * 500 + "]" * 500 + "}"),
        ("bomb-api.yaml", ALIAS_BOMB),
        ("loop-api.yaml", "openapi: 3.0.0\npaths: &p\n  /x: *p\n"),
        ("tags.yaml", "openapi: 3.0.0\npaths: !!python/object:os.system {}\n"),
        ("weird.yaml", ODD_SHAPES),
        ("weird2.json", '{"swagger": "2.0", "paths": {"/x": {"parameters": "p", "get": {"responses": {"x-a": 1}}}}}'),
        ("nan.json", '{"openapi": "3.1.0", "paths": {"/x": {"get": {"responses": {"200": {"description": NaN}}}}}}'),
        ("chain.json", json.dumps(REF_CHAIN)),
        ("postman.json", json.dumps(ODD_COLLECTION)),
    ],
)
def test_no_input_makes_the_extractor_raise_or_hang(path: str, text: str):
    started = time.monotonic()
    records, rejected = extract_api_endpoints([crawled(path, text)])
    assert time.monotonic() - started < 10
    for record in records:
        assert validation_errors("api_endpoint", record) == []
        json.dumps(record, allow_nan=False)
    assert all(q.reason and not q.reason.startswith("internal error") for q in rejected)


def test_broken_inputs_get_the_reason_that_fits():
    deep = "openapi: 3.0.0\npaths: " + "[" * 50_000 + "]" * 50_000 + "\n"
    _, rejected = extract(("deep.yaml", deep), ("bomb.yaml", ALIAS_BOMB), ("loop.yaml", "openapi: 3.0.0\np: &p [*p]\n"))
    assert {q.path: q.reason for q in rejected} == {
        "deep.yaml": "YAML nested deeper than 128 levels",
        "bomb.yaml": "YAML aliases expand to too many nodes",
        "loop.yaml": "a YAML alias contains itself",
    }


def test_truncated_samples_never_raise():
    for file in sample_files():
        text = file["text"]
        for cut in range(0, len(text), max(1, len(text) // 40)):
            records, rejected = extract_api_endpoints([{**file, "text": text[:cut]}])
            assert all(not validation_errors("api_endpoint", r) for r in records)
            assert all(not q.reason.startswith("internal error") for q in rejected), (file["path"], cut)
