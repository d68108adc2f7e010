"""The MLflow tracking server of deploy/mlflow/: started with the systemd unit's own command line on a PostgreSQL
backend and a (local) artifacts destination, it takes the flywheel's runs, adapter artifacts, registered versions
and aliases through `flywheel_pipelines.define.tracking` — the artifacts land where the server keeps them."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
from sqlalchemy import create_engine, text

from flywheel_pipelines.define.tracking import (
    CHALLENGER_ALIAS,
    Tracking,
    current_champion,
    ensure_local_adapter,
    promote,
    register_adapter,
)
from flywheel_pipelines.settings import parse_settings
from flywheel_pipelines_tests.conftest import REPO_ROOT
from flywheel_pipelines_tests.deploy.conftest import free_port

MLFLOW = REPO_ROOT / "deploy" / "mlflow"
START_TIMEOUT_S = 60


def unit_command(env: dict[str, str]) -> list[str]:
    """The unit's ExecStart, its ${VARIABLES} filled in as systemd fills them (one word each), run by this venv's
    `mlflow` instead of /opt/mlflow/venv's."""
    unit = (MLFLOW / "mlflow-server.service").read_text()
    (exec_start,) = re.findall(r"^ExecStart=((?:.*\\\n)*.*)$", unit, flags=re.MULTILINE)
    words = exec_start.replace("\\\n", " ").split()
    words = [re.sub(r"\$\{(\w+)\}", lambda m: env[m.group(1)], w) for w in words]
    assert words[0] == "/opt/mlflow/venv/bin/mlflow" and words[1] == "server"
    return [str(Path(sys.executable).parent / "mlflow"), *words[1:]]


def test_the_unit_reads_every_variable_the_env_file_sets():
    unit = (MLFLOW / "mlflow-server.service").read_text()
    env_file = (MLFLOW / "mlflow.env").read_text()
    used = set(re.findall(r"\$\{(\w+)\}", unit))
    defined = set(re.findall(r"^(\w+)=", env_file, flags=re.MULTILINE))
    assert used and used <= defined, f"not in mlflow.env: {used - defined}"
    assert re.search(r"^MLFLOW_BACKEND_STORE_URI=postgresql\+psycopg2://", env_file, flags=re.MULTILINE)
    assert re.search(r"^MLFLOW_ARTIFACTS_DESTINATION=s3://", env_file, flags=re.MULTILINE)


@pytest.fixture
def mlflow_global_uri(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """`Tracking.client()` sets MLflow's process-wide URI (and $MLFLOW_TRACKING_URI): put both back afterwards."""
    from mlflow.tracking._tracking_service import utils

    previous = utils._tracking_uri
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    yield
    mlflow.set_tracking_uri(previous)


@pytest.fixture
def tracking_server(postgres_database: str, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    port = free_port()
    artifacts = tmp_path / "server-artifacts"
    env = {
        "MLFLOW_BACKEND_STORE_URI": postgres_database,
        "MLFLOW_ARTIFACTS_DESTINATION": artifacts.as_uri(),
        "MLFLOW_HOST": "127.0.0.1",
        "MLFLOW_PORT": str(port),
        "MLFLOW_WORKERS": "1",
        "MLFLOW_ALLOWED_HOSTS": f"127.0.0.1,127.0.0.1:{port},localhost,localhost:{port}",
    }
    log = tmp_path / "mlflow-server.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            unit_command(env),
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")},
            start_new_session=True,  # the server's workers go down with it
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not come up:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield url, artifacts
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def test_runs_adapters_versions_and_aliases_go_through_the_server_into_postgres_and_its_artifact_store(
    tracking_server: tuple[str, Path], postgres_database: str, tmp_path: Path, mlflow_global_uri: None
):
    url, server_artifacts = tracking_server
    settings = parse_settings(
        {
            "sources": [{"name": "shop", "path": "code"}],
            "base_model": {"name_or_path": "m"},
            "tracking": {"tracking_uri": url, "artifact_location": "mlflow-artifacts:/flywheel"},
        },
        tmp_path,
    )
    assert settings.mlflow_artifact_location == "mlflow-artifacts:/flywheel"  # proxied by the server, as it is
    tracking = Tracking(
        settings.mlflow_tracking_uri,
        settings.mlflow_artifact_location,
        settings.tracking.experiment,
        settings.tracking.registered_model,
    )

    client = tracking.client()
    run = client.create_run(tracking.experiment_id(), tags={"flywheel.dataset_version": "abc123"})
    client.log_param(run.info.run_id, "lora_r", 16)
    for step, loss in enumerate([2.0, 1.5, 1.2]):
        client.log_metric(run.info.run_id, "train/loss", loss, step=step)
    adapter = tmp_path / "adapters" / "mix-abc123-1"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text(json.dumps({"r": 16, "peft_type": "LORA"}))
    client.log_artifacts(run.info.run_id, str(adapter), "adapter")
    client.set_terminated(run.info.run_id)

    # The version records a folder that only the training machine has: serving elsewhere downloads it.
    version = register_adapter(tracking, run.info.run_id, Path("/nowhere/on/this/machine") / adapter.name)
    assert version.version == "1"
    challenger = client.get_model_version_by_alias(tracking.registered_model, CHALLENGER_ALIAS)
    assert challenger.version == "1" and challenger.source.startswith("mlflow-artifacts:/flywheel/")
    promote(tracking, version.version, "passed the promotion gate")
    champion = current_champion(tracking)
    assert champion is not None and champion.version == "1" and champion.run_id == run.info.run_id
    downloaded = ensure_local_adapter(tracking, champion, tmp_path / "serving-cache")
    assert json.loads((downloaded / "adapter_config.json").read_text())["r"] == 16

    assert [m.value for m in client.get_metric_history(run.info.run_id, "train/loss")] == [2.0, 1.5, 1.2]
    # The bytes went through the server to its artifacts destination; nothing was written under the project.
    assert len(list(server_artifacts.rglob("adapter_config.json"))) == 1
    copies = {p.relative_to(tmp_path).parts[0] for p in tmp_path.rglob("adapter_config.json")}
    assert copies == {"adapters", server_artifacts.name, "serving-cache"}

    engine = create_engine(postgres_database)
    with engine.connect() as conn:
        runs = conn.execute(text("SELECT run_uuid, status FROM runs")).all()
        aliases = conn.execute(text("SELECT alias, version FROM registered_model_aliases ORDER BY alias")).all()
        params = conn.execute(text("SELECT key, value FROM params")).all()
    engine.dispose()
    assert runs == [(run.info.run_id, "FINISHED")]
    assert aliases == [("challenger", 1), ("champion", 1)]
    assert params == [("lora_r", "16")]
