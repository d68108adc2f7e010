"""Schedules: the nightly re-discovery (the discovery sensor then trains on everything), and each day's feedback
collected once the day is over."""

import dagster as dg

from flywheel_pipelines.orchestration.jobs import collect_feedback, discover
from flywheel_pipelines.orchestration.partitions import sources_partitions


def build_nightly_schedule(cron: str, timezone: str) -> dg.ScheduleDefinition:
    @dg.schedule(
        name="nightly_retrain",
        job=discover,
        cron_schedule=cron,
        execution_timezone=timezone,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Re-discovers every source; `discovery_sensor` then trains on the result and every day of "
        "feedback.",
    )
    def nightly_retrain(context: dg.ScheduleEvaluationContext):
        tick = context.scheduled_execution_time.strftime("%Y-%m-%dT%H:%M")
        return [
            dg.RunRequest(partition_key=name, run_key=f"nightly-{tick}-{name}", tags={"flywheel/trigger": "schedule"})
            for name in context.instance.get_dynamic_partitions(sources_partitions.name)
        ]

    return nightly_retrain


def build_feedback_day_schedule() -> dg.ScheduleDefinition:
    """Right after midnight (UTC), the day that ended: its table is final."""
    return dg.build_schedule_from_partitioned_job(
        collect_feedback,
        name="daily_feedback",
        minute_of_hour=5,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Collects the feedback of the day that just ended, so every day's table is complete.",
    )
