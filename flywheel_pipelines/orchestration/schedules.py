"""The nightly schedule: every source is re-discovered (incrementally), then the discovery sensor trains."""

import dagster as dg

from flywheel_pipelines.orchestration.jobs import discover
from flywheel_pipelines.orchestration.partitions import sources_partitions


def build_nightly_schedule(cron: str, timezone: str) -> dg.ScheduleDefinition:
    @dg.schedule(
        name="nightly_retrain",
        job=discover,
        cron_schedule=cron,
        execution_timezone=timezone,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Re-discovers every source; `discovery_sensor` then trains on the result.",
    )
    def nightly_retrain(context: dg.ScheduleEvaluationContext):
        tick = context.scheduled_execution_time.strftime("%Y-%m-%dT%H:%M")
        return [
            dg.RunRequest(partition_key=name, run_key=f"nightly-{tick}-{name}", tags={"flywheel/trigger": "schedule"})
            for name in context.instance.get_dynamic_partitions(sources_partitions.name)
        ]

    return nightly_retrain
