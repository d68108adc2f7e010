"""The Celery alternative, for real: a worker started as deploy/README.md says (`dagster-celery worker start -y
deploy/dagster/celery_executor.yaml`) takes the `discover` steps of a run from RabbitMQ and reports their events into
the PostgreSQL instance of deploy/dagster/dagster.celery.yaml."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import psutil
import pytest
from dagster import DagsterEventType

from flywheel_pipelines.settings import load_settings
from flywheel_pipelines_tests.conftest import REPO_ROOT, project_config, write_project
from flywheel_pipelines_tests.deploy.conftest import code_location_job
from flywheel_pipelines_tests.deploy.test_postgres_instance import DISCOVER_STEPS, production_instance

EXECUTOR_CONFIG = REPO_ROOT / "deploy" / "dagster" / "celery_executor.yaml"
WORKER_START_TIMEOUT_S = 60
RUN_TIMEOUT_S = 120


@contextmanager
def fail_after(seconds: int) -> Iterator[None]:
    def expired(signum, frame):
        raise TimeoutError(f"the run did not finish in {seconds} s: are other Celery workers taking its steps?")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def rabbitmq_answers() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5672), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture
def celery_worker(celery_project, tmp_path: Path) -> Iterator[str]:
    """A worker started the documented way, in the environment the test set up; yields its node name."""
    name = f"flywheel-test-{uuid.uuid4().hex[:6]}"
    bin_dir = Path(sys.executable).parent
    log = tmp_path / "celery-worker.log"
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [str(bin_dir / "dagster-celery"), "worker", "start", "-A", "dagster_celery.app", "-y", str(EXECUTOR_CONFIG),
             "-n", name, "--", "--pool=solo", "--without-gossip", "--without-mingle", "--without-heartbeat"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"},
            start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + WORKER_START_TIMEOUT_S
        while " ready." not in log.read_text(errors="replace"):
            if worker.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the Celery worker did not start:\n{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.5)
        yield name
    finally:
        # Celery's own process first, so that `dagster-celery`, its parent, reaps it and exits. No task is running
        # by now, and Celery's own (warm or cold) shutdown takes some 10 s: it is killed.
        for child in psutil.Process(worker.pid).children(recursive=True):
            child.kill()
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()


@pytest.fixture
def celery_project(tmp_path: Path, tiny_model_dir: Path, postgres_database: str, monkeypatch: pytest.MonkeyPatch):
    if not rabbitmq_answers():
        pytest.skip("RabbitMQ is unreachable on 127.0.0.1:5672")
    config = project_config(tmp_path, str(tiny_model_dir), assets_dir=(tmp_path / "bucket" / "assets").as_uri())
    settings = load_settings(write_project(tmp_path, config))
    monkeypatch.setenv("FLYWHEEL_CONFIG", str(settings.source))  # the worker imports the flywheel with it
    monkeypatch.setenv("FLYWHEEL_EXECUTOR", "celery")
    monkeypatch.setenv("FLYWHEEL_EXECUTOR_CONFIG", str(EXECUTOR_CONFIG))
    with production_instance(tmp_path, postgres_database, monkeypatch) as instance:
        yield instance


def test_discover_steps_run_on_a_celery_worker_through_rabbitmq(celery_project, celery_worker: str, tmp_path: Path):
    instance = celery_project
    instance.add_dynamic_partitions("sources", ["shop"])
    with fail_after(RUN_TIMEOUT_S):  # the Celery executor waits for its tasks' results without a limit
        result = dg.execute_job(code_location_job("discover", tmp_path), instance, tags={"dagster/partition": "shop"})
    assert result.success, [e.message for e in result.all_events if e.is_failure]

    records = instance.get_records_for_run(result.run_id).records
    events = [r.event_log_entry.dagster_event for r in records if r.event_log_entry.dagster_event]
    delegated = {
        e.step_key: e.engine_event_data.metadata["Celery worker"].value
        for e in events
        if e.event_type == DagsterEventType.ENGINE_EVENT and "in celery worker" in (e.message or "")
    }
    assert set(delegated) == DISCOVER_STEPS
    assert all(worker.startswith(f"{celery_worker}@") for worker in delegated.values())
    step_pids = {e.pid for e in events if e.event_type == DagsterEventType.STEP_SUCCESS}
    assert len(step_pids) == 1 and os.getpid() not in step_pids  # all four in the worker's (solo) process
