"""Jobs: discover one source, train on everything discovered, and retrain when feedback arrives."""

import dagster as dg

from flywheel_pipelines.orchestration.partitions import sources_partitions

# The per-source assets; `curated_assets` spans every source, so it runs with training.
DISCOVER = dg.AssetSelection.assets("crawled_code", "code_units", "api_endpoints", "user_stories")

discover = dg.define_asset_job(
    "discover",
    selection=DISCOVER,
    partitions_def=sources_partitions,
    description="Crawl one source (a partition) into code units, API endpoints and user stories, incrementally.",
)

train = dg.define_asset_job(
    "train",
    selection=dg.AssetSelection.all() - DISCOVER,
    description="Distil the dataset from every source and the feedback, train, score and promote an adapter.",
)

retrain = dg.define_asset_job(
    "retrain",
    selection=dg.AssetSelection.assets("feedback_events").downstream(),
    description="Fold the latest feedback into the dataset, train a new adapter version, score and promote it.",
)
