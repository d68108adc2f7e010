"""Deliver (step 6): what users did with the model's answers, and the training examples their edits make."""

import dagster as dg
import pandas as pd

from flywheel_pipelines.define.tasks import EXAMPLE_FIELDS
from flywheel_pipelines.deliver.feedback_store import EVENT_FIELDS
from flywheel_pipelines.deliver.training_data import examples_from_feedback
from flywheel_pipelines.orchestration.previews import counts, table_preview
from flywheel_pipelines.orchestration.resources import FeedbackStoreResource, table_records

GROUP = "deliver"


@dg.asset(group_name=GROUP, kinds={"sql", "parquet"})
def feedback_events(feedback_store: FeedbackStoreResource) -> dg.Output[pd.DataFrame]:
    """Accept / reject / edit events from the feedback store (import with `flywheel feedback import`)."""
    store = feedback_store.store()
    try:
        events = store.events()
        quarantined = len(store.quarantine())
    finally:
        store.dispose()
    df = pd.DataFrame(events, columns=["id", *EVENT_FIELDS, "imported_at"])
    return dg.Output(
        df,
        metadata={
            "events": len(df),
            "by_kind": counts(df["kind"]),
            "newest_event_id": int(df["id"].max()) if len(df) else 0,
            "quarantined_lines": quarantined,
            "preview": table_preview(df, ["id", "kind", "task", "instruction"]),
        },
    )


@dg.asset(group_name=GROUP, kinds={"parquet"})
def feedback_examples(feedback_events: pd.DataFrame) -> dg.Output[pd.DataFrame]:
    """Edited completions as instruction examples; the next `instruction_dataset` trains on them."""
    events = table_records(feedback_events)
    df = pd.DataFrame(
        examples_from_feedback(events),
        columns=list(EXAMPLE_FIELDS),
    )
    return dg.Output(
        df,
        metadata={"examples": len(df), "preview": table_preview(df, ["origin", "instruction", "output"])},
    )
