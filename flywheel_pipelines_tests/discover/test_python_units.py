"""Step 1: Python files become code units — functions and methods with signature, docstring, body, class summary."""

from flywheel_pipelines.discover.code_units import extract_code_units
from flywheel_pipelines.discover.python_units import extract_python_units
from flywheel_pipelines.schemas import validation_errors
from flywheel_pipelines_tests.conftest import SAMPLES

SOURCE = '''
import math

@cache
def area(r: float) -> float:
    """Area of a circle."""
    # pi r squared
    return math.pi * r ** 2

class Account(Base, metaclass=Meta):
    """A bank account."""
    currency: str = "EUR"

    def __init__(self, owner):
        self.owner = owner
        self.balance = 0

    async def deposit(self, amount: int) -> None:
        """Add money."""
        if amount <= 0:
            raise ValueError(amount)
        self.balance += amount

    def only_doc(self):
        """Nothing else."""

    class Ledger:
        def entries(self): return []
'''


SHA = "0" * 64


def units_by_name():
    units, rejected = extract_python_units(SOURCE, "bank", "bank/account.py", SHA)
    return {u["qualified_name"]: u for u in units}, rejected


def test_a_function_keeps_signature_decorators_docstring_and_body_with_comments():
    units, _ = units_by_name()
    area = units["area"]
    assert area["kind"] == "function" and area["class_summary"] is None
    assert area["signature"] == "def area(r: float) -> float:"
    assert area["decorators"] == ["@cache"]
    assert area["docstring"] == "Area of a circle."
    assert area["body"] == "# pi r squared\nreturn math.pi * r ** 2"
    assert (area["start_line"], area["end_line"]) == (5, 8)


def test_a_method_carries_its_enclosing_class_summary():
    units, _ = units_by_name()
    deposit = units["Account.deposit"]
    assert deposit["kind"] == "method"
    assert deposit["signature"] == "async def deposit(self, amount: int) -> None:"
    summary = deposit["class_summary"]
    assert summary.startswith("class Account(Base, metaclass=Meta):")
    assert "currency: str = 'EUR'" in summary
    assert "# instance fields: owner, balance" in summary
    assert "    def __init__(self, owner): ..." in summary
    assert "    async def deposit(self, amount: int) -> None: ..." in summary
    assert deposit["body"].startswith("if amount <= 0:\n    raise ValueError(amount)")


def test_nested_classes_get_qualified_names_and_one_liners_work():
    units, _ = units_by_name()
    assert units["Account.Ledger.entries"]["body"] == "return []"


def test_classes_are_units_too_with_their_imports_used():
    units, _ = units_by_name()
    account = units["Account"]
    assert account["kind"] == "class" and account["signature"] == "class Account(Base, metaclass=Meta):"
    assert account["body"].startswith('currency: str = "EUR"')
    assert units["area"]["imports"] == ["import math"]
    assert units["Account.deposit"]["imports"] == []


def test_docstring_only_functions_are_quarantined_with_a_reason_and_all_units_match_the_schema():
    units, rejected = units_by_name()
    assert [(r.item, r.reason, r.stage) for r in rejected] == [
        ("Account.only_doc", "no body besides the docstring", "code_units")
    ]
    assert all(not validation_errors("code_unit", u) for u in units.values())


def test_a_file_that_does_not_parse_is_quarantined_not_fatal():
    units, rejected = extract_python_units("def broken(:\n", "s", "bad.py", SHA)
    assert units == [] and "syntax error line 1" in rejected[0].reason


def sample_files() -> list[dict]:
    return [
        {"source": "samples", "path": f"shop/{p.name}", "language": "python", "text": p.read_text(), "sha256": SHA}
        for p in sorted((SAMPLES / "shop").glob("*.py"))
    ]


def test_the_sample_shop_yields_its_service_methods_and_tests_paired_with_what_they_call():
    units = {u["qualified_name"]: u for u in extract_code_units(sample_files()).units}
    assert {"OrderService.place_order", "PriceList.quote", "round_money", "Order.add_line"} <= set(units)
    test = units["test_place_order_adds_tax"]
    assert test["is_test"] and not units["OrderService.place_order"]["is_test"]
    called = {units[q]["unit_id"] for q in ("OrderService.place_order", "OrderService.create_order", "Order.add_line")}
    assert called <= set(test["tested_units"])
    assert units["OrderService.find_order"]["unit_id"] in units["test_unknown_order_raises"]["tested_units"]


def test_unchanged_files_keep_their_units_without_being_parsed_again():
    first = extract_code_units(sample_files())
    again = extract_code_units(sample_files(), previous_units=first.units)
    assert (again.parsed_files, again.reused_files) == (0, 3)
    assert again.units == first.units
    changed = [dict(f, sha256="1" * 64) if f["path"].endswith("pricing.py") else f for f in sample_files()]
    third = extract_code_units(changed, previous_units=first.units)
    assert (third.parsed_files, third.reused_files) == (1, 2)
