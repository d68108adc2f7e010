"""Discover (step 2): every source's discoveries language-modelled into `curated_assets`, across sources."""

import json

import dagster as dg
import pandas as pd

from flywheel_pipelines.discover.curate import CurationPolicy, curate
from flywheel_pipelines.discover.quality import QualityPolicy
from flywheel_pipelines.discover.redact import RedactionPolicy
from flywheel_pipelines.orchestration.assets_discover import ENDPOINT_JSON_COLUMNS
from flywheel_pipelines.orchestration.checks import record_check_specs, record_checks
from flywheel_pipelines.orchestration.previews import counts, reasons_preview, table_preview
from flywheel_pipelines.orchestration.resources import FlywheelSettings, QuarantineResource, table_records
from flywheel_pipelines.settings import Settings


def curation_policy(settings: Settings) -> CurationPolicy:
    c = settings.curate
    return CurationPolicy(
        quality=QualityPolicy(c.min_tokens, c.max_tokens, c.min_body_lines, c.max_complexity, c.drop_trivial),
        redaction=RedactionPolicy(
            internal_host_suffixes=tuple(c.internal_host_suffixes), person_names=tuple(c.person_names)
        ),
        dedup_threshold=c.dedup_threshold,
        drop_rest_errors=c.drop_rest_errors,
    )


def _records(df: pd.DataFrame, json_columns: tuple[str, ...] = ()) -> list[dict]:
    rows = table_records(df)
    for row in rows:
        for column in json_columns:
            row[column] = json.loads(row[column])
    return rows


@dg.asset(
    group_name="discover",
    kinds={"parquet"},
    check_specs=record_check_specs("curated_assets", "curated_asset"),
)
def curated_assets(
    context: dg.AssetExecutionContext,
    flywheel: FlywheelSettings,
    quarantine: QuarantineResource,
    code_units: pd.DataFrame,
    api_endpoints: pd.DataFrame,
    user_stories: pd.DataFrame,
    base_model: dict,
):
    """Desensitised (secrets and PII as typed placeholders), quality-filtered, deduplicated code units, API designs
    as markdown tables, domain models as PlantUML and user stories in canonical form — every rendering checked by
    its DSL's validator; drops are quarantined with the reason."""
    from transformers import AutoTokenizer

    settings = flywheel.settings
    tokenizer = AutoTokenizer.from_pretrained(base_model["path"])
    result = curate(
        _records(code_units),
        _records(api_endpoints, ENDPOINT_JSON_COLUMNS),
        _records(user_stories),
        curation_policy(settings),
        count_tokens=lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"]),
    )
    store = quarantine.store()
    try:
        sources = {s.name for s in settings.sources}
        for source in sorted(sources):
            rows = [q for q in result.quarantined if q.source == source]
            store.replace(source, "curated_assets", rows, context.run.run_id)
    finally:
        store.dispose()
    df = pd.DataFrame(result.records)
    df["redactions"] = df["redactions"].map(json.dumps) if len(df) else []
    yield dg.Output(
        df,
        metadata={
            "records": len(df),
            "by_kind": counts(df["kind"]) if len(df) else counts([]),
            "redactions_by_type": dg.MetadataValue.json(dict(result.redactions)),
            "filtered_by_reason": dg.MetadataValue.json(dict(result.filtered)),
            "duplicates_removed_share_by_source": dg.MetadataValue.json(
                {k: round(v, 4) for k, v in result.duplicates_removed_share.items()}
            ),
            "rest_findings_by_rule": dg.MetadataValue.json(dict(result.rest_findings)),
            "quarantined": len(result.quarantined),
            "quarantine_reasons": reasons_preview(result.quarantined),
            "preview": table_preview(df, ["kind", "source", "title"]) if len(df) else "",
        },
    )
    yield from record_checks(
        "curated_assets",
        "curated_asset",
        result.records,
        len(result.quarantined),
        settings.discover.max_quarantine_rate,
    )
