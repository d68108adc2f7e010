"""Step 1 beyond Python: Java, Kotlin, TypeScript, JavaScript and Go files become code units through tree-sitter."""

import hashlib

import pytest

from flywheel_pipelines.discover.python_units import unit_id
from flywheel_pipelines.discover.treesitter_units import SUPPORTED_LANGUAGES, extract_treesitter_units
from flywheel_pipelines.schemas import validation_errors
from flywheel_pipelines_tests.conftest import SAMPLES

SHA = "ab" * 32
JAVA_MAIN = "java/src/main/java/com/example/shop"
SAMPLE_FILES = {
    f"{JAVA_MAIN}/OrderController.java": "java",
    f"{JAVA_MAIN}/OrderService.java": "java",
    "java/src/test/java/com/example/shop/OrderServiceTest.java": "java",
    "kotlin/PriceCalculator.kt": "kotlin",
    "web/cart.ts": "typescript",
    "web/format.js": "javascript",
    "web/cart.test.ts": "typescript",
    "go/inventory/inventory.go": "go",
    "go/inventory/inventory_test.go": "go",
}


def extract(text: str, path: str, language: str, sha: str = SHA):
    return extract_treesitter_units(text, "shop", path, language, sha)


def sample_units(path: str) -> dict[str, dict]:
    text = (SAMPLES / path).read_text()
    units, quarantined = extract(text, path, SAMPLE_FILES[path], hashlib.sha256(text.encode()).hexdigest())
    assert quarantined == []
    return {u["qualified_name"]: u for u in units}


def by_name(units: list[dict]) -> dict[str, dict]:
    return {u["qualified_name"]: u for u in units}


@pytest.mark.parametrize("path", sorted(SAMPLE_FILES))
def test_every_sample_yields_schema_valid_units_in_every_language(path):
    units = sample_units(path)
    assert units, f"{path} yields no units"
    assert len({u["unit_id"] for u in units.values()}) == len(units)
    for qualname, unit in units.items():
        assert validation_errors("code_unit", unit) == []
        assert unit["language"] == SAMPLE_FILES[path]
        assert unit["unit_id"] == unit_id("shop", path, qualname)
        assert unit["tested_units"] == []


def test_the_samples_cover_every_supported_language():
    assert set(SAMPLE_FILES.values()) == SUPPORTED_LANGUAGES == {"java", "kotlin", "typescript", "javascript", "go"}


def test_a_spring_controller_keeps_its_annotations_on_class_and_methods():
    units = sample_units(f"{JAVA_MAIN}/OrderController.java")
    controller = units["OrderController"]
    assert controller["kind"] == "class" and controller["class_summary"] is None
    assert controller["decorators"] == ["@RestController", '@RequestMapping("/api/orders")']
    assert controller["signature"] == "public class OrderController"
    assert controller["docstring"] == "HTTP API for customer orders."
    assert units["OrderController.getOrder"]["decorators"] == ['@GetMapping("/{id}")']
    assert units["OrderController.placeOrder"]["decorators"] == ["@PostMapping"]


def test_a_controller_method_has_its_signature_javadoc_body_and_class_summary():
    get = sample_units(f"{JAVA_MAIN}/OrderController.java")["OrderController.getOrder"]
    assert get["kind"] == "method"
    # Parameter annotations stay in the signature; the method's own annotations do not.
    assert get["signature"] == "public ResponseEntity<Order> getOrder(@PathVariable long id)"
    assert get["docstring"] == "Returns one order, or 404 when there is no order with that id."
    assert get["body"] == (
        "return orderService.findOrder(id)\n"
        "        .map(ResponseEntity::ok)\n"
        "        .orElse(ResponseEntity.notFound().build());"
    )
    assert (get["start_line"], get["end_line"]) == (31, 36)
    summary = get["class_summary"].splitlines()
    assert summary[:3] == ["@RestController", '@RequestMapping("/api/orders")', "public class OrderController {"]
    assert "    private final OrderService orderService;" in summary
    assert "    public OrderController(OrderService orderService) { ... }" in summary
    assert summary[summary.index('    @GetMapping("/{id}")') + 1].startswith(
        "    public ResponseEntity<Order> getOrder("
    )
    assert summary[-1] == "}"
    assert "orElse" not in get["class_summary"]


def test_constructor_injection_is_a_method_named_after_its_class():
    constructor = sample_units(f"{JAVA_MAIN}/OrderController.java")["OrderController.OrderController"]
    assert constructor["kind"] == "method"
    assert constructor["signature"] == "public OrderController(OrderService orderService)"
    assert constructor["body"] == "this.orderService = orderService;"


def test_a_method_lists_only_the_imports_it_uses():
    units = sample_units(f"{JAVA_MAIN}/OrderController.java")
    assert units["OrderController.listOrders"]["imports"] == [
        "import java.util.List;",
        "import org.springframework.web.bind.annotation.GetMapping;",
        "import org.springframework.web.bind.annotation.RequestParam;",
    ]
    assert "import java.net.URI;" in units["OrderController.placeOrder"]["imports"]
    assert "import java.net.URI;" not in units["OrderController.getOrder"]["imports"]


def test_a_service_method_keeps_a_multi_line_javadoc_without_comment_markers():
    place = sample_units(f"{JAVA_MAIN}/OrderService.java")["OrderService.placeOrder"]
    assert place["docstring"].startswith("Creates an order for the customer and stores it.\n\n@param customerId who")
    assert "*" not in place["docstring"]
    assert place["body"].startswith("if (items.isEmpty()) {\n    throw new IllegalArgumentException(")
    assert "private final AtomicLong nextId = new AtomicLong(1);" in place["class_summary"]


def test_junit_test_methods_and_test_classes_are_marked_as_tests():
    units = sample_units("java/src/test/java/com/example/shop/OrderServiceTest.java")
    assert units["OrderServiceTest"]["is_test"]
    assert units["OrderServiceTest.placeOrderRejectsAnEmptyOrder"]["is_test"]
    assert units["OrderServiceTest.placeOrderRejectsAnEmptyOrder"]["decorators"] == ["@Test"]
    assert not units["OrderServiceTest.setUp"]["is_test"]
    assert not sample_units(f"{JAVA_MAIN}/OrderService.java")["OrderService.placeOrder"]["is_test"]


JAVA_TYPES = """
package com.example;

public class Outer {
    public int size(int x) { return x; }
    public int size(String s) { return s.length(); }

    static class Inner {
        private int n;

        int next() {
            return ++n;
        }

        class Deep { void ping() { pong(); } }
    }

    interface Repository {
        Order find(long id);
        default boolean exists(long id) { return find(id) != null; }
    }

    enum Status { OPEN, CLOSED; boolean done() { return this == CLOSED; } }

    abstract void later();
    void empty() {}
}

class Nothing {}
"""


def test_nested_types_get_dotted_names_and_the_summary_of_their_enclosing_type():
    units, quarantined = extract(JAVA_TYPES, "src/Outer.java", "java")
    units = by_name(units)
    assert quarantined == []
    assert units["Outer.Inner.Deep.ping"]["kind"] == "method"
    assert units["Outer.Inner.Deep.ping"]["class_summary"] == "class Deep {\n    void ping() { ... }\n}"
    deep = units["Outer.Inner.Deep"]
    assert deep["kind"] == "class"
    assert deep["class_summary"].startswith("static class Inner {\n    private int n;\n    int next() { ... }")
    assert units["Outer.Status.done"]["class_summary"] == (
        "enum Status {\n    OPEN, CLOSED;\n    boolean done() { ... }\n}"
    )


def test_body_less_and_empty_members_are_skipped_but_an_interface_with_members_is_a_class():
    units = by_name(extract(JAVA_TYPES, "src/Outer.java", "java")[0])
    assert "Outer.later" not in units and "Outer.empty" not in units and "Nothing" not in units
    assert "Outer.Repository.find" not in units
    assert units["Outer.Repository"]["kind"] == "class"
    assert units["Outer.Repository"]["body"].startswith("Order find(long id);")
    assert "    Order find(long id);" in units["Outer.Repository.exists"]["class_summary"]
    assert "    abstract void later();" in units["Outer.size"]["class_summary"]


def test_overloads_get_distinct_qualified_names_and_unit_ids():
    units = by_name(extract(JAVA_TYPES, "src/Outer.java", "java")[0])
    first, second = units["Outer.size"], units["Outer.size#2"]
    assert first["name"] == second["name"] == "size"
    assert second["signature"] == "public int size(String s)"
    assert first["unit_id"] != second["unit_id"]


def test_a_java_file_with_a_syntax_error_quarantines_the_broken_method_and_keeps_the_rest():
    text = """class Cart {
    void add() { items.add(1); }
    void broken() { total( }
    void clear() { items.clear(); }
}
"""
    units, quarantined = extract(text, "src/Cart.java", "java")
    assert sorted(u["qualified_name"] for u in units) == ["Cart.add", "Cart.clear"]
    broken = {q.item: q for q in quarantined}
    assert broken["Cart.broken"].reason == "syntax error near line 3"
    assert broken["Cart.broken"].stage == "code_units" and broken["Cart.broken"].path == "src/Cart.java"
    assert "Cart" in broken  # the class's own record would contain the broken method


def test_a_javascript_function_the_parser_cannot_read_is_quarantined_by_name_and_its_neighbours_kept():
    text = "function total(items) {\n  return sum(items);\n}\n\nfunction broken( {\n  oops();\n}\n"
    units, quarantined = extract(text, "web/total.js", "javascript")
    assert [u["qualified_name"] for u in units] == ["total"]
    assert [(q.item, q.reason) for q in quarantined] == [("broken", "syntax error near line 5")]


def test_a_file_that_cannot_be_parsed_into_any_unit_is_quarantined_once():
    units, quarantined = extract("package x;\n\n}}} public ((( class {{{\n", "src/Bad.java", "java")
    assert units == []
    assert [(q.item, q.reason) for q in quarantined] == [("", "syntax error near line 3")]


def test_records_that_break_the_schema_are_quarantined_with_the_errors():
    units, quarantined = extract(
        "fun double(x: Int): Int {\n    return x * 2\n}\n", "Math.kt", "kotlin", sha="not-a-hash"
    )
    assert units == []
    assert [q.item for q in quarantined] == ["double"]
    assert quarantined[0].reason.startswith("file_sha256:")


@pytest.mark.parametrize(
    "text",
    ["", "\n\n", "\x00\x01\x02\xff binary \ufffd", "x" * 100_000, "function f() {" * 300, "/** unterminated"],
    ids=["empty", "blank", "binary", "huge-line", "unclosed", "open-comment"],
)
@pytest.mark.parametrize("language", sorted(SUPPORTED_LANGUAGES))
def test_odd_input_never_raises(text, language):
    units, quarantined = extract(text, f"odd.{language}", language)
    assert all(validation_errors("code_unit", u) == [] for u in units)
    assert not any(q.reason.startswith("extractor failed") for q in quarantined)


def test_an_unsupported_language_is_quarantined_not_raised():
    units, quarantined = extract("IDENTIFICATION DIVISION.", "legacy/PAY.cbl", "cobol")
    assert units == [] and quarantined[0].reason == "unsupported language 'cobol'"


def test_windows_line_endings_do_not_break_dedenting():
    lines = [
        "class A {",
        "    int f() {",
        "        if (x) {",
        "            return 1;",
        "        }",
        "        return 2;",
        "    }",
    ]
    text = "\r\n".join([*lines, "}", ""])
    units = by_name(extract(text, "A.java", "java")[0])
    assert units["A.f"]["body"] == "if (x) {\n    return 1;\n}\nreturn 2;"


def test_a_kotlin_class_with_kdoc_a_data_class_and_a_top_level_function():
    units = sample_units("kotlin/PriceCalculator.kt")
    calculator = units["PriceCalculator"]
    assert calculator["signature"] == "class PriceCalculator(private val vatRate: BigDecimal)"
    assert calculator["docstring"].startswith("Computes invoice totals with VAT and volume discounts.")
    net = units["PriceCalculator.netTotal"]
    assert net["kind"] == "method" and net["signature"] == "fun netTotal(items: List<LineItem>): BigDecimal"
    assert net["body"].startswith("val sum = items.fold(BigDecimal.ZERO)")
    assert '    private val discountThreshold = BigDecimal("100.00")' in net["class_summary"].splitlines()
    assert units["LineItem"]["signature"].startswith("data class LineItem(val sku: String")
    fmt = units["formatEuro"]
    assert fmt["kind"] == "function" and fmt["class_summary"] is None
    assert fmt["imports"] == ["import java.math.BigDecimal", "import java.math.RoundingMode"]


def test_kotlin_expression_bodies_and_companion_objects():
    units = sample_units("kotlin/PriceCalculator.kt")
    assert units["LineItem.subtotal"]["signature"] == "fun subtotal(): BigDecimal"
    assert units["LineItem.subtotal"]["body"] == "unitPrice.multiply(BigDecimal(quantity))"
    german = units["PriceCalculator.Companion.german"]
    assert german["docstring"] == "The calculator for Germany's standard VAT rate."
    assert german["class_summary"].startswith("companion object {")


def test_kotlin_tests_are_found_by_annotation_and_class_name():
    text = (
        "import org.junit.jupiter.api.Test\n\n"
        "/** Checks VAT. */\n"
        '@Suppress("unused")\n'
        "class PriceCalculatorTest {\n"
        "    @Test\n"
        "    fun `adds vat`() {\n"
        "        check(true)\n"
        "    }\n\n"
        "    fun helper() {\n"
        "        check(false)\n"
        "    }\n"
        "}\n"
    )
    units = by_name(extract(text, "PriceCalculatorTest.kt", "kotlin")[0])
    test_class = units["PriceCalculatorTest"]
    assert test_class["is_test"] and test_class["docstring"] == "Checks VAT."
    assert test_class["decorators"] == ['@Suppress("unused")']
    assert test_class["signature"] == "class PriceCalculatorTest"
    assert units["PriceCalculatorTest.`adds vat`"]["is_test"]
    assert units["PriceCalculatorTest.`adds vat`"]["imports"] == ["import org.junit.jupiter.api.Test"]
    assert not units["PriceCalculatorTest.helper"]["is_test"]


def test_a_typescript_file_yields_its_class_interface_function_and_arrow_const():
    units = sample_units("web/cart.ts")
    assert units["CartItem"]["kind"] == "class" and units["CartItem"]["signature"] == "export interface CartItem"
    assert units["CartItem"]["body"] == "sku: string;\nname: string;\nprice: number;\nquantity: number;"
    add = units["Cart.add"]
    assert add["signature"] == "add(item: CartItem): void"
    assert add["docstring"] == "Adds an item, or raises the quantity of the line that has its SKU."
    assert "    private items: CartItem[] = [];" in add["class_summary"].splitlines()
    receipt = units["receiptLines"]
    assert receipt["kind"] == "function" and receipt["imports"] == ['import { formatPrice } from "./format";']
    shipping = units["hasFreeShipping"]
    assert shipping["signature"] == "export const hasFreeShipping = (cart: Cart, threshold = 50): boolean =>"
    assert shipping["body"] == "return cart.total() >= threshold;"
    assert not any(u["is_test"] for u in units.values())


def test_typescript_decorators_are_kept_and_left_out_of_the_signature():
    text = """import { Component, Input } from "@angular/core";

/** Shows the cart. */
@Component({ selector: "app-cart" })
export class CartComponent {
  /** Adds one. */
  @Input()
  add(n: number): number {
    return n + 1;
  }
}
"""
    units = by_name(extract(text, "cart.component.ts", "typescript")[0])
    component = units["CartComponent"]
    assert component["decorators"] == ['@Component({ selector: "app-cart" })']
    assert component["signature"] == "export class CartComponent"
    assert component["docstring"] == "Shows the cart."
    add = units["CartComponent.add"]
    assert (add["decorators"], add["signature"], add["docstring"]) == (
        ["@Input()"],
        "add(n: number): number",
        "Adds one.",
    )
    assert add["imports"] == ['import { Component, Input } from "@angular/core";']


def test_tsx_files_are_read_with_the_tsx_grammar():
    text = 'export const Badge = (props: { n: number }) => {\n  return <span className="badge">{props.n}</span>;\n};\n'
    units, quarantined = extract(text, "web/Badge.tsx", "typescript")
    assert quarantined == []
    assert [(u["qualified_name"], u["language"]) for u in units] == [("Badge", "typescript")]
    assert units[0]["body"] == 'return <span className="badge">{props.n}</span>;'


def test_javascript_functions_keep_their_jsdoc_and_expression_bodies():
    units = sample_units("web/format.js")
    price = units["formatPrice"]
    assert price["signature"] == "export function formatPrice(amount)"
    assert price["docstring"].splitlines() == [
        'Formats an amount in euros with a decimal comma, e.g. 7 -> "7,00 €".',
        "@param {number} amount",
        "@returns {string}",
    ]
    slugify = units["slugify"]
    assert slugify["signature"] == "export const slugify = (text) =>"
    assert slugify["body"].startswith("text\n  .toLowerCase()")


def test_functions_and_test_cases_in_a_typescript_test_file_are_tests():
    units = sample_units("web/cart.test.ts")
    merges = units["Cart.merges items with the same SKU"]
    assert merges["is_test"] and merges["kind"] == "function"
    assert merges["signature"] == 'it("merges items with the same SKU", () =>'
    assert merges["body"].startswith("const cart = new Cart();")
    assert 'import { Cart, hasFreeShipping } from "./cart";' in merges["imports"]
    assert units["shipping is free from 50 euros"]["is_test"]
    assert units["coffee"]["is_test"]


def test_a_go_method_is_qualified_by_its_receiver_type():
    units = sample_units("go/inventory/inventory.go")
    reserve = units["Store.Reserve"]
    assert (reserve["name"], reserve["kind"]) == ("Reserve", "method")
    assert reserve["signature"] == "func (s *Store) Reserve(sku string, qty int) error"
    assert (
        reserve["docstring"]
        == "Reserve holds qty units for an order.\nIt fails with ErrOutOfStock when fewer are available."
    )
    assert reserve["imports"] == ['"fmt"']
    assert reserve["body"].startswith("s.mu.Lock()\ndefer s.mu.Unlock()")
    assert reserve["class_summary"].splitlines() == [
        "type Store struct {",
        "    mu sync.Mutex",
        "    items map[string]*Item",
        "}",
        "func (s *Store) Add(sku, name string, qty int) { ... }",
        "func (s *Store) Reserve(sku string, qty int) error { ... }",
    ]
    assert units["Item.Available"]["class_summary"].startswith("type Item struct {")


def test_go_structs_are_classes_and_plain_funcs_are_functions():
    units = sample_units("go/inventory/inventory.go")
    store = units["Store"]
    assert (store["kind"], store["signature"]) == ("class", "type Store struct")
    assert store["body"] == "mu    sync.Mutex\nitems map[string]*Item"
    assert store["imports"] == ['"sync"']
    new = units["NewStore"]
    assert new["kind"] == "function" and new["class_summary"] is None
    assert new["docstring"] == "NewStore returns an empty store."


def test_go_imports_follow_aliases_and_version_suffixes():
    text = """package p

import (
	"net/http"
	yaml "gopkg.in/yaml.v3"
	"github.com/acme/store/v2"
	_ "embed"
)

type (
	// Handler serves the store.
	Handler struct{ s *store.Store }
)

func (h Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_ = yaml.Unmarshal(nil, h.s)
}
"""
    units = by_name(extract(text, "p/handler.go", "go")[0])
    assert units["Handler"]["signature"] == "type Handler struct"
    assert units["Handler"]["docstring"] == "Handler serves the store."
    assert units["Handler"]["imports"] == ['"github.com/acme/store/v2"']
    assert units["Handler.ServeHTTP"]["imports"] == ['"net/http"', 'yaml "gopkg.in/yaml.v3"']


def test_go_tests_are_test_functions_in_test_files():
    units = sample_units("go/inventory/inventory_test.go")
    assert units["TestReserve"]["is_test"] and units["TestReserve"]["signature"] == "func TestReserve(t *testing.T)"
    assert units["TestReserve"]["imports"] == ['"errors"', '"testing"']
    text = "package p\n\nfunc TestX(t *testing.T) {\n\tt.Fail()\n}\n\nfunc Testify() {\n\trun()\n}\n"
    assert {u["name"]: u["is_test"] for u in extract(text, "p.go", "go")[0]} == {"TestX": False, "Testify": False}
    assert {u["name"]: u["is_test"] for u in extract(text, "p_test.go", "go")[0]} == {"TestX": True, "Testify": False}
