"""The nightly schedule: a full turn every night, so code that changed during the day is learnt too."""

import dagster as dg

from flywheel_pipelines.orchestration.jobs import flywheel_turn


def build_nightly_schedule(cron: str, timezone: str) -> dg.ScheduleDefinition:
    return dg.ScheduleDefinition(
        name="nightly_retrain",
        job=flywheel_turn,
        cron_schedule=cron,
        execution_timezone=timezone,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        tags={"flywheel/trigger": "schedule"},
    )
