"""The instruction dataset as a reproducible product: stable splits, decontamination against the eval split and
public benchmarks, a content digest as its version, and files that `datasets`, trl, axolotl and LLaMA-Factory read."""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from string import Template

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from flywheel_pipelines.define.chat import user_message
from flywheel_pipelines.define.tasks import EXAMPLE_FIELDS, words

SPLITS = ("train", "eval")
COLUMNS = EXAMPLE_FIELDS  # schema order (schemas/instruction.schema.json), also the Parquet column order
SCHEMA = pa.schema([(c, pa.int64() if c == "template_version" else pa.string()) for c in COLUMNS])
TOKEN_BUCKETS = (64, 128, 256, 512, 1024)


def split_for(group: str, eval_fraction: float) -> str:
    """'eval' for a stable `eval_fraction` share of groups: a group's split depends on its name only."""
    bucket = int(hashlib.sha256(group.encode()).hexdigest()[:16], 16) / 16**16
    return "eval" if bucket < eval_fraction else "train"


def assign_splits(examples: Iterable[dict], eval_fraction: float) -> list[dict]:
    """Copies with "split" set from their group. Human corrections are always learnt from, so feedback trains;
    the rest of a corrected example's group trains with it, or eval would ask the very question a correction answers."""
    examples = list(examples)
    corrected = {e["group"] for e in examples if e["generation"] == "feedback"}

    def split(e: dict) -> str:
        return "train" if e["group"] in corrected else split_for(e["group"], eval_fraction)

    return [dict(e, split=split(e)) for e in examples]


@dataclass(frozen=True)
class Contamination:
    example_id: str
    task: str
    origin: str
    reason: str  # "shares a 20-token window with eval example 0a1b..." or "... with HumanEval/12"


def _windows(text: str, ngram: int) -> Iterator[int]:
    # Python's hash is salted per process, which is fine: windows are only compared within one call.
    # Words only: punctuation and layout are ignored (as in GPT-3's n-gram decontamination), so reformatting cannot
    # hide a copy and a DSL's fixed punctuation (a table's `| --- |` rows) is not shared content; each Chinese
    # character is a word, so a window of Chinese text is as long as one of English.
    tokens = words(text)
    for i in range(len(tokens) - ngram + 1):
        yield hash(tuple(tokens[i : i + ngram]))


def _example_windows(example: dict, ngram: int) -> Iterator[int]:
    # Field by field: a window across the instruction/input seam would join template wording to shared framing.
    for field in ("instruction", "input", "output"):
        yield from _windows(example[field], ngram)


def _template_windows(examples: Sequence[dict], ngram: int) -> set[int]:
    """Windows found in the instructions of two or more groups: a task template's wording, not leaked content."""
    first_group: dict[int, str] = {}
    shared: set[int] = set()
    for example in examples:
        for window in _windows(example["instruction"], ngram):
            if first_group.setdefault(window, example["group"]) != example["group"]:
                shared.add(window)
    return shared


def decontaminate(
    examples: Sequence[dict], benchmarks: Mapping[str, str], ngram: int = 20
) -> tuple[list[dict], list[Contamination]]:
    """Drop every train example that shares `ngram` consecutive tokens with an eval example or a benchmark text.

    Linear in the tokens: eval and benchmark windows go into a hash table, then each train example looks its windows
    up. A task template's wording (see `_template_windows`) is shared by design and does not count. Eval examples are
    never removed. Returns (kept examples in input order, removed ones with the reason).
    """
    template = _template_windows(examples, ngram)
    seen: dict[int, str] = {}  # window -> what it was first seen in
    for example in examples:
        if example["split"] == "eval":
            for window in _example_windows(example, ngram):
                if window not in template:
                    seen.setdefault(window, f"eval example {example['example_id']}")
    for name, text in benchmarks.items():
        for window in _windows(text, ngram):
            seen.setdefault(window, name)
    kept, removed = [], []
    for example in examples:
        hit = None
        if example["split"] == "train":
            hit = next((seen[w] for w in _example_windows(example, ngram) if w in seen), None)
        if hit is None:
            kept.append(example)
        else:
            reason = f"shares a {ngram}-token window with {hit}"
            removed.append(Contamination(example["example_id"], example["task"], example["origin"], reason))
    return kept, removed


def benchmark_texts(limit: int | None = None) -> dict[str, str]:
    """HumanEval prompt + canonical solution by task id (all 164 unless `limit`), from the offline package."""
    from flywheel_pipelines.define.evaluate.humaneval import humaneval_problems

    problems = humaneval_problems(sys.maxsize if limit is None else limit)
    return {p["task_id"]: p["prompt"] + p["canonical_solution"] for p in problems}


def _canonical(value: object) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _in_order(examples: Iterable[dict]) -> list[dict]:
    # The canonical JSON breaks ties, so even duplicate ids have one order whatever the input order.
    return sorted(examples, key=lambda e: (e["split"], e["example_id"], _canonical(e)))


def dataset_digest(examples: Iterable[dict]) -> str:
    """The dataset version: sha256 of its canonical JSON, equal for equal content whatever the input order."""
    return hashlib.sha256(_canonical(_in_order(examples)).encode()).hexdigest()


@dataclass(frozen=True)
class DatasetFiles:
    folder: Path
    digest: str
    parquet: dict[str, Path]  # split -> <folder>/<split>.parquet
    alpaca: dict[str, Path]  # split -> <folder>/alpaca/<split>.json
    chat: dict[str, Path]  # split -> <folder>/chat/<split>.jsonl
    sharegpt: dict[str, Path]  # split -> <folder>/sharegpt/<split>.jsonl
    dataset_info: Path  # <folder>/dataset_info.json, LLaMA-Factory's dataset registry
    card: Path  # <folder>/README.md, a Hugging Face dataset card


def _replace(path: Path, write: Callable[[Path], object]) -> Path:
    """Write through a temporary name, so a crash never leaves half a file where a reader looks."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    write(partial)
    os.replace(partial, path)
    return path


def _write_text(path: Path, text: str) -> Path:
    return _replace(path, lambda p: p.write_text(text, encoding="utf-8", newline="\n"))


def _jsonl(records: Iterable[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def _alpaca(e: dict) -> dict:
    return {"instruction": e["instruction"], "input": e["input"], "output": e["output"]}


def _chat(e: dict) -> dict:
    user = user_message(e["instruction"], e["input"])
    return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": e["output"]}]}


def _sharegpt(e: dict) -> dict:
    user = user_message(e["instruction"], e["input"])
    return {"conversations": [{"from": "human", "value": user}, {"from": "gpt", "value": e["output"]}]}


# LLaMA-Factory's registry entry for each export: its layout and how its columns and turns are named.
_LLAMA_FACTORY = {
    "alpaca": {"formatting": "alpaca", "columns": {"prompt": "instruction", "query": "input", "response": "output"}},
    "chat": {
        "formatting": "sharegpt",
        "columns": {"messages": "messages"},
        "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"},
    },
    "sharegpt": {
        "formatting": "sharegpt",
        "columns": {"messages": "conversations"},
        "tags": {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt"},
    },
}


def _dataset_info(name: str, files: DatasetFiles) -> dict:
    """`<name>_<export>` (train) and `<name>_<export>_eval`, with paths relative to the folder: LLaMA-Factory's
    `dataset_dir`."""
    exports = {"alpaca": files.alpaca, "chat": files.chat, "sharegpt": files.sharegpt}
    return {
        f"{name}_{export}" + ("" if split == "train" else f"_{split}"): {
            "file_name": path.relative_to(files.folder).as_posix(),
            **entry,
        }
        for export, entry in _LLAMA_FACTORY.items()
        for split, path in exports[export].items()
    }


def write_dataset(
    examples: Sequence[dict],
    folder: Path,
    *,
    name: str,
    count_tokens: Callable[[str], int],
    templates: Mapping[str, int],
    sources: Sequence[str] = (),
    contamination: Sequence[Contamination] = (),
    extra: Mapping[str, object] | None = None,
) -> DatasetFiles:
    """Every split in every format, plus LLaMA-Factory's registry and a dataset card. Rows are written in digest
    order, so equal content rewrites byte-identical files."""
    rows = _in_order({c: e[c] for c in COLUMNS} for e in examples)
    by_split = {s: [r for r in rows if r["split"] == s] for s in SPLITS}
    digest = dataset_digest(rows)
    files = DatasetFiles(
        folder=folder,
        digest=digest,
        parquet={s: folder / f"{s}.parquet" for s in SPLITS},
        alpaca={s: folder / "alpaca" / f"{s}.json" for s in SPLITS},
        chat={s: folder / "chat" / f"{s}.jsonl" for s in SPLITS},
        sharegpt={s: folder / "sharegpt" / f"{s}.jsonl" for s in SPLITS},
        dataset_info=folder / "dataset_info.json",
        card=folder / "README.md",
    )
    for split, split_rows in by_split.items():
        table = pa.Table.from_pylist(split_rows, schema=SCHEMA)  # the schema keeps an empty split's columns
        _replace(files.parquet[split], lambda p, t=table: pq.write_table(t, p))
        alpaca = ",\n".join(json.dumps(_alpaca(r), ensure_ascii=False) for r in split_rows)
        _write_text(files.alpaca[split], f"[\n{alpaca}\n]\n")  # a JSON array, a record a line
        _write_text(files.chat[split], _jsonl(_chat(r) for r in split_rows))
        _write_text(files.sharegpt[split], _jsonl(_sharegpt(r) for r in split_rows))
    _write_text(files.dataset_info, json.dumps(_dataset_info(name, files), indent=2) + "\n")
    card = _card(rows, name, digest, folder.name, count_tokens, templates, sources, contamination, extra or {})
    _write_text(files.card, card)
    return files


def _table(header: Sequence[str], body: Iterable[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(v).replace("|", "\\|") for v in row) + " |" for row in body]
    return "\n".join(lines)


def _counts_table(rows: Sequence[dict], by: str) -> str:
    counts = Counter((r[by], r["split"]) for r in rows)
    keys = sorted({r[by] for r in rows})
    body = [[k, *(counts[k, s] for s in SPLITS), sum(counts[k, s] for s in SPLITS)] for k in keys]
    body.append(["**all**", *(sum(counts[k, s] for k in keys) for s in SPLITS), len(rows)])
    return _table([by, *SPLITS, "total"], body)


def _bucket(tokens: int) -> str:
    lower = 0
    for upper in TOKEN_BUCKETS:
        if tokens < upper:
            return f"{lower}-{upper}"
        lower = upper
    return f"{lower}+"


def _length_table(rows: Sequence[dict], count_tokens: Callable[[str], int]) -> str:
    labels = [_bucket(lower) for lower in (0, *TOKEN_BUCKETS)]
    lengths: dict[str, list[int]] = {}
    for r in rows:
        n = count_tokens(user_message(r["instruction"], r["input"])) + count_tokens(r["output"])
        lengths.setdefault(r["task"], []).append(n)
    body = []
    for task, ns in sorted(lengths.items()):
        buckets = Counter(_bucket(n) for n in ns)
        body.append([task, *(buckets[b] for b in labels), min(ns), f"{statistics.median(ns):g}", max(ns)])
    return _table(["task", *labels, "min", "median", "max"], body)


def _against(c: Contamination) -> str:
    """What a removed example overlapped: "eval example" or a benchmark's family ("HumanEval")."""
    hit = c.reason.rsplit(" with ", 1)[-1]
    return "eval example" if hit.startswith("eval example") else hit.split("/")[0]


def _size_category(n: int) -> str:
    if n < 1000:
        return "n<1K"
    bounds = [(10**4, "1K<n<10K"), (10**5, "10K<n<100K"), (10**6, "100K<n<1M"), (10**7, "1M<n<10M")]
    return next((label for bound, label in bounds if n < bound), "n>10M")


def _card(
    rows: Sequence[dict],
    name: str,
    digest: str,
    folder_name: str,
    count_tokens: Callable[[str], int],
    templates: Mapping[str, int],
    sources: Sequence[str],
    contamination: Sequence[Contamination],
    extra: Mapping[str, object],
) -> str:
    tasks = sorted({r["task"] for r in rows})
    front = {
        "pretty_name": name,
        "configs": [
            {
                "config_name": "default",
                "data_files": [{"split": s, "path": f"{s}.parquet"} for s in SPLITS],
                # `datasets` caches a local folder by its card's configs, not by its files: naming the version here
                # makes `load_dataset(folder)` read a rewritten dataset instead of the cached one.
                "description": f"{name} version {digest}",
            }
        ],
        "task_categories": ["text-generation"],
        "tags": ["code", "instruction-tuning", *tasks],
        "size_categories": [_size_category(len(rows))],
    }
    kinds = Counter(_against(c) for c in contamination)
    parts = [
        f"---\n{yaml.safe_dump(front, sort_keys=False, allow_unicode=True)}---",
        f"# {name}",
        f"Dataset version (content digest): `{digest}`. {len(rows)} examples.",
        "## Examples by task\n\n" + _counts_table(rows, "task"),
        "## Examples by generation mode\n\n" + _counts_table(rows, "generation"),
        "## Token lengths (prompt + output)\n\n" + _length_table(rows, count_tokens),
        "## Sources\n\n" + "\n".join(f"- {s}" for s in sources or ["(none named)"]),
        "## Template versions\n\n" + _table(["task", "version"], sorted(templates.items())),
        f"## Decontamination\n\nTrain examples removed: {len(contamination)} (overlap with eval or benchmarks).",
    ]
    if contamination:
        parts.append(_table(["against", "removed"], sorted(kinds.items())))
        first = [(c.example_id, c.task, c.origin, c.reason) for c in contamination[:10]]
        parts.append(_table(["example", "task", "origin", "reason"], first))
    if extra:
        parts.append("## Notes\n\n" + "\n".join(f"- **{k}**: {v}" for k, v in extra.items()))
    parts.append(HOW_TO_LOAD.substitute(name=name, folder=folder_name))
    return "\n\n".join(parts) + "\n"


HOW_TO_LOAD = Template("""## How to load

With 🤗 `datasets` (`folder` is the path of this folder):

```python
from datasets import load_dataset

folder = "$folder"
ds = load_dataset("parquet", data_files={"train": f"{folder}/train.parquet", "eval": f"{folder}/eval.parquet"})
ds = load_dataset(folder)  # the same splits, through this card's `configs`
alpaca = load_dataset("json", data_files={"train": f"{folder}/alpaca/train.json", "eval": f"{folder}/alpaca/eval.json"})
chat = load_dataset("json", data_files={"train": f"{folder}/chat/train.jsonl", "eval": f"{folder}/chat/eval.jsonl"})
```

With trl, the chat turns as they are:

```python
from trl import SFTConfig, SFTTrainer

trainer = SFTTrainer(model="<base model>", train_dataset=chat["train"], eval_dataset=chat["eval"],
                     args=SFTConfig(output_dir="out"))
```

With LLaMA-Factory, this folder's `dataset_info.json` registers every export:

```yaml
dataset_dir: $folder
dataset: ${name}_alpaca          # or ${name}_chat, ${name}_sharegpt
eval_dataset: ${name}_alpaca_eval
```

With axolotl:

```yaml
datasets:
  - path: $folder/alpaca/train.json
    ds_type: json
    type: alpaca
  # or the chat turns: path: $folder/chat/train.jsonl, ds_type: json, type: chat_template, field_messages: messages
```""")


def mix_tasks(train: pd.DataFrame, weights: Mapping[str, float], seed: int = 0) -> pd.DataFrame:
    """The train split resampled by task weight: a task's examples appear about `weight` times each (whole copies,
    then a seeded sample for the fraction), so weight 1 keeps a task as it is and 0.5 keeps half of it."""
    parts = []
    for task, rows in train.groupby("task", sort=True):
        weight = weights.get(str(task), 1.0)
        copies, fraction = int(weight), weight - int(weight)
        parts += [rows] * copies
        if fraction > 0:
            parts.append(rows.sample(n=max(1, round(len(rows) * fraction)), random_state=seed))
    if not parts:
        return train.iloc[0:0]
    return pd.concat(parts, ignore_index=True)
