"""A throw-away project served by a real `dagster dev` on loopback, and Debian's chromium driven by Playwright."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest
import yaml

from flywheel_pipelines.orchestration.partitions import sources_partitions
from flywheel_pipelines_tests.conftest import REPO_ROOT, project_config, write_project

# Git-ignored; CI keeps it as the test's artefacts. Overwritten by every run.
ARTIFACTS = REPO_ROOT / "test-artifacts" / "ui"
# The code location loads torch, transformers and MLflow: slow on a busy 2-core machine.
STARTUP_TIMEOUT_S = 180
# Debian's chromium, as TOOLING_NOTES checked it; Playwright adds --headless and --user-data-dir itself.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LOCATION_QUERY = """
query {
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        loadStatus
        locationOrLoadError { __typename ... on PythonError { message } }
      }
    }
  }
}
"""


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "ui: drives the Dagster UI in headless chromium (needs Debian's chromium)")


@dataclass
class DagsterUI:
    url: str
    location: str  # the code location's name: the workspace's module, as in the repository's workspace.yaml
    log: Path

    def log_tail(self, lines: int = 60) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _graphql(url: str, query: str) -> dict:
    request = urllib.request.Request(
        f"{url}/graphql", data=json.dumps({"query": query}).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())["data"]


def _wait_until_loaded(process: subprocess.Popen, ui: DagsterUI) -> None:
    """/server_info answers before the code location is loaded: wait for both, and fail early if either fails."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"dagster dev exited with {process.returncode}:\n{ui.log_tail()}")
        try:
            with urllib.request.urlopen(f"{ui.url}/server_info", timeout=5):
                pass
            entries = _graphql(ui.url, LOCATION_QUERY)["workspaceOrError"].get("locationEntries", [])
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            entries = []
        for entry in entries:
            if entry["name"] == ui.location and entry["loadStatus"] == "LOADED":
                loaded = entry["locationOrLoadError"]
                if loaded["__typename"] == "PythonError":
                    raise AssertionError(f"the code location failed to load: {loaded['message']}")
                return
        time.sleep(1)
    raise AssertionError(f"dagster dev was not ready within {STARTUP_TIMEOUT_S}s:\n{ui.log_tail()}")


def _stop_group(process: subprocess.Popen) -> None:
    """dagster dev's code server, daemon and run workers can outlive a signal to the parent: end the whole group."""
    for sig, grace in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            process.poll()
            try:
                os.killpg(process.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)


@pytest.fixture
def artifacts() -> Path:
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True)
    return ARTIFACTS


@pytest.fixture
def dagster_ui(tmp_path: Path, tiny_model_dir: Path, artifacts: Path) -> Iterator[DagsterUI]:
    """`dagster dev` on a free loopback port, on a project of the sample sources and the tiny model, with its own
    instance (the repository's dagster.yaml, storage under tmp) and the code location of workspace.yaml."""
    settings_path = write_project(tmp_path, project_config(tmp_path, str(tiny_model_dir)))
    home = tmp_path / "dagster_home"
    home.mkdir()
    instance_config = yaml.safe_load((REPO_ROOT / "dagster.yaml").read_text())
    for key, folder in (("local_artifact_storage", "artifacts"), ("compute_logs", "compute_logs")):
        instance_config[key]["config"]["base_dir"] = str(home / folder)
    instance_config["storage"] = {"sqlite": {"base_dir": str(home / "storage")}}
    (home / "dagster.yaml").write_text(yaml.safe_dump(instance_config, sort_keys=False))
    workspace = yaml.safe_load((REPO_ROOT / "workspace.yaml").read_text())
    module = workspace["load_from"][0]["python_module"]
    module["working_directory"] = str(REPO_ROOT)
    (tmp_path / "workspace.yaml").write_text(yaml.safe_dump(workspace, sort_keys=False))

    # The source's partition exists before the daemon's first tick, as after `flywheel turn`: otherwise the sources
    # sensor would add it and start a discover run (and then training) of its own while the test drives the UI.
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.add_dynamic_partitions(sources_partitions.name, ["shop"])

    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.update(
        DAGSTER_HOME=str(home),
        FLYWHEEL_CONFIG=str(settings_path),
        HF_HUB_OFFLINE="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        TOKENIZERS_PARALLELISM="false",
        PYTHONUNBUFFERED="1",
    )
    port = str(_free_port())
    ui = DagsterUI(f"http://127.0.0.1:{port}", location=module["module_name"], log=artifacts / "dagster-dev.log")
    dagster = Path(sys.executable).with_name("dagster")
    with ui.log.open("wb") as log:
        process = subprocess.Popen(
            [str(dagster), "dev", "-w", str(tmp_path / "workspace.yaml"), "-h", "127.0.0.1", "-p", port],
            cwd=tmp_path,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, ended as a whole below
        )
    try:
        _wait_until_loaded(process, ui)
        yield ui
    finally:
        _stop_group(process)


@pytest.fixture
def chromium_executable() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.fail(
            "Debian's chromium is not installed: `make test` installs it (apt-get install -y chromium). "
            "Never `playwright install`: it downloads a browser."
        )
    return path


@pytest.fixture
def page(tmp_path: Path, chromium_executable: str):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=chromium_executable,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1600, "height": 1000},
        )
        try:
            page = context.pages[0] if context.pages else context.new_page()
            page.set_default_timeout(30_000)
            yield page
        finally:
            context.close()
