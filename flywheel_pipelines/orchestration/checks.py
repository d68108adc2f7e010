"""Asset checks every discover asset reports with its materialisation: schema validity and quarantine rate."""

from collections.abc import Iterable

import dagster as dg

from flywheel_pipelines.schemas import validation_errors

SCHEMA_VALID = "schema_valid"
QUARANTINE_RATE = "quarantine_rate"
PROMOTION_GATE = "promotion_gate"  # the blocking check on eval_scores (assets_define)


def record_check_specs(asset: str, schema: str) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(SCHEMA_VALID, asset=asset, description=f"Every record matches schemas/{schema}.schema.json"),
        dg.AssetCheckSpec(QUARANTINE_RATE, asset=asset, description="Share of inputs quarantined, against a limit"),
    ]


def record_checks(
    asset: str, schema: str, records: Iterable[dict], quarantined: int, max_rate: float
) -> list[dg.AssetCheckResult]:
    records = list(records)
    invalid = [(r, errs) for r in records if (errs := validation_errors(schema, r))]
    total = len(records) + quarantined
    rate = quarantined / total if total else 0.0
    return [
        dg.AssetCheckResult(
            asset_key=asset,
            check_name=SCHEMA_VALID,
            passed=not invalid,
            metadata={
                "records": len(records),
                "invalid": len(invalid),
                "first_error": "; ".join(invalid[0][1]) if invalid else "",
            },
        ),
        dg.AssetCheckResult(
            asset_key=asset,
            check_name=QUARANTINE_RATE,
            passed=rate <= max_rate,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"quarantined": quarantined, "rate": round(rate, 4), "limit": max_rate},
        ),
    ]
