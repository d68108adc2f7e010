"""Instruction datasets on disk: one Parquet file per split, loadable with
`datasets.load_dataset("parquet", data_files={"train": ..., "eval": ...})`."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

SPLITS = ("train", "eval")


def write_splits(examples: pd.DataFrame, folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split in SPLITS:
        path = folder / f"{split}.parquet"
        partial = path.with_name(path.name + ".partial")
        examples[examples["split"] == split].reset_index(drop=True).to_parquet(partial, index=False)
        os.replace(partial, path)
        paths[split] = path
    return paths
