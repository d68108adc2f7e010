"""Discover (steps 1-2): the organisation's code, crawled and cut into code units."""

import dagster as dg
import pandas as pd

from flywheel_pipelines.discover.crawl import Source, crawl_sources
from flywheel_pipelines.discover.python_units import extract_code_units
from flywheel_pipelines.orchestration.previews import counts, reasons_preview, table_preview
from flywheel_pipelines.orchestration.resources import FlywheelSettings

GROUP = "discover"


@dg.asset(group_name=GROUP, kinds={"python", "parquet"})
def crawled_code(flywheel: FlywheelSettings) -> dg.Output[pd.DataFrame]:
    """Every readable text file of the configured sources, with its language, size and content hash."""
    settings = flywheel.settings
    sources = [Source(s.name, settings.resolve(s.path), tuple(s.include), tuple(s.exclude)) for s in settings.sources]
    result = crawl_sources(sources)
    df = pd.DataFrame(result.files, columns=["source", "path", "language", "size_bytes", "sha256", "text"])
    return dg.Output(
        df,
        metadata={
            "files": len(df),
            "bytes": int(df["size_bytes"].sum()) if len(df) else 0,
            "by_language": counts(df["language"]),
            "skipped": len(result.skipped),
            "skipped_reasons": reasons_preview(f"{s.source}/{s.path}: {s.reason}" for s in result.skipped),
            "preview": table_preview(df, ["source", "path", "language", "size_bytes"]),
        },
    )


@dg.asset(group_name=GROUP, kinds={"python", "parquet"})
def code_units(crawled_code: pd.DataFrame) -> dg.Output[pd.DataFrame]:
    """Python functions and methods with signature, docstring, body and enclosing class summary,
    each validated against schemas/code_unit.schema.json."""
    units, rejected = extract_code_units(crawled_code.to_dict("records"))
    df = pd.DataFrame(units)
    return dg.Output(
        df,
        metadata={
            "units": len(df),
            "by_kind": counts(df["kind"]) if len(df) else counts([]),
            "rejected": len(rejected),
            "rejected_reasons": reasons_preview(f"{r.path}::{r.name}: {r.reason}" for r in rejected),
            "preview": table_preview(df, ["path", "qualified_name", "signature"]) if len(df) else "",
        },
    )
