"""REST convention lint: training data that teaches `/createPost` teaches `/createPost`, so endpoints are linted."""

from __future__ import annotations

import dataclasses
import hashlib
import re
from pathlib import Path

import pytest

from flywheel_pipelines.discover.api_specs import extract_api_endpoints
from flywheel_pipelines.discover.rest_lint import (
    RULES,
    SEVERITY_WEIGHTS,
    Finding,
    is_singular,
    lint_endpoint,
    lint_endpoints,
    pluralize,
    score,
)
from flywheel_pipelines.schemas import validation_errors

API_SAMPLES = Path(__file__).resolve().parents[2] / "data" / "samples" / "api"
ERROR = {"status": "404", "description": "Not found.", "content_type": "application/json", "schema": None}
OK = {"status": "200", "description": "OK.", "content_type": "application/json", "schema": {"type": "object"}}
BODY = {"content_type": "application/json", "required": True, "schema": {"type": "object"}, "example": None}


def endpoint(method: str, url_path: str, spec: str = "openapi.yaml", **fields: object) -> dict:
    """A schema-valid endpoint record that breaks no convention but the ones a test puts in: its path templates are
    declared, and it documents a 200 and a 404."""
    params = [
        {"name": name, "in": "path", "required": True, "description": None, "schema": {"type": "string"}}
        for name in re.findall(r"(?<!\{)\{([^{}]+)\}(?!\})", url_path)
    ]
    record = {
        "endpoint_id": hashlib.sha256(f"{spec}{method}{url_path}".encode()).hexdigest()[:16],
        "source": "shop",
        "path": spec,
        "spec_format": "openapi-3.0",
        "spec_title": "Shop",
        "spec_version": "1.0.0",
        "method": method,
        "url_path": url_path,
        "operation_id": None,
        "summary": None,
        "description": None,
        "tags": [],
        "parameters": params,
        "request_body": None,
        "responses": [OK, ERROR],
    }
    return {**record, **fields}


def rules(findings: list[Finding]) -> list[str]:
    return [f.rule for f in findings]


def only(rule: str, findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.rule == rule]


def sample_records() -> list[dict]:
    files = []
    for p in sorted(API_SAMPLES.rglob("*")):
        if p.is_file():
            text = p.read_text(encoding="utf-8")
            files.append(
                {
                    "source": "shop",
                    "path": p.relative_to(API_SAMPLES).as_posix(),
                    "language": "json" if p.suffix == ".json" else "yaml",
                    "size_bytes": len(text.encode()),
                    "sha256": hashlib.sha256(text.encode()).hexdigest(),
                    "text": text,
                }
            )
    records, rejected = extract_api_endpoints(files)
    assert rejected == []
    return records


def test_the_test_endpoints_are_real_records_and_lint_clean():
    record = endpoint("GET", "/pets/{petId}")
    assert validation_errors("api_endpoint", record) == []
    assert lint_endpoint(record) == []


# --- verb-in-path ----------------------------------------------------------------------------------------------


def test_a_create_post_endpoint_is_flagged_as_a_verb_in_the_path():
    [finding] = lint_endpoint(endpoint("POST", "/createPost", responses=[{**OK, "status": "201"}, ERROR]))
    assert finding == Finding(
        "verb-in-path",
        "error",
        "POST /createPost",
        "path segment 'createPost' starts with the verb 'create'; let the method carry the action and name the "
        "resource: POST /posts",
    )


@pytest.mark.parametrize(
    ("method", "url_path", "segment", "verb", "instead"),
    [
        ("GET", "/get-user/{id}", "get-user", "get", "GET /users/{id}"),
        ("DELETE", "/deleteOrder/{id}", "deleteOrder", "delete", "DELETE /orders/{id}"),
        ("PUT", "/update_item", "update_item", "update", "PATCH /items"),
        ("GET", "/v1/fetch", "fetch", "fetch", "GET /v1"),
        ("GET", "/pets/list", "list", "list", "GET /pets"),
        ("GET", "/getuser", "getuser", "get", "GET /users"),
        ("POST", "/posts/postComment", "postComment", "post", "POST /posts/comments"),
    ],
)
def test_verbs_are_caught_in_kebab_snake_camel_and_bare_segments_with_the_resource_to_use(
    method: str, url_path: str, segment: str, verb: str, instead: str
):
    [finding] = only("verb-in-path", lint_endpoint(endpoint(method, url_path)))
    assert finding.severity == "error" and finding.endpoint == f"{method} {url_path}"
    assert f"'{segment}'" in finding.message and f"verb '{verb}'" in finding.message
    assert finding.message.endswith(instead)


def test_a_do_something_or_cancel_action_is_flagged_with_advice_to_model_it_as_a_resource():
    [do] = only("verb-in-path", lint_endpoint(endpoint("POST", "/doSomething")))
    assert "verb 'do'" in do.message
    [cancel] = only("verb-in-path", lint_endpoint(endpoint("POST", "/orders/{orderId}/cancel")))
    assert cancel.message == (
        "path segment 'cancel' is the verb 'cancel'; model 'cancel' as a noun sub-resource created with POST, or "
        "as a state change with PATCH /orders/{orderId}"
    )


@pytest.mark.parametrize(
    "url_path",
    ["/posts", "/uploads", "/settings", "/listings", "/updates", "/views/{id}", "/exports", "/addresses", "/documents",
     "/postcards", "/orders/{id}:cancel"],
)  # fmt: skip
def test_nouns_that_look_like_verbs_and_aip_custom_methods_are_not_verbs(url_path: str):
    assert only("verb-in-path", lint_endpoint(endpoint("GET", url_path))) == []


def test_search_and_health_endpoints_are_allowed():
    allowed = [
        endpoint("GET", "/health"),
        endpoint("GET", "/status"),
        endpoint("GET", "/users/me"),
        endpoint("POST", "/pets/search", request_body=BODY),
        endpoint("POST", "/search", request_body=BODY),
        endpoint("POST", "/auth/login", request_body=BODY),
        endpoint("POST", "/auth/logout"),
        endpoint("POST", "/batch", request_body=BODY),
    ]
    assert lint_endpoints(allowed) == []
    # The allow-list is about the segment's name: a search POST without a query in its body still reads.
    assert rules(lint_endpoint(endpoint("POST", "/pets/search"))) == ["post-for-read"]
    # ...and about whole segments: search-pets is not `search`.
    [verb] = lint_endpoint(endpoint("GET", "/search-pets"))
    assert verb.rule == "verb-in-path" and verb.message.endswith("GET /pets")


# --- singular-collection ---------------------------------------------------------------------------------------


def test_user_id_is_a_singular_collection():
    [finding] = lint_endpoint(endpoint("GET", "/user/{id}"))
    assert finding == Finding(
        "singular-collection",
        "warning",
        "GET /user/{id}",
        "collection segment 'user' is followed by the parameter '{id}' but is singular; name collections in the "
        "plural: 'users'",
    )


def test_a_post_or_a_list_to_a_singular_segment_is_a_singular_collection():
    [post] = lint_endpoint(endpoint("POST", "/order", request_body=BODY, responses=[{**OK, "status": "201"}, ERROR]))
    assert (post.rule, post.endpoint) == ("singular-collection", "POST /order")
    assert "is what this POST creates in" in post.message and post.message.endswith("'orders'")
    listed = {**OK, "schema": {"type": "array", "items": {"type": "object"}}}
    [get] = lint_endpoint(endpoint("GET", "/order-line", responses=[listed, ERROR]))
    assert "is what this GET lists" in get.message and get.message.endswith("'order-lines'")
    # A GET of one object at a static path is a singleton sub-resource, not a collection.
    assert lint_endpoint(endpoint("GET", "/users/{id}/profile")) == []


@pytest.mark.parametrize(
    "url_path",
    ["/users/{id}", "/stock/{sku}", "/people/{id}", "/categories/{id}", "/addresses/{id}", "/v1/orders/{id}",
     "/api/{version}/pets", "/carts/:cartId", "/orders/{{orderId}}/payments", "/data/{key}", "/me/orders"],
)  # fmt: skip
def test_plural_uncountable_versioned_and_namespace_segments_are_not_singular_collections(url_path: str):
    assert only("singular-collection", lint_endpoint(endpoint("GET", url_path, parameters=[]))) == []


def test_the_inflection_rules_cover_regular_irregular_and_uncountable_nouns():
    assert [pluralize(w) for w in ["user", "category", "address", "box", "day", "person", "analysis", "data"]] == [
        "users", "categories", "addresses", "boxes", "days", "people", "analyses", "data",
    ]  # fmt: skip
    assert [is_singular(w) for w in ["user", "users", "status", "info", "children", "child", "class"]] == [
        True, False, False, False, False, True, True,
    ]  # fmt: skip


# --- bodies and responses --------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "HEAD", "DELETE"])
def test_a_get_with_a_body_is_an_error(method: str):
    [finding] = lint_endpoint(endpoint(method, "/pets", request_body=BODY))
    assert (finding.rule, finding.severity, finding.endpoint) == ("get-with-body", "error", f"{method} /pets")
    assert finding.message.startswith(f"{method} has a request body")


def test_a_post_put_or_patch_with_a_body_is_fine():
    for method in ("POST", "PUT", "PATCH"):
        assert only("get-with-body", lint_endpoint(endpoint(method, "/pets", request_body=BODY))) == []


def test_a_post_whose_name_says_it_reads_is_a_warning():
    by_id = lint_endpoint(endpoint("POST", "/pets", operation_id="listPets", request_body=BODY))
    assert [(f.rule, f.severity) for f in by_id] == [("post-for-read", "warning")]
    assert by_id[0].message == "POST reads: operationId 'listPets' starts with 'list'; use GET with query parameters"
    by_summary = lint_endpoint(endpoint("POST", "/pets", summary="Shows the pets for sale", request_body=BODY))
    assert rules(by_summary) == ["post-for-read"] and "summary 'Shows the pets for sale'" in by_summary[0].message
    # A query in the body is the accepted reason to search with POST.
    assert lint_endpoint(endpoint("POST", "/pets", operation_id="searchPets", request_body=BODY)) == []
    assert rules(lint_endpoint(endpoint("POST", "/pets", operation_id="searchPets"))) == ["post-for-read"]


def test_a_bodiless_post_answering_only_200_with_no_state_change_word_is_a_read():
    reports = endpoint("POST", "/reports/{id}", summary="Sales report")
    assert rules(lint_endpoint(reports)) == ["post-for-read"]
    assert rules(lint_endpoint({**reports, "summary": "Generate a sales report"})) == []  # a state-changing word
    assert rules(lint_endpoint({**reports, "responses": [{**OK, "status": "201"}, ERROR]})) == []  # creates
    assert rules(lint_endpoint({**reports, "request_body": BODY})) == []  # takes input: not judged
    no_content = {**OK, "content_type": None, "schema": None}
    assert rules(lint_endpoint({**reports, "responses": [no_content, ERROR]})) == []


def test_an_operation_without_error_responses_gets_a_warning():
    [finding] = lint_endpoint(endpoint("GET", "/pets", responses=[OK]))
    assert finding == Finding(
        "missing-error-response",
        "warning",
        "GET /pets",
        "the operation documents only 200; document its 4xx (and 5xx or default) responses with an error schema",
    )
    for status in ("400", "4XX", "503", "default"):
        assert lint_endpoint(endpoint("GET", "/pets", responses=[OK, {**ERROR, "status": status}])) == []
    [none] = lint_endpoint(endpoint("GET", "/pets", responses=[]))
    assert "documents no responses at all" in none.message
    # Postman saves example responses only when someone chose to: none saved says nothing about the API's errors.
    assert lint_endpoint(endpoint("GET", "/pets", spec_format="postman-2.1", responses=[])) == []


# --- casing, slashes, extensions, parameters -------------------------------------------------------------------


def test_a_spec_mixing_kebab_and_camel_case_is_flagged_once_per_offending_segment():
    spec = [
        endpoint("GET", "/order-items"),
        endpoint("GET", "/order-items/{id}"),
        endpoint("GET", "/shipping-labels"),
        endpoint("GET", "/gift-cards/{id}"),
        endpoint("GET", "/userProfiles"),
        endpoint("GET", "/userProfiles/{id}"),
        endpoint("GET", "/userProfiles/{id}/savedCarts"),
    ]
    findings = lint_endpoints(spec)
    assert [(f.rule, f.endpoint) for f in findings] == [
        ("inconsistent-casing", "GET /userProfiles"),
        ("inconsistent-casing", "GET /userProfiles/{id}/savedCarts"),
    ]
    assert findings[0].message == (
        "path segment 'userProfiles' has uppercase letters and is camelCase while this spec mostly uses kebab-case; "
        "write it 'user-profiles'"
    )
    # Another spec is judged on its own: its snake_case is its convention, not a deviation from this one's.
    other = [endpoint("GET", "/order_items", spec="other.yaml"), endpoint("GET", "/gift_cards", spec="other.yaml")]
    assert lint_endpoints(spec + other) == findings


def test_snake_case_in_a_kebab_spec_and_uppercase_segments_are_inconsistent_casing():
    findings = lint_endpoints(
        [endpoint("GET", "/order-items"), endpoint("GET", "/gift-cards"), endpoint("GET", "/shipping_labels")]
    )
    assert [f.message for f in findings] == [
        "path segment 'shipping_labels' is snake_case while this spec mostly uses kebab-case; write it "
        "'shipping-labels'"
    ]
    [upper] = lint_endpoint(endpoint("GET", "/Pets/{petId}"))
    assert (upper.rule, upper.message) == (
        "inconsistent-casing",
        "path segment 'Pets' has uppercase letters; write it 'pets'",
    )
    assert rules(lint_endpoint(endpoint("GET", "/order-items_archive"))) == ["inconsistent-casing"]


def test_a_trailing_slash_is_info_and_a_file_extension_is_a_warning():
    [slash] = lint_endpoint(endpoint("GET", "/pets/"))
    assert (slash.rule, slash.severity) == ("trailing-slash", "info") and "write '/pets'" in slash.message
    [ext] = lint_endpoint(endpoint("GET", "/pets.json"))
    assert (ext.rule, ext.severity) == ("file-extension-in-path", "warning")
    assert ext.message.startswith("path segment 'pets.json' ends in the file extension '.json'; drop it ('pets')")
    assert rules(lint_endpoint(endpoint("GET", "/pets/{petId}.xml"))) == ["file-extension-in-path"]
    assert lint_endpoint(endpoint("GET", "/openapi.json")) == []  # a spec served at its conventional name
    assert lint_endpoint(endpoint("GET", "/v2.1/pets")) == []  # a version, not an extension


def test_a_path_template_without_its_path_parameter_is_an_error():
    query_only = [{"name": "petId", "in": "query", "required": False, "description": None, "schema": None}]
    [finding] = lint_endpoint(endpoint("GET", "/pets/{petId}", parameters=query_only))
    assert finding == Finding(
        "missing-path-param",
        "error",
        "GET /pets/{petId}",
        "path template '{petId}' has no parameter named 'petId' with in: path; declare it (in: path, required: true) "
        "or fix the name",
    )
    assert rules(lint_endpoint(endpoint("GET", "/carts/:cartId", parameters=[]))) == ["missing-path-param"]
    # Postman {{variables}} come from the environment; nothing declares them.
    assert lint_endpoint(endpoint("POST", "/orders/{{orderId}}/payments", request_body=BODY)) == []


# --- the samples, the score, odd records -----------------------------------------------------------------------


def test_the_sample_specs_lint_with_only_the_findings_we_expect():
    findings = lint_endpoints(sample_records())
    assert {f.rule for f in findings} == {"missing-error-response", "singular-collection"}
    assert sorted((f.endpoint, f.rule) for f in findings) == [
        ("GET /categories/{categoryId}", "missing-error-response"),
        ("GET /orders", "missing-error-response"),
        ("GET /stock", "missing-error-response"),
        ("PATCH /orders/{orderId}", "missing-error-response"),
        ("POST /stock/{sku}/photo", "missing-error-response"),
        ("POST /stock/{sku}/photo", "singular-collection"),
    ]


def test_a_clean_endpoint_scores_1_and_errors_lower_the_score_more_than_warnings():
    clean = endpoint("GET", "/pets")
    assert score(lint_endpoint(clean), 1) == 1.0
    error = score(lint_endpoint(endpoint("GET", "/getPets")), 1)
    warning = score(lint_endpoint(endpoint("GET", "/user/{id}")), 1)
    info = score(lint_endpoint(endpoint("GET", "/pets/")), 1)
    assert 0.0 < error < warning < info < 1.0
    assert error == pytest.approx(1 / (1 + SEVERITY_WEIGHTS["error"]))
    # Normalised by size: the same finding costs less in a larger spec, and more findings always cost more.
    one = lint_endpoint(endpoint("GET", "/user/{id}"))
    assert score(one, 10) > score(one, 1) > score(one * 2, 1)
    assert score([], 0) == 1.0 and score(one, 0) == score(one, 1) and score(one, None) == score(one, 1)  # type: ignore[arg-type]


def test_the_samples_score_between_clean_and_broken():
    records = sample_records()
    assert 0.5 < score(lint_endpoints(records), len(records)) < 1.0


@pytest.mark.parametrize(
    "record",
    [{}, None, 7, {"method": None, "url_path": None, "parameters": None, "responses": None, "request_body": None},
     {"method": 3, "url_path": ["/x"], "parameters": {"name": "id"}, "responses": "200", "summary": 5},
     {"method": "post", "url_path": "/{id}//x/", "parameters": [None, 3, {"in": "path"}], "responses": [None, {}],
      "request_body": {}, "operation_id": None, "summary": None, "spec_format": None},
     {"method": "GET", "url_path": "/pets?limit=1#top", "responses": [{"status": 404}], "request_body": "x"}],
)  # fmt: skip
def test_odd_records_never_raise(record: object):
    findings = lint_endpoint(record)
    assert all(f.rule in RULES for f in findings)
    assert lint_endpoints([record, record]) is not None


def test_an_int_status_counts_and_a_query_string_is_not_part_of_the_path():
    odd = {"method": "GET", "url_path": "/pets?limit=1", "responses": [{"status": 404}]}
    assert lint_endpoint(odd) == []
    assert lint_endpoints(None) == []  # type: ignore[arg-type]


def test_every_rule_is_documented_and_each_finding_carries_its_rules_severity():
    assert set(RULES) == {
        "verb-in-path", "singular-collection", "get-with-body", "post-for-read", "missing-error-response",
        "inconsistent-casing", "trailing-slash", "file-extension-in-path", "missing-path-param",
    }  # fmt: skip
    assert {severity for severity, _ in RULES.values()} == {"error", "warning", "info"}
    assert all(description.endswith(".") for _, description in RULES.values())
    messy = [
        endpoint("GET", "/getUsers/{id}/", request_body=BODY, responses=[OK], parameters=[]),
        endpoint("POST", "/order.json", operation_id="fetchOrders", responses=[OK]),
        endpoint("GET", "/order_items"),
        endpoint("GET", "/gift-cards"),
        endpoint("GET", "/shipping-labels"),
    ]
    findings = lint_endpoints(messy)
    assert set(rules(findings)) == set(RULES)
    assert all(f.severity == RULES[f.rule][0] for f in findings)
    assert all(f.message for f in findings)


def test_linting_one_endpoint_is_linting_a_batch_of_one_and_findings_are_immutable():
    record = endpoint("GET", "/user_profiles/{id}/savedCarts/")
    assert lint_endpoint(record) == lint_endpoints([record]) != []
    with pytest.raises(dataclasses.FrozenInstanceError):
        lint_endpoint(record)[0].rule = "other"  # type: ignore[misc]
