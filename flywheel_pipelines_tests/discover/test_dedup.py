"""Deduplication: copies of a function across repositories become one training example, not several."""

import hashlib
import itertools
import random
import re
import textwrap

import pytest

from flywheel_pipelines.discover.dedup import (
    deduplicate,
    lsh_params,
    near_duplicate_pairs,
    normalise,
    unit_shingles,
)


def unit(source: str, path: str, code: str, language: str = "python", start_line: int = 1, name: str = "") -> dict:
    """A code unit from its code: the first line is the signature, the rest the body (dedented)."""
    signature, _, body = textwrap.dedent(code).strip("\n").partition("\n")
    name = name or re.search(r"(\w+)\s*\(", signature).group(1)
    return {
        "unit_id": hashlib.sha256(f"{source}\0{path}\0{name}".encode()).hexdigest()[:16],
        "source": source,
        "path": path,
        "start_line": start_line,
        "end_line": start_line + code.strip("\n").count("\n"),
        "qualified_name": name,
        "language": language,
        "signature": signature.strip(),
        "body": textwrap.dedent(body),
    }


PLACE_ORDER = """
def place_order(cart, customer, inventory):
    total = 0
    lines = []
    for item in cart.items:
        stock = inventory.reserve(item.sku, item.quantity)
        if stock is None:
            raise OutOfStock(item.sku)
        price = item.unit_price * item.quantity
        if customer.is_member and item.quantity >= 3:
            price = price * 0.9
        total += price
        lines.append(OrderLine(item.sku, item.quantity, price))
    shipping = 0 if total > 50 else 4.99
    order = Order(customer=customer.id, lines=lines, total=total + shipping)
    audit_log.info("order placed for %s with %d lines", customer.id, len(lines))
    notify(customer.email, "Your order is confirmed", order.summary())
    return order
"""

# The same function after black, with comments, a docstring and single quotes.
PLACE_ORDER_REFORMATTED = """
def place_order(cart,customer,inventory):
    '''Reserve stock and create the order.'''
    total=0  # running sum
    lines=[]
    # one line per cart item
    for item in cart.items:
        stock=inventory.reserve(
            item.sku,
            item.quantity,
        )
        if stock is None:
             raise OutOfStock(item.sku)
        price=item.unit_price*item.quantity
        if customer.is_member and item.quantity>=3:
            price=price*0.9   # members' discount
        total+=price
        lines.append(OrderLine(item.sku,item.quantity,price))
    shipping=0 if total>50 else 4.99
    order=Order(customer=customer.id,lines=lines,total=total+shipping)
    audit_log.info('order placed for %s with %d lines',customer.id,len(lines))
    notify(customer.email,'Your order is confirmed',order.summary())
    return order
"""

# A longer function: with 5-token shingles a renamed variable costs 5 shingles per use, so a near duplicate
# needs enough unchanged code around the edits (as copies worth removing have).
IMPORT_PRODUCTS = """
def import_products(path, catalogue, currency="EUR"):
    created, updated, skipped = 0, 0, []
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle, delimiter=";")
        for number, row in enumerate(reader, start=2):
            sku = row.get("sku", "").strip()
            if not sku:
                skipped.append((number, "missing sku"))
                continue
            try:
                price = Decimal(row["price"].replace(",", "."))
            except (KeyError, InvalidOperation):
                skipped.append((number, "bad price"))
                continue
            if price <= 0:
                skipped.append((number, "price must be positive"))
                continue
            name = " ".join(row.get("name", "").split()) or sku
            stock = int(row.get("stock") or 0)
            tags = sorted({t.strip().lower() for t in row.get("tags", "").split(",") if t.strip()})
            product = catalogue.find(sku)
            if product is None:
                product = Product(sku=sku, name=name, price=price, currency=currency)
                catalogue.add(product)
                created += 1
            else:
                product.name = name
                product.price = price
                updated += 1
            product.stock = stock
            product.tags = tags
            if stock == 0 and product.active:
                product.active = False
                events.publish("product.out_of_stock", sku=sku)
    catalogue.commit()
    log.info("imported %s: %d created, %d updated, %d skipped", path, created, updated, len(skipped))
    return ImportReport(created=created, updated=updated, skipped=skipped)
"""

IMPORT_PRODUCTS_EDITED = IMPORT_PRODUCTS.replace("reader", "rows").replace(
    'tags = sorted({t.strip().lower() for t in row.get("tags", "").split(",") if t.strip()})',
    'tags = row.get("tags", "").lower().split("|")',
)


def ids(units) -> set[str]:
    return {u["unit_id"] for u in units}


def test_the_same_function_in_two_repositories_is_kept_once_from_the_first_source():
    in_billing = unit("billing", "shop/orders.py", PLACE_ORDER, start_line=40)
    in_api = unit("api", "vendor/shop/orders.py", PLACE_ORDER, start_line=12)

    result = deduplicate([in_billing, in_api])

    # "api" < "billing": the first source keeps it, whatever its line numbers or the input order.
    assert ids(result.kept) == {in_api["unit_id"]}
    assert result.removed == [(in_billing, f"exact duplicate of {in_api['unit_id']}")]


def test_within_a_source_the_first_path_then_the_first_line_keeps_it():
    late = unit("shop", "b/orders.py", PLACE_ORDER, start_line=1)
    early = unit("shop", "a/orders.py", PLACE_ORDER, start_line=90)
    same_file_later = unit("shop", "a/orders.py", PLACE_ORDER, start_line=120, name="place_order_v2")

    result = deduplicate([late, same_file_later, early])

    assert ids(result.kept) == {early["unit_id"]}
    assert {why for _, why in result.removed} == {f"exact duplicate of {early['unit_id']}"}


def test_reformatting_and_comments_do_not_hide_a_duplicate():
    original = unit("shop", "orders.py", PLACE_ORDER)
    reformatted = unit("fork", "orders.py", PLACE_ORDER_REFORMATTED)
    assert normalise(original["body"], "python") == normalise(reformatted["body"], "python")

    result = deduplicate([original, reformatted])

    assert ids(result.kept) == {reformatted["unit_id"]}  # "fork" < "shop"
    assert result.removed[0][1] == f"exact duplicate of {reformatted['unit_id']}"


def test_java_comments_go_but_comment_markers_inside_strings_stay():
    plain = unit(
        "a",
        "Links.java",
        """
        public String link(String path)
        String base = "http://shop.example/*";
        return base + path;
        """,
        language="java",
    )
    commented = unit(
        "b",
        "Links.java",
        """
        public String link(String path)
        // where the shop lives
        String base =    "http://shop.example/*";   /* not configurable
           yet */
        return base+path;
        """,
        language="java",
    )
    other_url = unit("c", "Links.java", plain["signature"] + "\n" + plain["body"].replace("http", "https"), "java")

    assert normalise(commented["body"], "java") == 'String base = "http://shop.example/*" ; return base + path ;'
    result = deduplicate([plain, commented, other_url])
    assert ids(result.kept) == {plain["unit_id"], other_url["unit_id"]}
    assert result.removed == [(commented, f"exact duplicate of {plain['unit_id']}")]


def test_a_python_fragment_tokenize_rejects_is_still_normalised():
    # An unterminated bracket makes tokenize fail; the regex lexer still drops the comment and folds spaces.
    assert normalise("x = f(1,   # why\n      2", "python") == "x = f ( 1 ,\n2"


def test_a_copy_with_a_renamed_variable_and_one_changed_line_is_a_near_duplicate():
    original = unit("shop", "catalogue.py", IMPORT_PRODUCTS)
    copy = unit("fork", "legacy/catalogue.py", IMPORT_PRODUCTS_EDITED)

    result = deduplicate([original, copy])

    assert ids(result.kept) == {copy["unit_id"]}
    [(removed, why)] = result.removed
    assert removed is original
    match = re.fullmatch(r"near duplicate \(jaccard (0\.\d\d)\) of ([0-9a-f]{16})", why)
    assert match and match.group(2) == copy["unit_id"]
    assert 0.8 <= float(match.group(1)) < 1.0
    assert near_duplicate_pairs([original, copy]) == {tuple(sorted((original["unit_id"], copy["unit_id"])))}


def test_a_copy_rewritten_in_half_is_not_a_near_duplicate():
    original = unit("shop", "orders.py", PLACE_ORDER)
    lines = PLACE_ORDER.strip("\n").splitlines()
    half = "\n".join([*lines[:10], "    return None"])
    result = deduplicate([original, unit("fork", "orders.py", half)])
    assert result.removed == []


DIFFERENT = [
    """
    def parse_price(text):
        cleaned = text.strip().replace(",", ".")
        if not cleaned:
            raise ValueError("empty price")
        return Decimal(cleaned).quantize(Decimal("0.01"))
    """,
    """
    def slugify(title):
        words = re.findall(r"[a-z0-9]+", title.lower())
        return "-".join(words)[:80]
    """,
    """
    def retry(call, attempts=3, delay=0.5):
        for attempt in range(attempts):
            try:
                return call()
            except TimeoutError:
                time.sleep(delay * 2**attempt)
        raise RuntimeError("gave up")
    """,
    """
    def get_name(self):
        return self._name
    """,
    """
    def get_email(self):
        return self._email
    """,
]


def test_different_functions_are_all_kept():
    units = [unit("shop", f"m{i}.py", code) for i, code in enumerate([PLACE_ORDER, *DIFFERENT])]
    result = deduplicate(units)
    assert result.removed == []
    assert [u["unit_id"] for u in result.kept] == [u["unit_id"] for u in units]  # input order is kept
    assert near_duplicate_pairs(units) == set()


def test_tiny_units_with_fewer_tokens_than_a_shingle_are_compared_whole():
    a = unit("a", "x.py", "def f():\n    pass")
    b = unit("b", "x.py", "def g():\n    pass")
    assert [s.size for s in unit_shingles([a, b], shingle=50)] == [1, 1]
    assert deduplicate([a, b], shingle=50).removed == []
    assert len(deduplicate([a, unit("c", "y.py", "def f():\n    pass")], shingle=50).removed) == 1


def test_a_method_is_not_a_duplicate_of_the_class_that_encloses_it():
    body = textwrap.indent(textwrap.dedent(PLACE_ORDER).strip("\n"), "    ")
    cls = unit("shop", "orders.py", "class Orders:\n" + body, start_line=1, name="Orders")
    method = unit("shop", "orders.py", PLACE_ORDER, start_line=2, name="Orders.place_order")
    assert len(near_duplicate_pairs([cls, method])) == 1  # similar text ...
    assert deduplicate([cls, method]).removed == []  # ... but one contains the other
    moved = dict(method, path="payments.py")
    assert len(deduplicate([cls, moved]).removed) == 1


def corpus() -> list[dict]:
    return [
        unit("shop", "orders.py", PLACE_ORDER, start_line=10),
        unit("shop", "legacy/orders.py", PLACE_ORDER_REFORMATTED, start_line=3),
        unit("shop", "catalogue.py", IMPORT_PRODUCTS),
        unit("vendor", "catalogue.py", IMPORT_PRODUCTS_EDITED, start_line=1),
        unit("api", "z.py", IMPORT_PRODUCTS_EDITED, start_line=7),
        *(unit("shop", f"util{i}.py", code) for i, code in enumerate(DIFFERENT)),
        *(unit("tools", f"util{i}.py", code) for i, code in enumerate(DIFFERENT[:2])),
    ]


def outcome(units: list[dict]) -> tuple[set[str], set[tuple[str, str]]]:
    result = deduplicate(units)
    return ids(result.kept), {(u["unit_id"], why) for u, why in result.removed}


def test_the_keep_rule_does_not_depend_on_input_order():
    units = corpus()
    expected = outcome(units)
    kept, removed = expected
    # One place_order (shop/legacy/ < shop/orders.py), one import_products (source "api" < "shop" < "vendor"),
    # and the tools/ copies lose to shop/.
    assert len(kept) == 2 + len(DIFFERENT) and len(removed) == 1 + 2 + 2
    assert {
        unit("shop", "legacy/orders.py", PLACE_ORDER)["unit_id"],
        unit("api", "z.py", "def import_products(")["unit_id"],
    } <= kept
    for seed in range(5):
        shuffled = units[:]
        random.Random(seed).shuffle(shuffled)
        assert outcome(shuffled) == expected
    assert outcome(units[::-1]) == expected


def test_removed_share_per_source_is_reported():
    units = corpus()
    result = deduplicate(units)
    # shop: a place_order copy and its import_products lose (2 of 8); tools: both lose to shop; vendor: to api.
    assert result.removed_share_by_source == {
        "api": 0.0,
        "shop": 0.25,
        "tools": 1.0,
        "vendor": 1.0,
    }


@pytest.mark.parametrize(("threshold", "num_perm"), itertools.product([0.5, 0.8, 0.9], [64, 128, 256]))
def test_lsh_bands_find_a_pair_at_the_threshold_with_probability_098(threshold, num_perm):
    bands, rows = lsh_params(threshold, num_perm)
    assert bands * rows <= num_perm and bands >= 2
    assert 1 - (1 - threshold**rows) ** bands >= 0.98
    # One more row per band would drop below the target: the bands are as selective as allowed.
    fewer = num_perm // (rows + 1)
    assert fewer < 2 or 1 - (1 - threshold ** (rows + 1)) ** fewer < 0.98


def test_lexing_in_worker_processes_gives_the_same_result(monkeypatch):
    units = corpus()
    expected = outcome(units)
    monkeypatch.setattr("flywheel_pipelines.discover.dedup._PARALLEL_FROM_UNITS", 1)
    result = deduplicate(units, workers=2)
    assert (ids(result.kept), {(u["unit_id"], why) for u, why in result.removed}) == expected
