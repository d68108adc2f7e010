"""The real loop, as it runs in production: feedback is imported, the Dagster daemon ticks the sensor, and the
run it launches trains and registers a new adapter version."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
import yaml

from flywheel_pipelines.cli import main as flywheel_cli
from flywheel_pipelines.orchestration.turn import run_turn
from flywheel_pipelines.settings import load_settings
from flywheel_pipelines_tests.conftest import REPO_ROOT, feedback_line, project_config, write_project

DAEMON_DEADLINE_S = 300


@pytest.fixture
def dagster_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(
        yaml.safe_dump(
            {
                "telemetry": {"enabled": False},
                "run_coordinator": {"module": "dagster._core.run_coordinator", "class": "QueuedRunCoordinator"},
            }
        )
    )
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home


def test_the_daemon_turns_new_feedback_into_a_new_adapter_version(
    tmp_path: Path, tiny_model_dir: Path, dagster_home: Path, monkeypatch: pytest.MonkeyPatch
):
    config = project_config(
        tmp_path, str(tiny_model_dir), feedback={"retrain_min_new_events": 3, "sensor_interval_seconds": 1}
    )
    settings = load_settings(write_project(tmp_path, config))
    monkeypatch.setenv("FLYWHEEL_CONFIG", str(settings.source))
    workspace = tmp_path / "workspace.yaml"
    workspace.write_text(
        yaml.safe_dump(
            {
                "load_from": [
                    {
                        "python_module": {
                            "module_name": "flywheel_pipelines.definitions",
                            "working_directory": str(REPO_ROOT),
                        }
                    }
                ]
            }
        )
    )

    with dg.DagsterInstance.get() as instance:
        # A first full turn, so the retraining run finds code units and the base model materialised.
        assert run_turn(settings, instance, log=lambda _: None)
        feedback = tmp_path / "feedback.jsonl"
        feedback.write_text("".join(feedback_line(f"e{i}") + "\n" for i in range(3)))
        assert flywheel_cli(["--config", str(settings.source), "feedback", "import", str(feedback)]) == 0

        daemon = subprocess.Popen(
            [os.path.join(os.path.dirname(sys.executable), "dagster-daemon"), "run", "-w", str(workspace)],
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # the daemon's children die with its process group
        )
        try:
            run = wait_for_feedback_run(instance)
        finally:
            os.killpg(daemon.pid, signal.SIGTERM)
            daemon.wait(timeout=60)

        assert run.status == dg.DagsterRunStatus.SUCCESS, run.status
        assert run.job_name == "retrain" and run.tags["dagster/run_key"] == "feedback-1-3"
        adapter = json.loads((settings.data_path / "assets" / "lora_adapter.json").read_text())
        assert adapter["version"] == "2"
        materialisation = instance.get_latest_materialization_event(dg.AssetKey("lora_adapter"))
        assert materialisation.run_id == run.run_id


def wait_for_feedback_run(instance: dg.DagsterInstance) -> dg.DagsterRun:
    finished = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}
    deadline = time.monotonic() + DAEMON_DEADLINE_S
    while time.monotonic() < deadline:
        runs = instance.get_runs(filters=dg.RunsFilter(tags={"flywheel/trigger": "feedback"}))
        if runs and runs[0].status in finished:
            assert len(runs) == 1, "the same feedback triggered more than one run"
            return runs[0]
        time.sleep(2)
    raise AssertionError(f"no feedback-triggered run finished within {DAEMON_DEADLINE_S}s")
