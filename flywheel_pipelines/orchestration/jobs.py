"""Jobs: discover one source, train on everything discovered, collect a day's feedback, and retrain on feedback."""

import dagster as dg

from flywheel_pipelines.orchestration.partitions import feedback_days, sources_partitions

# The per-source assets; `curated_assets` spans every source, so it runs with training.
DISCOVER = dg.AssetSelection.assets("crawled_code", "code_units", "api_endpoints", "user_stories")
FEEDBACK_DAY = dg.AssetSelection.assets("feedback_events")

discover = dg.define_asset_job(
    "discover",
    selection=DISCOVER,
    partitions_def=sources_partitions,
    description="Crawl one source (a partition) into code units, API endpoints and user stories, incrementally.",
)

train = dg.define_asset_job(
    "train",
    selection=dg.AssetSelection.all() - DISCOVER - FEEDBACK_DAY,
    description="Distil the dataset from every source and every day of feedback collected, train, score and "
    "promote an adapter.",
)

collect_feedback = dg.define_asset_job(
    "collect_feedback",
    selection=FEEDBACK_DAY,
    partitions_def=feedback_days,
    description="The feedback events of one day (UTC), joined with the completion log.",
)

retrain = dg.define_asset_job(
    "retrain",
    selection=FEEDBACK_DAY.downstream(),
    partitions_def=feedback_days,
    description="Collect the day's feedback, fold every day's into the dataset and preference data, train a new "
    "adapter version, score it and promote it if it passes the gate.",
)
