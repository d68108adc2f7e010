"""What the flywheel stored, written out for other tools: feedback events as the JSONL `flywheel feedback import`
reads, and the instruction and preference datasets in the formats trainers read (`flywheel feedback export`,
`flywheel dataset export`)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from flywheel_pipelines.define.datasets import SPLITS
from flywheel_pipelines.deliver.feedback_store import EVENT_FIELDS

FEEDBACK_FORMATS = ("jsonl", "parquet")
INSTRUCTION_FORMATS = ("alpaca", "chat", "sharegpt", "parquet")  # the files write_dataset writes for each split
PREFERENCE_FORMATS = ("dpo", "kto")  # preference_data's trl files, one split: train
DATASET_FORMATS = INSTRUCTION_FORMATS + PREFERENCE_FORMATS
EXPORT_SPLITS = (*SPLITS, "all")
# Every field of schemas/feedback_event.schema.json, as Parquet columns (absent: null).
FEEDBACK_SCHEMA = pa.schema([(name, pa.string()) for name in EVENT_FIELDS])


class NothingStored(LookupError):
    """What an export reads was never materialised."""


@dataclass(frozen=True)
class Export:
    """Records and how they are laid out in a file: `jsonl` (one JSON object a line), `json` (one JSON array, a
    record a line: alpaca) or `parquet` (a table with `schema`)."""

    records: list[dict]
    layout: str
    schema: pa.Schema | None = None

    def write(self, out: Path | None) -> None:
        """To the file `out`, or to standard output (text layouts only: Parquet is binary)."""
        if self.layout == "parquet":
            if out is None:
                raise ValueError("parquet is binary: name the file to write with --out")
            out.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(pa.Table.from_pylist(self.records, schema=self.schema), out)
            return
        lines = [json.dumps(r, ensure_ascii=False) for r in self.records]
        # `json`: one array, a record a line, as write_dataset lays out alpaca files
        text = "[\n" + ",\n".join(lines) + "\n]\n" if self.layout == "json" else "".join(f"{x}\n" for x in lines)
        if out is None:
            sys.stdout.write(text)
            sys.stdout.flush()
        else:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(text, encoding="utf-8")


def _iso(value: datetime) -> str:
    # SQLite hands back the UTC time it stored without its zone; PostgreSQL with it.
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()


def feedback_record(event: dict) -> dict:
    """A stored feedback event as `feedback import` reads it (schemas/feedback_event.schema.json): fields the
    store left empty are left out, and what only the store knows (its id, when it was imported, the completion and
    client an API post named) is not part of the schema."""
    record = {name: event[name] for name in EVENT_FIELDS if event.get(name) is not None}
    if isinstance(record.get("created_at"), datetime):
        record["created_at"] = _iso(record["created_at"])
    return record


def feedback_export(events: Iterable[dict], fmt: str = "jsonl") -> Export:
    if fmt not in FEEDBACK_FORMATS:
        raise ValueError(f"feedback export format {fmt!r} is not one of {', '.join(FEEDBACK_FORMATS)}")
    records = [feedback_record(e) for e in events]
    if fmt == "parquet":
        return Export([{name: r.get(name) for name in EVENT_FIELDS} for r in records], "parquet", FEEDBACK_SCHEMA)
    return Export(records, "jsonl")


def _read_jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def dataset_export(data_path: Path, fmt: str, split: str = "train") -> Export:
    """One export of the stored datasets under `data_path/datasets/`: an instruction dataset format (its train or
    eval split, or both: train first), or the preference data trl's DPO and KTO trainers read (train only)."""
    if fmt not in DATASET_FORMATS:
        raise ValueError(f"dataset format {fmt!r} is not one of {', '.join(DATASET_FORMATS)}")
    if split not in EXPORT_SPLITS:
        raise ValueError(f"split {split!r} is not one of {', '.join(EXPORT_SPLITS)}")
    if fmt in PREFERENCE_FORMATS:
        path = data_path / "datasets" / "preference" / fmt / "train.jsonl"
        if split == "eval":
            raise ValueError(f"{fmt} preference data has no eval split: ask for --split train")
        if not path.exists():
            raise NothingStored(
                f"no {fmt} preference data yet ({path}): run `make run` first (preference_data is built from "
                "the feedback events)"
            )
        return Export(_read_jsonl(path), "jsonl")
    folder = data_path / "datasets" / "instruction_dataset"
    splits = SPLITS if split == "all" else (split,)
    files = {
        s: {
            "parquet": folder / f"{s}.parquet",
            "alpaca": folder / "alpaca" / f"{s}.json",
            "chat": folder / "chat" / f"{s}.jsonl",
            "sharegpt": folder / "sharegpt" / f"{s}.jsonl",
        }[fmt]
        for s in splits
    }
    if missing := [p for p in files.values() if not p.exists()]:
        raise NothingStored(f"no instruction dataset yet ({missing[0]} is missing): run `make run` first")
    if fmt == "parquet":
        tables = [pq.read_table(p) for p in files.values()]
        table = pa.concat_tables(tables)
        return Export(table.to_pylist(), "parquet", table.schema)
    if fmt == "alpaca":
        return Export([r for p in files.values() for r in json.loads(p.read_text(encoding="utf-8"))], "json")
    return Export([r for p in files.values() for r in _read_jsonl(p)], "jsonl")
