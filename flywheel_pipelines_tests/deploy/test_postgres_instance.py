"""The production instance runs the real graph: deploy/dagster/dagster.celery.yaml's PostgreSQL storage, the
`discover` job of deploy/dagster/code_location.py on the multiprocess executor (every step its own process), and
asset values under a file:// URL through fsspec — then the run, its events and its materialisations are rows in
PostgreSQL."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from urllib.parse import urlparse

import dagster as dg
import pytest
from dagster import DagsterEventType, DagsterInstance
from sqlalchemy import create_engine, text

from flywheel_pipelines.orchestration.resources import AssetFiles
from flywheel_pipelines.settings import load_settings
from flywheel_pipelines_tests.conftest import REPO_ROOT, project_config, write_project
from flywheel_pipelines_tests.deploy.conftest import code_location_job

DISCOVER_STEPS = {"crawled_code", "code_units", "api_endpoints", "user_stories"}
# Two steps at a time, each a process forked from one that imported the flywheel once (spawning each would import it
# again per step).
MULTIPROCESS = {
    "max_concurrent": 2,
    "start_method": {"forkserver": {"preload_modules": ["flywheel_pipelines.definitions"]}},
}


def production_instance(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> DagsterInstance:
    """$DAGSTER_HOME holding deploy/dagster/dagster.celery.yaml unchanged, its variables naming `database_url`."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "deploy" / "dagster" / "dagster.celery.yaml", home / "dagster.yaml")
    db = urlparse(database_url)
    for name, value in {
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_HOST": db.hostname,
        "DAGSTER_PG_PORT": str(db.port or 5432),
        "DAGSTER_PG_DB": db.path.lstrip("/"),
        "DAGSTER_PG_USERNAME": db.username,
        "DAGSTER_PG_PASSWORD": db.password or "",
        "DAGSTER_COMPUTE_LOGS_DIR": str(tmp_path / "compute_logs"),
    }.items():
        monkeypatch.setenv(name, value)
    return DagsterInstance.from_config(str(home))


def test_discover_runs_step_per_process_with_its_run_and_events_in_postgres(
    tmp_path: Path, tiny_model_dir: Path, postgres_database: str, monkeypatch: pytest.MonkeyPatch
):
    bucket = tmp_path / "bucket" / "assets"
    config = project_config(tmp_path, str(tiny_model_dir), assets_dir=bucket.as_uri())
    settings = load_settings(write_project(tmp_path, config))
    monkeypatch.setenv("FLYWHEEL_CONFIG", str(settings.source))  # what the step processes read
    monkeypatch.setenv("FLYWHEEL_EXECUTOR", "multiprocess")

    with production_instance(tmp_path, postgres_database, monkeypatch) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
        instance.add_dynamic_partitions("sources", ["shop"])

        result = dg.execute_job(
            code_location_job("discover", tmp_path),
            instance,
            run_config={"execution": {"config": MULTIPROCESS}},
            tags={"dagster/partition": "shop"},
        )
        assert result.success, [e.message for e in result.all_events if e.is_failure]

        records = instance.get_records_for_run(result.run_id).records
        step_pids = {
            r.event_log_entry.dagster_event.step_key: r.event_log_entry.dagster_event.pid
            for r in records
            if r.event_log_entry.dagster_event and r.event_log_entry.dagster_event_type == DagsterEventType.STEP_START
        }
        assert set(step_pids) == DISCOVER_STEPS
        assert len(set(step_pids.values())) == 4 and os.getpid() not in step_pids.values()  # a process per step

    engine = create_engine(postgres_database)
    with engine.connect() as conn:
        status = conn.execute(text("SELECT status FROM runs WHERE run_id = :id"), {"id": result.run_id}).scalar()
        materialised = conn.execute(
            text(
                "SELECT asset_key, partition FROM event_logs WHERE run_id = :id "
                "AND dagster_event_type = 'ASSET_MATERIALIZATION' ORDER BY asset_key"
            ),
            {"id": result.run_id},
        ).all()
        partitions = conn.execute(text("SELECT partition FROM dynamic_partitions")).scalars().all()
    engine.dispose()
    assert status == "SUCCESS"
    assert [(key.strip('[]"'), partition) for key, partition in materialised] == [
        (step, "shop") for step in sorted(DISCOVER_STEPS)
    ]
    assert partitions == ["shop"]

    files = AssetFiles(bucket.as_uri())
    assert len(files.read("code_units", "shop")) > 0 and len(files.read("api_endpoints", "shop")) > 0
    assert (bucket / "crawled_code" / "shop.parquet").is_file()
