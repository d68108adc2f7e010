"""Step 6, automation: the feedback sensor retrains on enough events or on old enough ones, collects earlier days
first, never triggers twice for the same events (its cursor survives a restart: it is stored by Dagster with the
tick) and skips none; the run-failure sensor keeps every failed run in the database."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
from sqlalchemy import update

from flywheel_pipelines.definitions import build_definitions
from flywheel_pipelines.deliver.feedback_store import FeedbackStore, feedback_events
from flywheel_pipelines.orchestration.resources import build_resources
from flywheel_pipelines.run_failures import RunFailureLog
from flywheel_pipelines.settings import load_settings
from flywheel_pipelines_tests.conftest import feedback_line, project_config, write_project


def _project(tmp_path: Path, tiny_model_dir: Path, **feedback):
    config = project_config(tmp_path, str(tiny_model_dir), feedback={"retrain_min_new_events": 3, **feedback})
    settings = load_settings(write_project(tmp_path, config))
    return settings, build_definitions(settings)


def _tick(defs, settings, instance, cursor=None):
    sensor = defs.resolve_sensor_def("feedback_sensor")
    with dg.build_sensor_context(
        instance=instance, cursor=cursor, resources=build_resources(settings), definitions=defs
    ) as context:
        return sensor.evaluate_tick(context)


def _import(settings, ids: list[str], arrived: datetime | None = None) -> None:
    store = FeedbackStore(settings.feedback_database_url)
    try:
        store.import_lines([feedback_line(i) for i in ids])
        if arrived is not None:
            with store.engine.begin() as conn:
                moved = feedback_events.c.event_id.in_(ids)
                conn.execute(update(feedback_events).where(moved).values(imported_at=arrived))
    finally:
        store.dispose()


def test_old_enough_feedback_retrains_even_when_there_is_little_and_earlier_days_are_collected_first(
    tmp_path: Path, tiny_model_dir: Path
):
    settings, defs = _project(tmp_path, tiny_model_dir, retrain_max_age_minutes=60)
    now = datetime.now(UTC)
    with dg.instance_for_test() as instance:
        _import(settings, ["fresh"])
        young = _tick(defs, settings, instance)
        assert young.run_requests == [] and "1 new feedback events since event 0" in young.skip_message
        _import(settings, ["old"], arrived=now - timedelta(days=2))
        due = _tick(defs, settings, instance)
        collect, retrain = due.run_requests
        assert (collect.job_name, collect.partition_key) == (
            "collect_feedback",
            (now - timedelta(days=2)).date().isoformat(),
        )
        assert (retrain.job_name, retrain.partition_key, retrain.run_key) == (
            "retrain",
            now.date().isoformat(),
            "feedback-1-2",
        )
        assert collect.run_key == f"feedback-1-2-{collect.partition_key}"
        # The cursor moved past both events: the next tick, as after a restart, has nothing to do; a new event
        # is counted from there.
        assert due.cursor == "2"
        assert _tick(defs, settings, instance, due.cursor).run_requests == []
        _import(settings, ["later"])
        assert "1 new feedback events since event 2" in _tick(defs, settings, instance, due.cursor).skip_message
        # The collecting run materialises that day's partition from the store.
        run = defs.resolve_job_def("collect_feedback").execute_in_process(
            instance=instance, partition_key=collect.partition_key
        )
        (day,) = run.asset_materializations_for_node("feedback_events")
        assert day.metadata["events"].value == 1 and day.partition == collect.partition_key


def test_a_failed_run_is_recorded_by_the_run_failure_sensor(tmp_path: Path, tiny_model_dir: Path):
    settings, defs = _project(tmp_path, tiny_model_dir)
    with dg.instance_for_test() as instance:
        # Nothing discovered yet: training fails on its first asset.
        result = defs.resolve_job_def("train").execute_in_process(
            instance=instance, raise_on_error=False, tags={"flywheel/trigger": "test"}
        )
        assert not result.success
        failure = next(e for e in result.all_events if e.event_type_value == "PIPELINE_FAILURE")
        sensor = defs.resolve_sensor_def("run_failure_sensor")
        context = dg.build_run_status_sensor_context(
            sensor_name="run_failure_sensor",
            dagster_event=failure,
            dagster_instance=instance,
            dagster_run=result.dagster_run,
            resources=build_resources(settings),
            repository_def=defs.get_repository_def(),
        ).for_run_failure()
        sensor(context)
        sensor(context)  # a replayed tick records it once
    log = RunFailureLog(settings.feedback_database_url)
    try:
        (row,) = log.failures()
    finally:
        log.dispose()
    assert (row["run_id"], row["job_name"], row["trigger"]) == (result.run_id, "train", "test")
    assert "curated_assets" in row["failed_steps"] and "materialised" in row["failed_steps"]
