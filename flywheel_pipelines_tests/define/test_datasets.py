"""Step 3 (data): the instruction dataset is a product: stable splits, no train example that leaks eval or benchmark
text, a content digest as its version, and files that `datasets`, trl, axolotl and LLaMA-Factory load as they are."""

import re

import pyarrow.parquet as pq
import pytest
from datasets import load_dataset

from flywheel_pipelines.define.datasets import (
    COLUMNS,
    SPLITS,
    Contamination,
    assign_splits,
    benchmark_texts,
    dataset_digest,
    decontaminate,
    split_for,
    write_dataset,
)
from flywheel_pipelines.define.tasks import example_id

EVAL_ANSWER = (
    "totals = {}\nfor order in orders:\n    key = (order.customer_id, order.created_at.date())\n"
    "    totals[key] = totals.get(key, 0) + order.amount * (1 - order.discount)\nreturn sorted(totals.items())"
)


REMOVED = [
    Contamination("00112233aabbccdd", "code_generation", "curated_asset:x", "shares a 20-token window with HumanEval/3")
]


def example(group: str, output: str = "return 1", split: str = "train", **fields: object) -> dict:
    e = {
        "task": "code_generation",
        "template_version": 1,
        "instruction": f"Implement `{group}`.",
        "input": f"def {group}():",
        "output": output,
        "origin": f"curated_asset:{group}",
        "source": "shop",
        "generation": "reverse",
        "group": group,
        "split": split,
        "meta": "{}",
        **fields,
    }
    return {"example_id": example_id(e["task"], e["instruction"], e["input"]), **e}


def tokens(text: str) -> list[str]:
    return re.findall(r"\w+", text)  # words, as decontamination counts them


def splits_by_group(examples: list[dict]) -> dict[str, str]:
    return {e["group"]: e["split"] for e in examples}


# Splits


def test_a_groups_split_never_changes_when_the_dataset_is_rebuilt_or_grows():
    first = assign_splits([example(f"g{i}") for i in range(1000)], eval_fraction=0.2)
    grown = [example(f"g{i}") for i in range(1000, 2000)] + [example(f"g{i}", output="pass") for i in range(0, 1000, 7)]
    again = assign_splits(list(reversed(first)) + grown, eval_fraction=0.2)
    before, after = splits_by_group(first), splits_by_group(again)
    assert {g: after[g] for g in before} == before
    assert set(before.values()) == set(SPLITS)


def test_about_the_eval_fraction_of_2000_groups_go_to_eval():
    examples = assign_splits([example(f"unit-{i}") for i in range(2000)], eval_fraction=0.2)
    share = sum(e["split"] == "eval" for e in examples) / len(examples)
    assert 0.17 < share < 0.23


def test_every_example_of_a_group_lands_in_the_groups_split():
    tasks = ["code_generation", "test_generation", "docstring_generation"]
    examples = assign_splits([example(f"g{i}", task=t) for i in range(200) for t in tasks], eval_fraction=0.3)
    for i in range(200):
        assert {e["split"] for e in examples if e["group"] == f"g{i}"} == {split_for(f"g{i}", 0.3)}
    assert {e["split"] for e in examples} == set(SPLITS)


def test_a_users_correction_always_trains_and_takes_its_group_with_it():
    eval_group = next(f"g{i}" for i in range(100) if split_for(f"g{i}", 0.5) == "eval")
    original = example(eval_group)
    correction = dict(original, output="return 2", generation="feedback", origin="feedback:e1", source="feedback")
    alone = example("its-own-group", generation="feedback")
    examples = assign_splits([original, correction, alone], eval_fraction=1.0)
    assert [e["split"] for e in examples] == ["train", "train", "train"]


# Decontamination


def test_a_train_example_copying_20_tokens_of_an_eval_answer_is_removed_naming_that_eval_example():
    eval_example = example("report", EVAL_ANSWER, split="eval")
    copy = example("copy", "# from elsewhere\n" + " ".join(tokens(EVAL_ANSWER)[5:25]) + "\nreturn totals")
    near = example("near", "x = 0\n" + " ".join(tokens(EVAL_ANSWER)[5:24]) + "\nreturn x")  # a token short
    kept, removed = decontaminate([copy, eval_example, near], benchmarks={})
    assert kept == [eval_example, near]
    assert removed == [
        Contamination(
            copy["example_id"],
            "code_generation",
            "curated_asset:copy",
            f"shares a 20-token window with eval example {eval_example['example_id']}",
        )
    ]


def test_a_train_example_that_embeds_a_humaneval_prompt_is_removed_naming_the_task():
    benchmarks = benchmark_texts()
    assert len(benchmarks) == 164
    leaked = example("leak", "return x", input=benchmarks["HumanEval/12"].split("    for s in")[0])
    clean = example("clean", EVAL_ANSWER)
    kept, removed = decontaminate([leaked, clean], benchmarks)
    assert kept == [clean]
    assert [(c.example_id, c.reason) for c in removed] == [
        (leaked["example_id"], "shares a 20-token window with HumanEval/12")
    ]


def test_eval_examples_are_never_removed_even_when_they_overlap():
    benchmarks = benchmark_texts(limit=1)
    first = example("a", EVAL_ANSWER, split="eval")
    twin = example("b", EVAL_ANSWER, split="eval")
    humaneval = example("c", benchmarks["HumanEval/0"], split="eval")
    kept, removed = decontaminate([first, twin, humaneval], benchmarks)
    assert (kept, removed) == ([first, twin, humaneval], [])


def test_examples_that_share_only_their_tasks_long_instruction_wording_are_kept():
    wording = "Write the body only: the statements that follow the signature and docstring, not indented, no prose."
    wording += " No fences, no explanations, nothing else at all."
    examples = [example(f"g{i}", f"return {i} * value", split=s) for i, s in enumerate(["eval", "train", "train"])]
    examples = [dict(e, instruction=f"Implement `{e['group']}`. {wording}") for e in examples]
    assert len(tokens(wording)) > 20
    kept, removed = decontaminate(examples, benchmarks={})
    assert (kept, removed) == (examples, [])


# Version


def test_the_dataset_digest_ignores_order_and_follows_every_output():
    examples = assign_splits([example(f"g{i}", f"return {i}") for i in range(50)], eval_fraction=0.2)
    assert dataset_digest(examples) == dataset_digest(reversed(examples))
    changed = [dict(e, output="return -1") if e["group"] == "g7" else e for e in examples]
    assert dataset_digest(changed) != dataset_digest(examples)


# Files


@pytest.fixture
def written(tmp_path):
    examples = assign_splits(
        [example(f"g{i}", f"return {i}") for i in range(30)]
        + [example(f"s{i}", f"As a user I want {i}", task="user_story", generation="teacher") for i in range(10)],
        eval_fraction=0.3,
    )
    files = write_dataset(
        examples,
        tmp_path / "instruction_dataset",
        name="shop_instructions",
        count_tokens=lambda text: len(text.split()),
        templates={"code_generation": 3, "user_story": 2},
        sources=["shop (code/)"],
        contamination=REMOVED,
        extra={"teacher tokens": 1234},
    )
    return examples, files, tmp_path / "hf-cache"


def test_both_parquet_splits_load_with_datasets_directly_and_through_the_card(written):
    examples, files, cache = written
    counts = {s: sum(e["split"] == s for e in examples) for s in SPLITS}
    data_files = {s: str(p) for s, p in files.parquet.items()}
    for loaded in (
        load_dataset("parquet", data_files=data_files, cache_dir=str(cache)),
        load_dataset(str(files.folder), cache_dir=str(cache)),
    ):
        assert {s: loaded[s].num_rows for s in SPLITS} == counts
        assert loaded["train"].column_names == list(COLUMNS)


def test_a_rewritten_dataset_folder_loads_its_new_rows_not_the_cached_ones(tmp_path):
    folder, cache = tmp_path / "instruction_dataset", str(tmp_path / "cache")
    examples = assign_splits([example(f"g{i}", f"return {i}") for i in range(40)], eval_fraction=0.2)
    write_dataset(examples, folder, name="d", count_tokens=len, templates={"code_generation": 1})
    before = load_dataset(str(folder), cache_dir=cache)["train"].num_rows
    write_dataset(examples[:10], folder, name="d", count_tokens=len, templates={"code_generation": 1})
    after = load_dataset(str(folder), cache_dir=cache)["train"].num_rows
    assert after == sum(e["split"] == "train" for e in examples[:10]) and after < before


def test_the_alpaca_chat_and_sharegpt_exports_load_as_trainers_expect(written):
    examples, files, cache = written
    train = sorted((e for e in examples if e["split"] == "train"), key=lambda e: e["example_id"])

    alpaca = load_dataset("json", data_files={s: str(p) for s, p in files.alpaca.items()}, cache_dir=str(cache))
    assert alpaca["train"].column_names == ["instruction", "input", "output"]
    assert alpaca["train"][0] == {k: train[0][k] for k in ("instruction", "input", "output")}

    chat = load_dataset("json", data_files={s: str(p) for s, p in files.chat.items()}, cache_dir=str(cache))
    assert chat["eval"].column_names == ["messages"]
    assert chat["train"][0]["messages"] == [
        {"role": "user", "content": f"{train[0]['instruction']}\n\n{train[0]['input']}"},
        {"role": "assistant", "content": train[0]["output"]},
    ]

    sharegpt = load_dataset("json", data_files={s: str(p) for s, p in files.sharegpt.items()}, cache_dir=str(cache))
    assert [t["from"] for t in sharegpt["train"][0]["conversations"]] == ["human", "gpt"]
    assert sharegpt["train"].num_rows == len(train)

    info = files.dataset_info.read_text()
    assert '"shop_instructions_alpaca"' in info and '"file_name": "chat/eval.jsonl"' in info


def test_the_card_names_the_version_tasks_counts_templates_and_removed_examples(written):
    examples, files, _ = written
    card = files.card.read_text()
    assert files.digest == dataset_digest(examples) and files.digest in card
    for task in ("code_generation", "user_story"):
        train = sum(e["split"] == "train" and e["task"] == task for e in examples)
        evals = sum(e["split"] == "eval" and e["task"] == task for e in examples)
        assert f"| {task} | {train} | {evals} | {train + evals} |" in card
    assert "| code_generation | 3 |" in card and "| user_story | 2 |" in card
    assert "Train examples removed: 1" in card and "| HumanEval | 1 |" in card
    assert "**teacher tokens**: 1234" in card and "shop (code/)" in card


def test_an_unchanged_dataset_rewrites_byte_identical_files(written):
    examples, files, _ = written
    before = {p: p.read_bytes() for p in files.folder.rglob("*") if p.is_file()}
    again = write_dataset(
        list(reversed(examples)),
        files.folder,
        name="shop_instructions",
        count_tokens=lambda text: len(text.split()),
        templates={"user_story": 2, "code_generation": 3},
        sources=["shop (code/)"],
        contamination=REMOVED,
        extra={"teacher tokens": 1234},
    )
    assert again.digest == files.digest
    assert {p: p.read_bytes() for p in files.folder.rglob("*") if p.is_file()} == before


def test_an_empty_split_still_gets_its_files_with_every_column(tmp_path):
    only_train = [example("g", "return 1")]
    files = write_dataset(only_train, tmp_path, name="tiny", count_tokens=len, templates={"code_generation": 1})
    table = pq.read_table(files.parquet["eval"])
    assert (table.num_rows, table.column_names) == (0, list(COLUMNS))
    assert files.chat["eval"].read_text() == "" and files.alpaca["eval"].exists()
