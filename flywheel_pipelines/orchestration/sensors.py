"""Sensors: sources follow flywheel.yaml; a fully discovered set of sources trains; enough feedback retrains."""

import hashlib
from datetime import UTC, datetime

import dagster as dg

from flywheel_pipelines.deliver.feedback_days import backlog
from flywheel_pipelines.orchestration.jobs import collect_feedback, discover, retrain, train
from flywheel_pipelines.orchestration.partitions import FEEDBACK_TIMEZONE, sources_partitions
from flywheel_pipelines.orchestration.resources import FeedbackStoreResource, FlywheelSettings
from flywheel_pipelines.orchestration.source_sync import forget_sources, partition_changes
from flywheel_pipelines.run_failures import RunFailureLog

DISCOVERED_ASSETS = ("code_units", "api_endpoints", "user_stories")
_ACTIVE = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def build_sources_sensor(interval_seconds: int = 30) -> dg.SensorDefinition:
    @dg.sensor(
        name="sources_sensor",
        job=discover,
        minimum_interval_seconds=interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Adds a partition (and a discover run) for each new source in flywheel.yaml; removes the "
        "partition, clone, stored records and quarantine rows of a source taken out of it.",
    )
    def sources_sensor(context: dg.SensorEvaluationContext, flywheel: FlywheelSettings):
        settings = flywheel.settings
        added, removed = partition_changes(settings, context.instance)
        if not added and not removed:
            return dg.SkipReason("partitions match the sources in flywheel.yaml")
        forget_sources(settings, removed)
        return dg.SensorResult(
            run_requests=[dg.RunRequest(partition_key=name, run_key=f"source-added-{name}") for name in added],
            dynamic_partitions_requests=[
                *([sources_partitions.build_add_request(added)] if added else []),
                *([sources_partitions.build_delete_request(removed)] if removed else []),
            ],
        )

    return sources_sensor


def build_discovery_sensor(interval_seconds: int = 60) -> dg.SensorDefinition:
    @dg.sensor(
        name="discovery_sensor",
        job=train,
        minimum_interval_seconds=interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Requests `train` once every source is discovered and something was re-discovered since the "
        "last dataset, and no discover run is still going.",
    )
    def discovery_sensor(context: dg.SensorEvaluationContext):
        instance = context.instance
        if instance.get_runs(filters=dg.RunsFilter(job_name="discover", statuses=_ACTIVE), limit=1):
            return dg.SkipReason("discover runs are still in progress")
        partitions = instance.get_dynamic_partitions(sources_partitions.name)
        if not partitions:
            return dg.SkipReason("no sources yet")
        storage_ids, newest = [], 0.0
        for asset in DISCOVERED_ASSETS:
            for partition in partitions:
                records = instance.fetch_materializations(
                    dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[partition]), limit=1
                ).records
                if not records:
                    return dg.SkipReason(f"{asset} is not materialised for source {partition!r} yet")
                storage_ids.append(records[0].storage_id)
                newest = max(newest, records[0].timestamp)
        dataset = instance.get_latest_materialization_event(dg.AssetKey("instruction_dataset"))
        if dataset is not None and dataset.timestamp >= newest:
            return dg.SkipReason("nothing was discovered since the last dataset")
        fingerprint = hashlib.sha256(",".join(map(str, sorted(storage_ids))).encode()).hexdigest()[:16]
        return dg.RunRequest(run_key=f"discovered-{fingerprint}", tags={"flywheel/trigger": "discovery"})

    return discovery_sensor


def build_feedback_sensor(
    min_new_events: int, max_age_minutes: int | None = None, interval_seconds: int = 60
) -> dg.SensorDefinition:
    age_rule = f", or fewer once the oldest has waited {max_age_minutes} minutes" if max_age_minutes else ""

    @dg.sensor(
        name="feedback_sensor",
        jobs=[retrain, collect_feedback],
        minimum_interval_seconds=interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Requests `retrain` (for the newest day with feedback; earlier days are collected first) when "
        f"at least {min_new_events} new feedback events arrived{age_rule}.",
    )
    def feedback_sensor(context: dg.SensorEvaluationContext, feedback_store: FeedbackStoreResource):
        # The cursor is the id of the newest event already used to trigger a run: it is stored with the tick's run
        # requests, so after a restart the sensor goes on from there; run keys make a replayed tick harmless.
        cursor = int(context.cursor or 0)
        store = feedback_store.store()
        try:
            waiting = backlog(store, cursor, FEEDBACK_TIMEZONE)
        finally:
            store.dispose()
        age = waiting.age_minutes(datetime.now(UTC))
        if waiting.count < min_new_events and not (max_age_minutes and waiting.count and age >= max_age_minutes):
            return dg.SkipReason(
                f"{waiting.count} new feedback events since event {cursor} (the oldest {age:.0f} min old); "
                f"{min_new_events} needed{age_rule}"
            )
        key = f"feedback-{cursor + 1}-{waiting.newest_id}"
        tags = {"flywheel/trigger": "feedback", "flywheel/feedback_events": f"{cursor + 1}..{waiting.newest_id}"}
        *earlier, newest = waiting.days
        return dg.SensorResult(
            run_requests=[
                *(
                    dg.RunRequest(
                        job_name="collect_feedback", partition_key=day.isoformat(), run_key=f"{key}-{day}", tags=tags
                    )
                    for day in earlier
                ),
                dg.RunRequest(job_name="retrain", partition_key=newest.isoformat(), run_key=key, tags=tags),
            ],
            cursor=str(waiting.newest_id),
        )

    return feedback_sensor


def _error_text(error) -> str:
    """An error and its causes, one line each: what a person reads first."""
    lines = []
    while error is not None:
        lines.append(error.message.strip())
        error = error.cause
    return "\n".join(lines)


def build_run_failure_sensor() -> dg.SensorDefinition:
    @dg.run_failure_sensor(
        name="run_failure_sensor",
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Keeps every failed run (job, trigger, failed steps and why) in the run_failures table of the "
        "flywheel's database; a candidate refused promotion shows here too.",
    )
    def run_failure_sensor(context: dg.RunFailureSensorContext, flywheel: FlywheelSettings):
        run = context.dagster_run
        failed = context.get_step_failure_events()
        steps = [{"step": e.step_key, "error": _error_text(e.step_failure_data.error)} for e in failed]
        log = RunFailureLog(flywheel.settings.feedback_database_url)
        try:
            log.record(run.run_id, run.job_name, run.tags.get("flywheel/trigger"), context.failure_event.message, steps)
        finally:
            log.dispose()
        context.log.info(f"recorded the failure of run {run.run_id} ({run.job_name}): {len(steps)} failed step(s)")

    return run_failure_sensor
