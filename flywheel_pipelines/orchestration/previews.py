"""Small helpers that turn core results into Dagster metadata a data engineer can read in the UI."""

from collections import Counter
from collections.abc import Iterable

import dagster as dg
import pandas as pd


def table_preview(df: pd.DataFrame, columns: list[str], rows: int = 10, width: int = 80) -> dg.MetadataValue:
    if df.empty:
        return dg.MetadataValue.md("_empty_")
    shown = df[columns].head(rows).map(lambda v: str(v).replace("\n", " ")[:width].replace("|", "\\|"))
    return dg.MetadataValue.md(shown.to_markdown(index=False))


def counts(values: Iterable[str]) -> dg.MetadataValue:
    return dg.MetadataValue.json(dict(Counter(values).most_common()))


def reasons_preview(items: Iterable[object], rows: int = 20) -> dg.MetadataValue:
    lines = [f"- {item}" for item in list(items)[:rows]]
    return dg.MetadataValue.md("\n".join(lines) or "_none_")
