"""Builds `defs`, the Dagster definitions of the flywheel, from flywheel.yaml — assembly only, no logic."""

import dagster as dg

from flywheel_pipelines.orchestration import assets_curate, assets_define, assets_deliver, assets_discover
from flywheel_pipelines.orchestration.jobs import collect_feedback, discover, retrain, train
from flywheel_pipelines.orchestration.resources import build_resources
from flywheel_pipelines.orchestration.schedules import build_feedback_day_schedule, build_nightly_schedule
from flywheel_pipelines.orchestration.sensors import (
    build_discovery_sensor,
    build_feedback_sensor,
    build_run_failure_sensor,
    build_sources_sensor,
)
from flywheel_pipelines.settings import Settings, load_settings


def build_definitions(settings: Settings) -> dg.Definitions:
    return dg.Definitions(
        assets=dg.load_assets_from_modules([assets_discover, assets_curate, assets_define, assets_deliver]),
        asset_checks=dg.load_asset_checks_from_modules([assets_define]),
        jobs=[discover, train, collect_feedback, retrain],
        sensors=[
            build_sources_sensor(),
            build_discovery_sensor(),
            build_feedback_sensor(
                settings.feedback.retrain_min_new_events,
                settings.feedback.retrain_max_age_minutes,
                settings.feedback.sensor_interval_seconds,
            ),
            build_run_failure_sensor(),
        ],
        schedules=[
            build_nightly_schedule(settings.feedback.nightly_cron, settings.feedback.timezone),
            build_feedback_day_schedule(),
        ],
        resources=build_resources(settings),
    )


defs = build_definitions(load_settings())
