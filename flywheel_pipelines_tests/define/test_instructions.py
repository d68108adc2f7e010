"""Step 3 (data): code units are reverse-generated into 'Implement the method X' examples with a stable split."""

from flywheel_pipelines.define.instructions import (
    body_parses,
    build_instruction_dataset,
    examples_from_code_units,
    extract_code,
    signature_in,
)
from flywheel_pipelines.deliver.training_data import examples_from_feedback
from flywheel_pipelines.discover.python_units import extract_python_units
from flywheel_pipelines.schemas import validation_errors

CODE = '''
class Cart:
    """A shopping cart."""
    def __init__(self):
        self.items = []

    def total(self, tax: float=0.0) -> float:
        """Sum of prices, with tax."""
        subtotal = sum(i.price for i in self.items)
        return subtotal * (1 + tax)

def tiny():
    return 1
'''


def units():
    found, _ = extract_python_units(CODE, "shop", "shop/cart.py", "0" * 64)
    return found


def test_a_method_becomes_an_example_whose_input_is_the_context_and_output_the_body():
    examples, rejected = examples_from_code_units(units(), min_body_lines=2, max_body_chars=500, eval_fraction=0.2)
    (example,) = examples
    assert example["instruction"].startswith("Implement the method `Cart.total`.")
    assert "class Cart:" in example["input"] and "def total(self, tax: float=0.0) -> float:" in example["input"]
    assert '"""Sum of prices, with tax."""' in example["input"]
    assert example["output"] == "subtotal = sum(i.price for i in self.items)\nreturn subtotal * (1 + tax)"
    assert signature_in(example) == "def total(self, tax: float=0.0) -> float:"
    assert not validation_errors("instruction", example)
    assert [r.reason for r in rejected] == ["body shorter than 2 lines", "body shorter than 2 lines"]  # classes skip


def test_the_split_depends_only_on_content_so_it_is_stable_and_close_to_the_fraction():
    many = [dict(u, unit_id=f"{i:016x}", qualified_name=f"f{i}", name=f"f{i}") for i, u in enumerate(units() * 200)]
    first, _ = examples_from_code_units(many, min_body_lines=1, max_body_chars=500, eval_fraction=0.25)
    again, _ = examples_from_code_units(list(reversed(many)), min_body_lines=1, max_body_chars=500, eval_fraction=0.25)
    assert {e["example_id"]: e["split"] for e in first} == {e["example_id"]: e["split"] for e in again}
    share = sum(e["split"] == "eval" for e in first) / len(first)
    assert 0.18 < share < 0.32


def test_a_users_edit_replaces_the_reverse_generated_answer_and_always_trains():
    from_code, _ = examples_from_code_units(units(), min_body_lines=2, max_body_chars=500, eval_fraction=0.99)
    target = from_code[0]
    edit = {
        "event_id": "e1",
        "kind": "edit",
        "task": "implement_method",
        "instruction": target["instruction"],
        "input": target["input"],
        "completion": "return 0",
        "edited_completion": "return 42",
    }
    accept = {**edit, "event_id": "e2", "kind": "accept", "edited_completion": None}
    from_feedback = examples_from_feedback([edit, accept])
    dataset, invalid = build_instruction_dataset(from_code, from_feedback)
    assert invalid == [] and len(dataset) == 1
    assert dataset[0]["output"] == "return 42" and dataset[0]["origin"] == "feedback:e1"
    assert dataset[0]["split"] == "train"


def test_generated_bodies_are_checked_for_syntax_in_or_out_of_a_code_fence():
    sig = "def total(self, tax: float=0.0) -> float:"
    assert body_parses(sig, "return 1")
    assert body_parses(sig, extract_code("Sure!\n```python\nx = 1\nreturn x\n```\nThis adds."))
    assert body_parses(sig, "def total(self, tax=0.0):\n    return 2")  # a whole function is fine too
    assert not body_parses(sig, "return (")
    assert not body_parses(sig, "   ")
