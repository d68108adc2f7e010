"""Discover (steps 1-2): each source's files, code units, API endpoints and user stories — one partition per
source, each run incremental on the previous one."""

import json

import dagster as dg
import pandas as pd

from flywheel_pipelines.discover.api_specs import extract_api_endpoints
from flywheel_pipelines.discover.code_units import extract_code_units
from flywheel_pipelines.discover.crawl import crawl
from flywheel_pipelines.discover.quarantine import Quarantined
from flywheel_pipelines.discover.sources import SourceError, checkout, specs_from_settings
from flywheel_pipelines.discover.user_stories import extract_user_stories
from flywheel_pipelines.orchestration.checks import record_check_specs, record_checks
from flywheel_pipelines.orchestration.partitions import sources_partitions
from flywheel_pipelines.orchestration.previews import counts, reasons_preview, table_preview
from flywheel_pipelines.orchestration.resources import AssetFiles, FlywheelSettings, QuarantineResource

GROUP = "discover"
# Free-form JSON (OpenAPI schemas, examples) has no fixed Parquet type: these columns are stored as JSON text.
ENDPOINT_JSON_COLUMNS = ("parameters", "request_body", "responses")


def _quarantine(context: dg.AssetExecutionContext, quarantine: QuarantineResource, stage: str, rows: list) -> None:
    store = quarantine.store()
    try:
        store.replace(context.partition_key, stage, rows, context.run.run_id)
    finally:
        store.dispose()


def _column_counts(df: pd.DataFrame, column: str) -> dg.MetadataValue:
    return counts(df[column]) if column in df else counts([])


def _table(df: pd.DataFrame, columns: list[str]) -> dg.MetadataValue:
    return table_preview(df, columns) if set(columns) <= set(df.columns) else dg.MetadataValue.md("_empty_")


def _quarantine_metadata(rows: list[Quarantined]) -> dict:
    return {"quarantined": len(rows), "quarantine_reasons": reasons_preview(rows)}


@dg.asset(
    group_name=GROUP,
    kinds={"git", "parquet"},
    partitions_def=sources_partitions,
    check_specs=record_check_specs("crawled_code", "crawled_file"),
)
def crawled_code(
    context: dg.AssetExecutionContext,
    flywheel: FlywheelSettings,
    quarantine: QuarantineResource,
):
    """The source's text files with language, size, content hash and, for git, blob and commit; files unchanged
    since the last run keep their record without being read."""
    settings = flywheel.settings
    spec = specs_from_settings(settings).get(context.partition_key)
    if spec is None:
        raise dg.Failure(
            f"source {context.partition_key!r} is no longer in flywheel.yaml; the sources sensor "
            "or `flywheel turn` removes its partition"
        )
    try:
        snapshot = checkout(spec, settings.data_path / "sources", settings.discover.git_timeout_s)
    except SourceError as err:
        raise dg.Failure(str(err)) from None
    previous = AssetFiles(settings.assets_path).records("crawled_code", context.partition_key)
    result = crawl(snapshot, spec, previous, settings.discover.max_file_bytes)
    _quarantine(context, quarantine, "crawl", result.quarantined)
    df = pd.DataFrame(result.files)
    yield dg.Output(
        df,
        metadata={
            "commit": snapshot.commit or "(local folder)",
            "files": len(df),
            "read": result.read,
            "reused_unchanged": result.reused,
            "removed_since_last_run": result.removed,
            "by_language": _column_counts(df, "language"),
            "skipped_by_policy": dg.MetadataValue.json(dict(result.skipped)),
            **_quarantine_metadata(result.quarantined),
            "preview": _table(df, ["path", "language", "size_bytes"]),
        },
    )
    yield from record_checks(
        "crawled_code", "crawled_file", result.files, len(result.quarantined), settings.discover.max_quarantine_rate
    )


@dg.asset(
    group_name=GROUP,
    kinds={"python", "java", "parquet"},
    partitions_def=sources_partitions,
    check_specs=record_check_specs("code_units", "code_unit"),
)
def code_units(
    context: dg.AssetExecutionContext,
    flywheel: FlywheelSettings,
    quarantine: QuarantineResource,
    crawled_code: pd.DataFrame,
):
    """Functions, methods and classes (Python via ast; Java, Kotlin, TypeScript, JavaScript, Go via tree-sitter)
    with signature, decorators/annotations, docstring, body, class summary, imports used, and tests paired with
    the units they exercise."""
    settings = flywheel.settings
    previous = AssetFiles(settings.assets_path).records("code_units", context.partition_key)
    result = extract_code_units(crawled_code.to_dict("records"), previous, settings.discover.workers)
    _quarantine(context, quarantine, "code_units", result.quarantined)
    df = pd.DataFrame(result.units)
    yield dg.Output(
        df,
        metadata={
            "units": len(df),
            "parsed_files": result.parsed_files,
            "reused_files": result.reused_files,
            "by_language": _column_counts(df, "language"),
            "by_kind": _column_counts(df, "kind"),
            "tests_paired": int(df["tested_units"].map(len).gt(0).sum()) if "tested_units" in df else 0,
            **_quarantine_metadata(result.quarantined),
            "preview": _table(df, ["path", "qualified_name", "signature"]),
        },
    )
    yield from record_checks(
        "code_units", "code_unit", result.units, len(result.quarantined), settings.discover.max_quarantine_rate
    )


@dg.asset(
    group_name=GROUP,
    kinds={"openapi", "parquet"},
    partitions_def=sources_partitions,
    check_specs=record_check_specs("api_endpoints", "api_endpoint"),
)
def api_endpoints(
    context: dg.AssetExecutionContext,
    flywheel: FlywheelSettings,
    quarantine: QuarantineResource,
    crawled_code: pd.DataFrame,
):
    """One record per operation of every OpenAPI 2.0/3.0/3.1 document and Postman v2.1 collection, with `$ref`s
    resolved; `parameters`, `request_body` and `responses` are stored as JSON text."""
    files = crawled_code[crawled_code["language"].isin(["yaml", "json"])] if len(crawled_code) else crawled_code
    records, rejected = extract_api_endpoints(files.to_dict("records"))
    _quarantine(context, quarantine, "api_endpoints", rejected)
    df = pd.DataFrame(
        [{**r, **{c: json.dumps(r[c], ensure_ascii=False) for c in ENDPOINT_JSON_COLUMNS}} for r in records]
    )
    yield dg.Output(
        df,
        metadata={
            "endpoints": len(df),
            "by_format": _column_counts(df, "spec_format"),
            "by_method": _column_counts(df, "method"),
            **_quarantine_metadata(rejected),
            "preview": _table(df, ["method", "url_path", "summary"]),
        },
    )
    yield from record_checks(
        "api_endpoints", "api_endpoint", records, len(rejected), flywheel.settings.discover.max_quarantine_rate
    )


@dg.asset(
    group_name=GROUP,
    kinds={"markdown", "parquet"},
    partitions_def=sources_partitions,
    check_specs=record_check_specs("user_stories", "user_story"),
)
def user_stories(
    context: dg.AssetExecutionContext,
    flywheel: FlywheelSettings,
    quarantine: QuarantineResource,
    crawled_code: pd.DataFrame,
):
    """User stories ("As a … I want … so that …", 作为…我想…以便于…) with Given/When/Then acceptance criteria,
    from Markdown documents."""
    records: list[dict] = []
    rejected: list[Quarantined] = []
    docs = crawled_code[crawled_code["language"] == "markdown"] if len(crawled_code) else crawled_code
    for doc in docs.to_dict("records"):
        got, bad = extract_user_stories(doc["text"], doc["source"], doc["path"])
        records.extend(got)
        rejected.extend(bad)
    _quarantine(context, quarantine, "user_stories", rejected)
    df = pd.DataFrame(records)
    yield dg.Output(
        df,
        metadata={
            "stories": len(df),
            "by_language": _column_counts(df, "language"),
            **_quarantine_metadata(rejected),
            "preview": _table(df, ["path", "title", "want"]),
        },
    )
    yield from record_checks(
        "user_stories", "user_story", records, len(rejected), flywheel.settings.discover.max_quarantine_rate
    )
