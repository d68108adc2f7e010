"""Step 2, domain models: the classes of a code base become a PlantUML class diagram a model can read and write;
diagrams written by a model are parsed back tolerantly, and every problem in them is reported precisely."""

from __future__ import annotations

import hashlib

import pytest

from flywheel_pipelines.discover.code_units import extract_code_units
from flywheel_pipelines.discover.dsl import DslError, DslSyntaxError
from flywheel_pipelines.discover.dsl.plantuml import domain_model_from_units, parse, render, validate
from flywheel_pipelines.schemas import validation_errors
from flywheel_pipelines_tests.conftest import SAMPLES

LANGUAGES = {".py": "python", ".java": "java", ".kt": "kotlin", ".ts": "typescript", ".js": "javascript", ".go": "go"}


def code_file(path: str, text: str, source: str = "shop") -> dict:
    suffix = path[path.rindex(".") :]
    sha = hashlib.sha256(text.encode()).hexdigest()
    return {"source": source, "path": path, "language": LANGUAGES[suffix], "text": text, "sha256": sha}


def sample_files(*folders: str) -> list[dict]:
    return [
        code_file(str(p.relative_to(SAMPLES)), p.read_text(encoding="utf-8"))
        for folder in folders
        for p in sorted((SAMPLES / folder).rglob("*"))
        if p.suffix in LANGUAGES
    ]


def model_of(files: list[dict]) -> dict:
    model = domain_model_from_units(extract_code_units(files).units)
    assert validation_errors("domain_model", model) == []
    return model


def classes_of(model: dict) -> dict[str, dict]:
    return {c["name"]: c for c in model["classes"]}


def relation(source: str, target: str, kind: str, label: str | None = None, multiplicity: str | None = None) -> dict:
    return {"source": source, "target": target, "kind": kind, "label": label, "multiplicity": multiplicity}


def fields_of(cls: dict) -> dict[str, tuple[str | None, str | None]]:
    return {f["name"]: (f["type"], f["visibility"]) for f in cls["fields"]}


# --- from code -------------------------------------------------------------------------------------------------------


def test_the_sample_order_service_renders_a_diagram_with_order_composed_of_order_line():
    model = model_of(sample_files("shop"))
    text = render(model)

    assert model["title"] == "shop"
    assert [c["name"] for c in model["classes"]] == ["Order", "OrderLine", "OrderService", "PriceList"]
    assert 'Order "1" *-- "many" OrderLine : lines' in text.splitlines()
    assert "  +add_line(sku : str, quantity : int, unit_price : Decimal) : OrderLine" in text.splitlines()
    order = classes_of(model)["Order"]
    assert fields_of(order) == {
        "order_id": ("str", "+"),
        "customer_id": ("str", "+"),
        "lines": ("list[OrderLine]", "+"),
        "status": ("str", "+"),
        "placed_on": ("date | None", "+"),
    }
    # The service's attributes come from its constructor; a copied parameter lends its annotation.
    service = classes_of(model)["OrderService"]
    assert fields_of(service) == {
        "tax_rate": ("Decimal", "+"),
        "_orders": ("dict[str, Order]", "#"),
        "_next_id": (None, "#"),
    }
    assert service["methods"][0] == {
        "name": "__init__",
        "parameters": [{"name": "tax_rate", "type": "Decimal"}],
        "return_type": None,
        "visibility": "+",
    }
    # A plain class holding many orders aggregates them; a dataclass owns its lines.
    assert model["relations"] == [
        relation("Order", "OrderLine", "composition", "lines", "many"),
        relation("OrderService", "Order", "aggregation", "_orders", "many"),
    ]
    assert text.startswith("@startuml\ntitle shop\n") and text.endswith("@enduml\n")
    assert validate(text) == []


def test_a_java_service_implementing_an_interface_gets_an_implementation_arrow():
    base = "src/main/java/com/example/orders"
    files = [
        code_file(
            f"{base}/OrderRepository.java",
            "package x;\npublic interface OrderRepository {\n    Optional<Order> find(long id);\n"
            "    void save(Order order);\n}\n",
        ),
        code_file(
            f"{base}/AuditedService.java",
            "package x;\npublic abstract class AuditedService {\n    protected final Clock clock;\n"
            "    protected AuditedService(Clock clock) { this.clock = clock; }\n}\n",
        ),
        code_file(
            f"{base}/Order.java",
            "package x;\npublic record Order(long id, String customerId, List<OrderItem> items) {\n"
            "    public int size() { return items.size(); }\n}\n",
        ),
        code_file(
            f"{base}/JdbcOrderService.java",
            "package x;\n@Service\npublic class JdbcOrderService extends AuditedService implements OrderRepository {\n"
            '    private static final String TABLE = "orders";\n'
            "    private final OrderRepository fallback;\n"
            "    private final Map<Long, Order> cache = new HashMap<>();\n"
            "    /** Looks an order up. */\n"
            '    @Override\n    public Optional<Order> find(long id) { return Optional.ofNullable(cache.get("}")); }\n'
            "    @Override\n    public void save(final Order order) { cache.put(order.id(), order); }\n"
            "    int count() { return cache.size(); }\n}\n",
        ),
    ]
    model = model_of(files)
    text = render(model)

    assert "OrderRepository <|.. JdbcOrderService" in text.splitlines()
    assert "AuditedService <|-- JdbcOrderService" in text.splitlines()
    classes = classes_of(model)
    assert classes["OrderRepository"]["stereotype"] == "interface"
    assert classes["AuditedService"]["stereotype"] == "abstract"
    assert fields_of(classes["JdbcOrderService"]) == {
        "TABLE": ("String", "-"),
        "fallback": ("OrderRepository", "-"),
        "cache": ("Map<Long, Order>", "-"),
    }
    methods = {m["name"]: m for m in classes["JdbcOrderService"]["methods"]}
    assert methods["save"]["parameters"] == [{"name": "order", "type": "Order"}]
    assert (methods["find"]["return_type"], methods["count"]["visibility"]) == ("Optional<Order>", "~")
    # Interface members are public without saying so; record components are fields.
    assert {m["visibility"] for m in classes["OrderRepository"]["methods"]} == {"+"}
    assert [f["name"] for f in classes["Order"]["fields"]] == ["id", "customerId", "items"]
    assert relation("JdbcOrderService", "Order", "aggregation", "cache", "many") in model["relations"]
    assert relation("JdbcOrderService", "OrderRepository", "association", "fallback", "1") in model["relations"]
    assert relation("OrderRepository", "Order", "dependency") in model["relations"]
    assert validate(text) == []


def test_the_sample_java_controller_is_associated_with_its_service_and_the_test_class_is_left_out():
    model = model_of(sample_files("java"))
    assert sorted(classes_of(model)) == ["OrderController", "OrderService"]  # OrderServiceTest is a test
    assert model["relations"] == [relation("OrderController", "OrderService", "association", "orderService", "1")]
    service = classes_of(model)["OrderService"]
    assert fields_of(service)["orders"] == ("Map<Long, Order>", "-")
    assert [m["name"] for m in service["methods"]] == ["placeOrder", "findOrder", "ordersOf", "totalOf"]


SAMPLE_CLASSES = {
    "python": (("shop",), {"Order", "OrderLine", "OrderService", "PriceList"}),
    "java": (("java",), {"OrderController", "OrderService"}),
    "kotlin": (("kotlin",), {"LineItem", "PriceCalculator"}),
    "typescript": (("web",), {"Cart", "CartItem"}),
    "go": (("go",), {"Item", "Store"}),
}


@pytest.mark.parametrize("language", sorted(SAMPLE_CLASSES))
def test_every_sample_languages_classes_round_trip(language: str):
    folders, names = SAMPLE_CLASSES[language]
    model = model_of([f for f in sample_files(*folders) if f["language"] == language])
    assert set(classes_of(model)) == names
    assert all(c["fields"] or c["methods"] for c in model["classes"])
    text = render(model)
    parsed = parse(text)
    assert validation_errors("domain_model", parsed) == []
    assert parsed == model
    assert validate(text) == []
    assert render(parsed) == text


def test_a_javascript_class_round_trips_with_its_constructor_assigned_fields():
    model = model_of(
        [
            code_file(
                "web/basket.js",
                "export class Basket extends Store {\n  count = 0;\n  static #instances = 0;\n"
                "  constructor(owner, limit = 10) {\n    super();\n    this.owner = owner;\n    this.items = [];\n  }\n"
                "  get total() { return 1; }\n  async add(item, ...more) { return item; }\n}\n",
            )
        ]
    )
    basket = classes_of(model)["Basket"]
    assert fields_of(basket) == {
        "count": (None, "+"),
        "instances": (None, "-"),
        "owner": (None, "+"),
        "items": (None, "+"),
    }
    assert [(m["name"], [p["name"] for p in m["parameters"]]) for m in basket["methods"]] == [
        ("constructor", ["owner", "limit"]),
        ("total", []),
        ("add", ["item", "...more"]),
    ]
    assert parse(render(model)) == model


def test_kotlin_properties_come_from_the_primary_constructor_and_the_body():
    model = model_of(sample_files("kotlin"))
    classes = classes_of(model)
    assert fields_of(classes["LineItem"]) == {
        "sku": ("String", "+"),
        "unitPrice": ("BigDecimal", "+"),
        "quantity": ("Int", "+"),
    }
    # `= BigDecimal("100.00")` names the type the declaration leaves out; the companion object is not a class.
    assert fields_of(classes["PriceCalculator"]) == {
        "vatRate": ("BigDecimal", "-"),
        "discountThreshold": ("BigDecimal", "-"),
    }
    assert [m["name"] for m in classes["PriceCalculator"]["methods"]] == ["netTotal", "grossTotal"]
    assert model["relations"] == [relation("PriceCalculator", "LineItem", "dependency")]


def test_go_methods_declared_outside_the_struct_belong_to_it_and_an_interface_is_implemented_implicitly():
    model = model_of(sample_files("go"))
    store = classes_of(model)["Store"]
    assert fields_of(store) == {"mu": ("sync.Mutex", "-"), "items": ("map[string]*Item", "-")}
    assert store["methods"] == [
        {
            "name": "Add",
            "parameters": [
                {"name": "sku", "type": "string"},
                {"name": "name", "type": "string"},
                {"name": "qty", "type": "int"},
            ],
            "return_type": None,
            "visibility": "+",
        },
        {
            "name": "Reserve",
            "parameters": [{"name": "sku", "type": "string"}, {"name": "qty", "type": "int"}],
            "return_type": "error",
            "visibility": "+",
        },
    ]
    # Held through pointers in a map: many items, not owned.
    assert model["relations"] == [relation("Store", "Item", "aggregation", "items", "many")]

    shapes = model_of(
        [
            code_file(
                "geo/shapes.go",
                "package geo\n\ntype Shape interface {\n\tArea() float64\n}\n\n"
                "type Point struct {\n\tX, Y float64\n}\n\n"
                'type Circle struct {\n\tCenter Point `json:"center"`\n\tradius float64\n}\n\n'
                "func (c Circle) Area() float64 { return 3.14 * c.radius * c.radius }\n",
            )
        ]
    )
    assert fields_of(classes_of(shapes)["Point"]) == {"X": ("float64", "+"), "Y": ("float64", "+")}
    assert shapes["relations"] == [
        relation("Circle", "Point", "composition", "Center", "1"),  # a struct held by value is part of its owner
        relation("Circle", "Shape", "implementation"),
    ]


def test_typescript_parameter_properties_and_interfaces_become_members():
    model = model_of([f for f in sample_files("web") if f["language"] == "typescript"])
    cart = classes_of(model)["Cart"]
    assert fields_of(cart) == {"items": ("CartItem[]", "-"), "currency": ("string", "-")}
    assert [m["name"] for m in cart["methods"]] == ["constructor", "add", "remove", "total", "size"]
    assert classes_of(model)["CartItem"]["stereotype"] == "interface"
    assert model["relations"] == [relation("Cart", "CartItem", "aggregation", "items", "many")]


def test_python_stereotypes_follow_the_bases_and_inheritance_stays_inside_the_model():
    model = model_of(
        [
            code_file(
                "shop/kinds.py",
                "from abc import ABC, abstractmethod\nfrom enum import Enum\nfrom typing import Optional, Protocol\n\n"
                "class Status(Enum):\n    OPEN = 'open'\n    PAID = 'paid'\n\n"
                "class Payable(Protocol):\n    def pay(self, amount: 'Decimal') -> bool: ...\n\n"
                "class Document(ABC):\n    @abstractmethod\n    def number(self) -> str:\n        ...\n\n"
                "class Invoice(Document, Payable, KeyError):\n    status: Status\n"
                "    previous: Optional['Invoice'] = None\n"
                "    def __init__(self, *lines: str, **extra):\n        self.__secret = 1\n"
                "    @staticmethod\n    def parse(text: str) -> 'Invoice':\n        return Invoice()\n",
            )
        ]
    )
    classes = classes_of(model)
    assert {n: c["stereotype"] for n, c in classes.items()} == {
        "Document": "abstract",
        "Invoice": "class",
        "Payable": "interface",
        "Status": "enum",
    }
    assert fields_of(classes["Status"]) == {"OPEN": (None, None), "PAID": (None, None)}
    assert fields_of(classes["Invoice"]) == {
        "status": ("Status", "+"),
        "previous": ("Optional[Invoice]", "+"),
        "__secret": (None, "-"),
    }
    init, parse_method = classes["Invoice"]["methods"]
    assert init["parameters"] == [{"name": "*lines", "type": "str"}, {"name": "**extra", "type": None}]
    assert parse_method["parameters"] == [{"name": "text", "type": "str"}]  # a static method has no self to drop
    assert model["relations"] == [
        relation("Invoice", "Document", "inheritance"),  # KeyError is outside the model: no arrow to nowhere
        relation("Invoice", "Invoice", "association", "previous", "0..1"),
        relation("Invoice", "Payable", "implementation"),
        relation("Invoice", "Status", "association", "status", "1"),
    ]
    assert parse(render(model)) == model
    assert validate(render(model)) == []


def test_units_of_two_sources_are_refused_and_no_units_make_an_empty_model():
    units = extract_code_units(
        [code_file("a.py", "class A:\n    x: int\n", "one"), code_file("b.py", "class B:\n    y: int\n", "two")]
    ).units
    with pytest.raises(ValueError, match="one source"):
        domain_model_from_units(units)
    assert domain_model_from_units([]) == {"title": None, "classes": [], "relations": []}


# --- hand-written models --------------------------------------------------------------------------------------------

HAND_WRITTEN = [
    {"title": None, "classes": [], "relations": []},
    {
        "title": "Billing (draft 2)",
        "classes": [
            {
                "name": "Invoice Line",
                "stereotype": "class",
                "fields": [{"name": "amount", "type": "Money", "visibility": None}],
                "methods": [],
            },
            {
                "name": "billing.Invoice",
                "stereotype": "abstract",
                "fields": [
                    {"name": "lines", "type": "Map<String, List<Line>>", "visibility": "#"},
                    {"name": "note", "type": None, "visibility": "~"},
                ],
                "methods": [
                    {
                        "name": "total",
                        "parameters": [
                            {"name": "currency", "type": "(Int) -> String"},
                            {"name": "...rest", "type": None},
                            {"name": "**kw", "type": "dict[str, tuple[int, int]]"},
                        ],
                        "return_type": "{ amount: number }",
                        "visibility": "+",
                    },
                    {"name": "close", "parameters": [], "return_type": None, "visibility": None},
                ],
            },
            {
                "name": "Color",
                "stereotype": "enum",
                "fields": [
                    {"name": "RED", "type": None, "visibility": None},
                    {"name": "code", "type": "String", "visibility": "-"},
                ],
                "methods": [],
            },
            {"name": "Payable", "stereotype": "interface", "fields": [], "methods": []},
        ],
        "relations": [
            relation("billing.Invoice", "Invoice Line", "composition", "lines", "1..*"),
            relation("billing.Invoice", "Payable", "implementation"),
            relation("billing.Invoice", "Color", "association", None, "0..1"),
            relation("billing.Invoice", "Color", "aggregation", "history of colors", None),
            relation("Invoice Line", "billing.Invoice", "inheritance", "is a", "many"),
            relation("Payable", "Color", "dependency", "uses >", None),
        ],
    },
]


@pytest.mark.parametrize("model", HAND_WRITTEN, ids=["empty", "every-feature"])
def test_hand_written_models_round_trip(model: dict):
    assert validation_errors("domain_model", model) == []
    assert parse(render(model)) == model


def test_the_canonical_diagram_writes_each_relation_kind_with_its_own_arrow():
    lines = render(HAND_WRITTEN[1]).splitlines()
    assert 'class "Invoice Line" {' in lines
    assert "abstract class billing.Invoice {" in lines
    assert (
        "  +total(currency : (Int) -> String, ...rest, **kw : dict[str, tuple[int, int]]) : { amount: number }" in lines
    )
    assert 'billing.Invoice "1" *-- "1..*" "Invoice Line" : lines' in lines
    assert "Payable <|.. billing.Invoice" in lines
    assert 'billing.Invoice "1" --> "0..1" Color' in lines
    assert "billing.Invoice o-- Color : history of colors" in lines
    assert 'billing.Invoice "many" <|-- "1" "Invoice Line" : is a' in lines
    assert "Payable ..> Color : uses >" in lines


# --- reading what a model wrote ---------------------------------------------------------------------------------------

CANONICAL = """@startuml
title Shop

class Order {
  +id : str
  +add(line : OrderLine) : None
}

class OrderLine {
  +sku : str
}

Order "1" *-- "many" OrderLine : lines
@enduml
"""


def test_prose_around_the_diagram_is_ignored():
    answer = (
        "Sure! Here is the domain model as a PlantUML class diagram:\n\n```plantuml\n"
        + CANONICAL
        + "```\n\nOrder owns its lines; @startuml marks where a diagram begins.\n"
    )
    model = parse(answer)
    assert model == parse(CANONICAL)
    assert model["title"] == "Shop"
    assert [c["name"] for c in model["classes"]] == ["Order", "OrderLine"]
    assert model["relations"] == [relation("Order", "OrderLine", "composition", "lines", "many")]
    assert validation_errors("domain_model", model) == []
    assert validate(answer) == []


def test_plantuml_variants_read_as_the_same_model():
    text = """@startuml shop
skinparam class {
  BackgroundColor White
}
hide empty members
' the order aggregate
/' a block
   comment '/
package shop {
  abstract class Entity <<Persistent>> {
    {abstract} +id() : str
  }
  interface Priced
  abstract Base
  enum Status {
    OPEN,
    PLACED
  }
  class Order extends Entity implements Priced {
    -- fields --
    -lines : list[OrderLine]
    String note
    ..
    {static} +of(String id, list items) : Order
    +void cancel()
  }
  class OrderLine
}
note left of Order : the aggregate root
note "Lines are value objects" as N1
N1 .. OrderLine
note top of OrderLine
  a multi-line note
end note
OrderLine --* Order : lines
Order -up-|> Base
Order --> "0..1" Status
Order -[hidden]- OrderLine
Status <.. OrderLine
@enduml
"""
    model = parse(text)
    assert validation_errors("domain_model", model) == []
    classes = classes_of(model)
    assert {n: c["stereotype"] for n, c in classes.items()} == {
        "Entity": "abstract",
        "Priced": "interface",
        "Base": "abstract",
        "Status": "enum",
        "Order": "class",
        "OrderLine": "class",
    }
    assert fields_of(classes["Status"]) == {"OPEN": (None, None), "PLACED": (None, None)}
    assert classes["Order"]["fields"] == [
        {"name": "lines", "type": "list[OrderLine]", "visibility": "-"},
        {"name": "note", "type": "String", "visibility": None},
    ]
    assert classes["Order"]["methods"] == [
        {
            "name": "of",
            "parameters": [{"name": "id", "type": "String"}, {"name": "items", "type": "list"}],
            "return_type": "Order",
            "visibility": "+",
        },
        {"name": "cancel", "parameters": [], "return_type": "void", "visibility": "+"},
    ]
    assert model["relations"] == [
        relation("Order", "Entity", "inheritance"),
        relation("Order", "Priced", "implementation"),
        relation("Order", "OrderLine", "composition", "lines"),
        relation("Order", "Base", "inheritance"),
        relation("Order", "Status", "association", None, "0..1"),
        relation("OrderLine", "Status", "dependency"),
    ]
    assert validate(text) == []
    assert parse(render(model)) == model


def test_a_diagram_without_enduml_is_rejected():
    text = "@startuml\nclass Order {\n  +id : str\n}\n"
    with pytest.raises(DslSyntaxError) as caught:
        parse(text)
    assert [(e.location, e.field) for e in caught.value.errors] == [("line 4", "@enduml")]
    assert "line 1" in caught.value.errors[0].reason
    assert validate(text) == caught.value.errors

    with pytest.raises(DslSyntaxError) as caught:
        parse("Here is the model:\nclass Order {\n}\n")
    assert [e.field for e in caught.value.errors] == ["@startuml", "@enduml"]


def test_every_problem_of_a_broken_diagram_is_reported_with_its_line():
    text = "\n".join(
        [
            "@startuml",  # 1
            "class Order {",  # 2
            "  +id : str",  # 3
            "  +add(line : OrderLine",  # 4: unbalanced
            "  +: int",  # 5: no name
            "class OrderLine {",  # 6: Order was never closed
            "  +sku : str",  # 7
            "}",  # 8
            "Order ==> OrderLine",  # 9: not an arrow
            "Order <|--* OrderLine",  # 10: two heads
            "title",  # 11
            "}",  # 12
            "class Status {",  # 13: never closed
            "@enduml",  # 14
        ]
    )
    with pytest.raises(DslSyntaxError) as caught:
        parse(text)
    errors = caught.value.errors
    assert [(e.location, e.field) for e in errors] == [
        ("line 4", "member"),
        ("line 5", "member"),
        ("line 2", "class"),
        ("line 9", "statement"),
        ("line 10", "relation"),
        ("line 11", "title"),
        ("line 12", "}"),
        ("line 13", "class"),
    ]
    assert errors[2].reason == "unclosed '{' of class Order"
    assert "+add(line : OrderLine" in errors[0].reason
    assert str(errors[2]) == "line 2, class: unclosed '{' of class Order"


# --- well-formedness ------------------------------------------------------------------------------------------------


def test_a_relation_to_an_undeclared_class_is_reported_with_its_line():
    text = "@startuml\nclass Order {\n  +id : str\n}\n\nOrder *-- OrderLine : lines\nCustomer --> Order\n@enduml\n"
    assert parse(text)["relations"][0]["target"] == "OrderLine"  # the syntax is fine; the meaning is not
    assert validate(text) == [
        DslError("line 6", "relation", "'OrderLine' is not a declared class"),
        DslError("line 7", "relation", "'Customer' is not a declared class"),
    ]


def test_duplicates_cycles_empty_names_and_implemented_classes_are_reported():
    text = """@startuml
class A {
  +x : int
  +x : str
  +f(a : int)
  +f(b : int)
  +f(a : str)
}
class A
class B
interface I
class ""
A <|-- B
B <|-- A
I <|.. B
I <|.. I
B <|.. A
@enduml
"""
    errors = validate(text)
    assert errors == [
        DslError("class A", "field", "'x' declared twice (lines 3 and 4)"),
        DslError("class A", "method", "'f' with these parameter types declared twice (lines 5 and 6)"),
        DslError("class A", "name", "declared twice (lines 2 and 9)"),
        DslError("line 12", "name", "a class needs a name"),
        DslError("line 17", "relation", "A implements B, which is class, not an interface"),
        DslError("class A", "relation", "inheritance cycle through A, B"),
        DslError("class I", "relation", "inheritance cycle through I"),
    ]


def test_a_model_built_from_code_validates_clean_but_an_edited_one_does_not():
    text = render(model_of(sample_files("shop")))
    assert validate(text) == []
    broken = text.replace("class OrderLine {", "class Line {")
    assert [e.reason for e in validate(broken)] == ["'OrderLine' is not a declared class"]
