"""Jobs: one whole turn of the flywheel, and the retraining that new feedback asks for."""

import dagster as dg

flywheel_turn = dg.define_asset_job(
    "flywheel_turn",
    selection=dg.AssetSelection.all(),
    description="One full turn: crawl, cut into units, distil, train, score, promote, read feedback.",
)

retrain = dg.define_asset_job(
    "retrain",
    selection=dg.AssetSelection.assets("feedback_events").downstream(),
    description="Fold the latest feedback into the dataset, train a new adapter version, score and promote it.",
)
