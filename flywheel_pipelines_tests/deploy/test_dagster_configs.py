"""The production Dagster configs in deploy/dagster/ load, validate against Dagster's own schemas with their
environment variables set, name classes that import, and say what they mean: the Kubernetes run and step pods they
describe are built here exactly as dagster-k8s builds them, and the executor blocks are valid run config of the
flywheel's real jobs."""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from dagster._config import process_config, resolve_to_config_type
from dagster._core.instance.ref import InstanceRef
from dagster._core.launcher import RunLauncher
from dagster._core.run_coordinator import RunCoordinator
from dagster._core.storage.base_storage import DagsterStorage
from dagster._core.storage.compute_log_manager import ComputeLogManager
from dagster._core.system_config.objects import ResolvedRunConfig
from dagster._serdes import ConfigurableClassData

from flywheel_pipelines_tests.conftest import REPO_ROOT
from flywheel_pipelines_tests.deploy.conftest import load_code_location

DEPLOY = REPO_ROOT / "deploy" / "dagster"
INSTANCE_FILES = ["dagster.k8s.yaml", "dagster.celery.yaml"]
JOBS = ("discover", "train", "collect_feedback", "retrain")
PRODUCTION_ENV = {
    "DAGSTER_PG_HOST": "db.internal",
    "DAGSTER_PG_PORT": "5432",
    "DAGSTER_PG_DB": "dagster",
    "DAGSTER_PG_USERNAME": "dagster",
    "DAGSTER_PG_PASSWORD": "s3cret",
    "DAGSTER_K8S_NAMESPACE": "flywheel",
    "FLYWHEEL_IMAGE": "registry.internal/flywheel-pipelines:1.0",
    "DAGSTER_COMPUTE_LOGS_DIR": "/mnt/shared/dagster/compute_logs",
}
KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: test, cluster: {server: "https://127.0.0.1:6443"}}]
users: [{name: test, user: {token: not-a-real-token}}]
contexts: [{name: test, context: {cluster: test, user: test}}]
current-context: test
"""


@pytest.fixture
def production_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in PRODUCTION_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("FLYWHEEL_CONFIG", str(REPO_ROOT / "flywheel.yaml"))
    yield


def classes_named(node: Any) -> Iterator[tuple[str, str]]:
    """Every `module`/`class` pair anywhere in a YAML document."""
    if isinstance(node, Mapping):
        if "module" in node and "class" in node:
            yield node["module"], node["class"]
        for value in node.values():
            yield from classes_named(value)
    elif isinstance(node, list):
        for value in node:
            yield from classes_named(value)


def processed(data: ConfigurableClassData, kind: type) -> tuple[type, dict]:
    """What `ConfigurableClassData.rehydrate` checks — the class imports, is the right kind, and its config passes
    its schema with `env:` values resolved — without constructing it (a run launcher would dial Kubernetes)."""
    klass = getattr(importlib.import_module(data.module_name), data.class_name)
    assert issubclass(klass, kind), f"{data.module_name}.{data.class_name} is not a {kind.__name__}"
    result = process_config(resolve_to_config_type(klass.config_type()), data.config_dict)
    assert result.success, [e.message for e in result.errors]
    return klass, result.value


@pytest.mark.parametrize("name", INSTANCE_FILES)
def test_each_instance_config_validates_and_names_real_classes(name: str, production_env: None, tmp_path: Path):
    document = yaml.safe_load((DEPLOY / name).read_text())
    for module, cls in classes_named(document):
        assert hasattr(importlib.import_module(module), cls), f"{name}: {module}.{cls} does not exist"

    # Dagster's own loader: the whole file against the instance schema, then each configurable part.
    ref = InstanceRef.from_dir(str(tmp_path), config_dir=str(DEPLOY), config_filename=name)
    storage, storage_config = processed(ref.storage_data, DagsterStorage)
    processed(ref.run_coordinator_data, RunCoordinator)
    launcher, _ = processed(ref.run_launcher_data, RunLauncher)
    processed(ref.compute_logs_data, ComputeLogManager)

    from dagster_postgres import DagsterPostgresStorage
    from dagster_postgres.utils import pg_url_from_config

    assert storage is DagsterPostgresStorage  # runs, event logs and schedules in one PostgreSQL database
    assert pg_url_from_config(storage_config) == "postgresql+psycopg2://dagster:s3cret@db.internal:5432/dagster"
    assert ref.run_coordinator_data.class_name == "QueuedRunCoordinator"
    expected_launcher = {"dagster.k8s.yaml": "K8sRunLauncher", "dagster.celery.yaml": "DefaultRunLauncher"}[name]
    assert launcher.__name__ == expected_launcher


def test_a_missing_environment_variable_fails_with_its_name(production_env: None, monkeypatch, tmp_path: Path):
    monkeypatch.delenv("DAGSTER_PG_HOST")
    ref = InstanceRef.from_dir(str(tmp_path), config_dir=str(DEPLOY), config_filename="dagster.k8s.yaml")
    with pytest.raises(AssertionError, match="DAGSTER_PG_HOST"):
        processed(ref.storage_data, DagsterStorage)


def k8s_launcher(tmp_path: Path):
    """The K8sRunLauncher of dagster.k8s.yaml, constructed; a kubeconfig stands in for the cluster's own."""
    from dagster_k8s import K8sRunLauncher

    ref = InstanceRef.from_dir(str(tmp_path), config_dir=str(DEPLOY), config_filename="dagster.k8s.yaml")
    _, config = processed(ref.run_launcher_data, RunLauncher)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG)
    return K8sRunLauncher(**{**config, "load_incluster_config": False, "kubeconfig_file": str(kubeconfig)})


def pod_of(launcher, run_k8s_config: Mapping | None = None):
    """The Kubernetes Job a run (or, with a step's config merged in, a step) becomes, built by dagster-k8s."""
    from dagster._core.storage.dagster_run import DagsterRun
    from dagster_k8s.container_context import K8sContainerContext
    from dagster_k8s.job import UserDefinedDagsterK8sConfig, construct_dagster_k8s_job

    context = launcher.get_container_context_for_run(DagsterRun(job_name="train", run_id="0" * 36))
    if run_k8s_config:
        context = context.merge(
            K8sContainerContext(run_k8s_config=UserDefinedDagsterK8sConfig.from_dict(run_k8s_config))
        )
    job = construct_dagster_k8s_job(
        job_config=context.get_k8s_job_config(None, launcher),
        args=["dagster", "api", "execute_run"],
        job_name="dagster-run-0",
        user_defined_k8s_config=context.run_k8s_config,
    )
    return job.spec.template.spec


def test_the_k8s_instance_builds_run_pods_with_the_database_the_volumes_and_the_image(
    production_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("FLYWHEEL_EXECUTOR", "k8s")
    monkeypatch.setenv("FLYWHEEL_EXECUTOR_CONFIG", "/app/deploy/dagster/k8s_job_executor.yaml")
    pod = pod_of(k8s_launcher(tmp_path))
    (container,) = pod.containers
    assert container.image == "registry.internal/flywheel-pipelines:1.0"
    env = {e.name: e for e in container.env}
    assert env["DAGSTER_PG_HOST"].value == "db.internal"  # passed through from the daemon's environment
    # The run pod rebuilds the job from code_location.py: with the same executor as the code server.
    assert env["FLYWHEEL_EXECUTOR"].value == "k8s"
    assert env["FLYWHEEL_EXECUTOR_CONFIG"].value == "/app/deploy/dagster/k8s_job_executor.yaml"
    assert env["DAGSTER_PG_PASSWORD"].value_from.secret_key_ref.name == "dagster-postgresql-secret"
    assert [s.secret_ref.name for s in container.env_from] == ["flywheel-secrets"]
    mounts = {m.name: m.mount_path for m in container.volume_mounts}
    assert mounts["flywheel-data"] == "/var/lib/flywheel" and mounts["dshm"] == "/dev/shm"
    assert env["DAGSTER_HOME"].value == "/opt/dagster/dagster_home"
    volumes = {v.name: v for v in pod.volumes}
    assert volumes["flywheel-data"].persistent_volume_claim.claim_name == "flywheel-data"
    assert volumes["dshm"].empty_dir.medium == "Memory"
    assert pod.service_account_name == "dagster"


def test_the_k8s_executor_gives_training_steps_gpus_and_is_valid_run_config_of_the_real_jobs(
    production_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    path = DEPLOY / "k8s_job_executor.yaml"
    run_config = yaml.safe_load(path.read_text())
    monkeypatch.setenv("FLYWHEEL_EXECUTOR", "k8s")
    defs = load_code_location()
    for job_name in JOBS:
        job = defs.resolve_job_def(job_name)
        assert job.executor_def.name == "k8s"
        ResolvedRunConfig.build(job, run_config)  # raises DagsterInvalidConfigError on any mistake
    per_step = run_config["execution"]["config"]["per_step_k8s_config"]
    for job_name in ("train", "retrain"):
        assert set(per_step) <= set(defs.resolve_job_def(job_name).graph.node_dict), "steps that do not exist"
    # The file as the executor's own configuration, named relative to the repository from anywhere.
    monkeypatch.setenv("FLYWHEEL_EXECUTOR_CONFIG", "deploy/dagster/k8s_job_executor.yaml")
    monkeypatch.chdir(tmp_path)
    ResolvedRunConfig.build(load_code_location().resolve_job_def("train"), {})

    launcher = k8s_launcher(tmp_path)
    training = pod_of(launcher, per_step["lora_adapter"])
    (container,) = training.containers
    assert container.resources.limits["nvidia.com/gpu"] == "4"
    assert {"flywheel-data", "dshm"} <= {v.name for v in training.volumes}  # the run launcher's volumes stay
    assert training.tolerations[0].key == "nvidia.com/gpu"
    (plain,) = pod_of(launcher, run_config["execution"]["config"]["step_k8s_config"]).containers
    assert "nvidia.com/gpu" not in (plain.resources.limits or {})


def test_the_celery_executor_block_is_run_config_of_the_real_jobs_and_starts_the_workers(
    production_env: None, monkeypatch: pytest.MonkeyPatch
):
    from dagster_celery.cli import get_validated_config

    path = DEPLOY / "celery_executor.yaml"
    run_config = yaml.safe_load(path.read_text())
    monkeypatch.setenv("FLYWHEEL_EXECUTOR", "celery")
    defs = load_code_location()
    for job_name in JOBS:
        assert defs.resolve_job_def(job_name).executor_def.name == "celery"
        ResolvedRunConfig.build(defs.resolve_job_def(job_name), run_config)
    monkeypatch.setenv("FLYWHEEL_EXECUTOR_CONFIG", str(path))
    ResolvedRunConfig.build(load_code_location().resolve_job_def("discover"), {})
    # `dagster-celery worker start -y` reads the same file: workers and runs agree on the broker.
    worker = get_validated_config(str(path))
    assert worker["broker"] == "amqp://guest@127.0.0.1:5672//"
    assert worker["include"] == ["flywheel_pipelines.definitions"]


def test_the_code_location_runs_steps_as_processes_unless_told_otherwise(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("FLYWHEEL_CONFIG", str(REPO_ROOT / "flywheel.yaml"))
    monkeypatch.delenv("FLYWHEEL_EXECUTOR", raising=False)
    monkeypatch.delenv("FLYWHEEL_EXECUTOR_CONFIG", raising=False)
    defs = load_code_location()
    assert {defs.resolve_job_def(name).executor_def.name for name in JOBS} == {"multiprocess"}
    monkeypatch.setenv("FLYWHEEL_EXECUTOR", "kubernetes")
    with pytest.raises(ValueError, match="expected multiprocess, k8s or celery"):
        load_code_location()
