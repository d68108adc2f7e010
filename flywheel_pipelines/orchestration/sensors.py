"""Sensors: sources follow flywheel.yaml; a fully discovered set of sources trains; enough feedback retrains."""

import hashlib

import dagster as dg

from flywheel_pipelines.orchestration.jobs import discover, retrain, train
from flywheel_pipelines.orchestration.partitions import sources_partitions
from flywheel_pipelines.orchestration.resources import FeedbackStoreResource, FlywheelSettings
from flywheel_pipelines.orchestration.source_sync import forget_sources, partition_changes

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


def build_feedback_sensor(min_new_events: int, interval_seconds: int = 60) -> dg.SensorDefinition:
    @dg.sensor(
        name="feedback_sensor",
        job=retrain,
        minimum_interval_seconds=interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Requests `retrain` when at least {min_new_events} new feedback events arrived.",
    )
    def feedback_sensor(context: dg.SensorEvaluationContext, feedback_store: FeedbackStoreResource):
        # The cursor is the id of the newest event already used to trigger a run.
        cursor = int(context.cursor or 0)
        store = feedback_store.store()
        try:
            new, newest = store.new_events_since(cursor)
        finally:
            store.dispose()
        if new < min_new_events:
            return dg.SkipReason(f"{new} new feedback events since event {cursor}; {min_new_events} needed")
        context.update_cursor(str(newest))
        return dg.RunRequest(
            run_key=f"feedback-{cursor + 1}-{newest}",  # the same events can never trigger twice
            tags={"flywheel/trigger": "feedback", "flywheel/feedback_events": f"{cursor + 1}..{newest}"},
        )

    return feedback_sensor
