"""Packing: several examples share a training row, yet none attends to another and no prompt token is learnt."""

from pathlib import Path

import pytest
import torch

from flywheel_pipelines.define.chat import tokenize_for_training
from flywheel_pipelines.define.packing import PackedCollator, for_packed_training, pack

QUESTIONS = [
    ("Implement `add`.", "def add(a, b):", "return a + b"),
    ("Implement `double`.", "def double(x):", "result = x * 2\nreturn result"),
    ("Write a docstring.", "def f(): pass", "Does nothing at all."),
    ("Implement `neg`.", "def neg(x):", "return -x"),
]


@pytest.fixture(scope="module")
def model_and_features(tiny_model_dir: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32, attn_implementation="sdpa")
    for_packed_training(model).eval()
    features = [tokenize_for_training(tokenizer, i, x, o, max_length=256) for i, x, o in QUESTIONS]
    return model, tokenizer, features


def test_rows_are_filled_first_fit_decreasing_and_keep_every_token():
    features = [{"input_ids": [n] * n, "labels": [n] * n} for n in (10, 20, 30, 40, 50, 60)]
    rows = pack(features, max_length=100)
    # 60 and 40 fill one row, 50, 30 and 20 another; 10 is left for a third. Inside a row, dataset order.
    assert [sorted(set(r.input_ids)) for r in rows] == [[40, 60], [20, 30, 50], [10]]
    assert [len(r.input_ids) for r in rows] == [100, 100, 10] and [r.examples for r in rows] == [2, 3, 1]
    assert rows[0].position_ids == [*range(40), *range(60)] and rows[0].labels[0] == rows[0].labels[40] == -100
    uneven = PackedCollator(pad_token_id=0)([r.__dict__ for r in rows])  # padding to 100 would be 30%
    assert uneven["input_ids"].shape == (1, 210)  # so: one sequence end to end, no padding
    assert uneven["position_ids"][0].tolist() == [p for r in rows for p in r.position_ids]
    even = PackedCollator(pad_token_id=0)([r.__dict__ for r in rows[:2]])  # two full rows: nothing to pad
    assert even["input_ids"].shape == (2, 100)


def test_a_packed_example_sees_only_itself_so_its_logits_equal_those_it_has_alone(model_and_features):
    model, tokenizer, features = model_and_features
    (row,) = pack(features, max_length=512)
    assert row.examples == len(features)
    batch = PackedCollator(tokenizer.pad_token_id)([row.__dict__])
    with torch.no_grad():
        packed_logits = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"]).logits[0]
    start = 0
    for f in features:  # one row holds them all, in dataset order
        n = len(f["input_ids"])
        with torch.no_grad():
            alone = model(input_ids=torch.tensor([f["input_ids"]])).logits[0]
        torch.testing.assert_close(packed_logits[start : start + n], alone, atol=1e-4, rtol=1e-4)
        start += n


def test_without_position_restarts_the_examples_would_see_each_other(model_and_features):
    """The control: the same row with running positions and a plain causal mask does change later examples."""
    model, _, features = model_and_features
    (row,) = pack(features, max_length=512)
    ids = torch.tensor([row.input_ids])
    with torch.no_grad():
        causal = model(input_ids=ids).logits[0]
    first = len(features[0]["input_ids"])
    second = len(features[1]["input_ids"])
    with torch.no_grad():
        alone = model(input_ids=torch.tensor([features[1]["input_ids"]])).logits[0]
    assert not torch.allclose(causal[first : first + second], alone, atol=1e-4)


def test_with_the_kv_cache_on_transformers_ignores_the_restarts_which_is_why_training_turns_it_off(
    model_and_features,
):
    model, tokenizer, features = model_and_features
    (row,) = pack(features, max_length=512)
    batch = PackedCollator(tokenizer.pad_token_id)([row.__dict__])
    first, second = (len(f["input_ids"]) for f in features[:2])
    with torch.no_grad():
        cached = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=True).logits[0]
        alone = model(input_ids=torch.tensor([features[1]["input_ids"]])).logits[0]
    assert not torch.allclose(cached[first : first + second], alone, atol=1e-4)


def test_the_loss_of_a_packed_row_is_the_loss_of_the_answers_only(model_and_features):
    model, tokenizer, features = model_and_features
    (row,) = pack(features, max_length=512)
    assert all(row.labels[i] == -100 for i, p in enumerate(row.position_ids) if p == 0)
    batch = PackedCollator(tokenizer.pad_token_id)([row.__dict__])
    with torch.no_grad():
        packed_loss = model(**batch).loss
    # The same loss by hand: every example on its own, answer tokens only.
    total, count = 0.0, 0
    for f in features:
        targets = torch.tensor(f["labels"][1:])
        keep = targets != -100
        assert 0 < int(keep.sum()) < len(targets)  # some answer tokens, and a prompt that is not learnt
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([f["input_ids"]])).logits[0][:-1]
        total += torch.nn.functional.cross_entropy(logits[keep], targets[keep], reduction="sum").item()
        count += int(keep.sum())
    assert packed_loss.item() == pytest.approx(total / count, rel=1e-4)
