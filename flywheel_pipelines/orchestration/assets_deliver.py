"""Deliver (step 6): what users did with the model's answers, by day; the examples their edits make; and their
accepts and rejects as preference data."""

from datetime import date
from pathlib import Path

import dagster as dg
import pandas as pd

from flywheel_pipelines.define.tasks import EXAMPLE_FIELDS
from flywheel_pipelines.deliver.feedback_days import JOINED, events_of_day
from flywheel_pipelines.deliver.feedback_store import feedback_events as events_table
from flywheel_pipelines.deliver.training_data import dpo_pairs, examples_from_feedback, kto_examples
from flywheel_pipelines.orchestration.partitions import FEEDBACK_TIMEZONE, feedback_days
from flywheel_pipelines.orchestration.previews import counts, table_preview
from flywheel_pipelines.orchestration.resources import FeedbackStoreResource, FlywheelSettings, table_records

GROUP = "deliver"
EVENT_COLUMNS = [c.name for c in events_table.columns] + list(JOINED)
# Days nobody sent feedback on are never materialised: read as no events.
ALL_DAYS = dg.AssetIn(metadata={"missing_partitions": "empty"})


@dg.asset(group_name=GROUP, kinds={"sql", "parquet"}, partitions_def=feedback_days)
def feedback_events(
    context: dg.AssetExecutionContext, feedback_store: FeedbackStoreResource
) -> dg.Output[pd.DataFrame]:
    """The accept / reject / edit events the store received on one day (UTC) — posted to the API by tools, or
    imported with `flywheel feedback import` — each joined with the completion log (served model, adapter version,
    latency)."""
    day = date.fromisoformat(context.partition_key)
    store = feedback_store.store()
    try:
        events = events_of_day(store, day, FEEDBACK_TIMEZONE)
    finally:
        store.dispose()
    df = pd.DataFrame(events, columns=EVENT_COLUMNS)
    return dg.Output(
        df,
        metadata={
            "events": len(df),
            "by_kind": counts(df["kind"]),
            "from_the_api": int(df["completion_id"].notna().sum()),
            "newest_event_id": int(df["id"].max()) if len(df) else 0,
            "preview": table_preview(df, ["id", "kind", "task", "adapter_version", "instruction"]),
        },
    )


def _all_events(feedback_events: pd.DataFrame) -> list[dict]:
    return sorted(table_records(feedback_events), key=lambda e: e["id"]) if len(feedback_events) else []


@dg.asset(group_name=GROUP, kinds={"parquet"}, ins={"feedback_events": ALL_DAYS})
def feedback_examples(feedback_events: pd.DataFrame) -> dg.Output[pd.DataFrame]:
    """Edited completions of every day as instruction examples (the edit is the output), provenance
    `feedback:<event id>`; the next `instruction_dataset` trains on them, an edit replacing the answer it corrects."""
    df = pd.DataFrame(examples_from_feedback(_all_events(feedback_events)), columns=list(EXAMPLE_FIELDS))
    return dg.Output(
        df,
        metadata={"examples": len(df), "preview": table_preview(df, ["origin", "instruction", "output"])},
    )


def _export(rows: list[dict], folder: Path, trl_fields: list[str]) -> None:
    """`data.parquet` with provenance, and `train.jsonl` with exactly the fields trl's trainers read."""
    folder.mkdir(parents=True, exist_ok=True)
    df = pd.DataFrame(rows, columns=[*trl_fields, "task", "origin", "model"])
    df.to_parquet(folder / "data.parquet", index=False)
    df[trl_fields].to_json(folder / "train.jsonl", orient="records", lines=True, force_ascii=False)


@dg.asset(group_name=GROUP, kinds={"parquet", "huggingface"}, ins={"feedback_events": ALL_DAYS})
def preference_data(flywheel: FlywheelSettings, feedback_events: pd.DataFrame) -> dg.Output[dict]:
    """Accepts, rejects and edits as preference data in the conversational formats trl reads: DPO pairs (prompt,
    chosen, rejected — an edit is chosen over the answer it replaced) and KTO judgements (prompt, completion,
    label), written to data/datasets/preference/{dpo,kto}/ (`train.jsonl` for `load_dataset("json", ...)`)."""
    events = _all_events(feedback_events)
    root = flywheel.settings.data_path / "datasets" / "preference"
    pairs, judged = dpo_pairs(events), kto_examples(events)
    _export(pairs, root / "dpo", ["prompt", "chosen", "rejected"])
    _export(judged, root / "kto", ["prompt", "completion", "label"])
    value = {
        "dpo_path": str(root / "dpo" / "train.jsonl"),
        "kto_path": str(root / "kto" / "train.jsonl"),
        "dpo_pairs": len(pairs),
        "kto_examples": len(judged),
        "kto_desirable": sum(r["label"] for r in judged),
    }
    return dg.Output(
        value,
        metadata={
            **value,
            "dpo_path": dg.MetadataValue.path(value["dpo_path"]),
            "by_task": counts(r["task"] for r in pairs),
        },
    )
