"""Test <-> source pairing: each test unit is linked to the units it exercises, so test-generation examples
("Write tests for the following code") can be built from real pairs.

Two signals, as a developer would read a test: naming conventions (test_place_order / OrderServiceTest /
TestReserve -> the unit of that name, test file -> its source file) and what the test calls.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict

_CALL = re.compile(r"\b([A-Za-z_][A-Za-z0-9_]*)\s*\(")
_TEST_PREFIX = re.compile(r"^(test_?|Test)")
_TEST_SUFFIX = re.compile(r"(_?[Tt]ests?|IT|Spec)$")
# Names too common to point at one unit when they are called.
_AMBIGUOUS_CALLS = 3


def source_file_stem(path: str) -> str:
    """The stem of the file a test file tests: test_orders.py, orders_test.go, OrderServiceTest.java,
    cart.test.ts -> orders, orders, OrderService, cart."""
    stem = os.path.basename(path).split(".")[0]
    stem = re.sub(r"^test_", "", stem)
    return re.sub(r"(_test|Tests?|IT|Spec)$", "", stem)


def named_target(test_name: str) -> str | None:
    """The unit a test's name points at: test_place_order -> place_order, TestReserve -> Reserve,
    OrderServiceTest -> OrderService."""
    stripped = _TEST_SUFFIX.sub("", _TEST_PREFIX.sub("", test_name))
    return stripped or None


def pair_tests(units: list[dict]) -> int:
    """Fill `tested_units` of every test unit (in place); returns how many tests were linked to something."""
    code = [u for u in units if not u["is_test"]]
    for u in code:
        u["tested_units"] = []
    if len(code) == len(units):
        return 0  # no tests: nothing to index
    by_name: dict[str, list[dict]] = defaultdict(list)
    for u in code:
        by_name[u["name"]].append(u)
        by_name[u["name"].lower()].append(u)
    linked = 0
    for test in (u for u in units if u["is_test"]):
        stem = source_file_stem(test["path"]).lower()

        def pick(candidates: list[dict], stem: str = stem, test: dict = test) -> list[dict]:
            same_source = [c for c in candidates if c["source"] == test["source"]]
            near = [c for c in same_source if os.path.basename(c["path"]).split(".")[0].lower() == stem]
            return near or same_source

        targets: dict[str, dict] = {}
        if name := named_target(test["name"]):
            for candidate in pick(by_name.get(name, []) or by_name.get(name.lower(), [])):
                targets[candidate["unit_id"]] = candidate
        for called in set(_CALL.findall(test["body"])):
            candidates = pick(by_name.get(called, []))
            if 0 < len(candidates) <= _AMBIGUOUS_CALLS:
                targets.update((c["unit_id"], c) for c in candidates)
        test["tested_units"] = sorted(targets)
        linked += bool(targets)
    return linked
