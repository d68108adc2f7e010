"""MLflow: the experiment every training run is logged to, and the registry that versions adapters.

Each trained adapter becomes a version of one registered model; the alias `champion` marks the one served.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

import mlflow
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

CHAMPION_ALIAS = "champion"
CHALLENGER_ALIAS = "challenger"  # the newest version, until eval_scores and champion_adapter have judged it
MIX = "mix"
ADAPTER_ARTIFACT_PATH = "adapter"

# Alembic logs every migration of a new SQLite store at INFO; nobody needs that in a Dagster step log.
logging.getLogger("alembic").setLevel(logging.WARNING)


@dataclass(frozen=True)
class Tracking:
    """Where runs and adapter versions are tracked."""

    tracking_uri: str
    artifact_location: str
    experiment: str
    registered_model: str

    def client(self) -> MlflowClient:
        mlflow.set_tracking_uri(self.tracking_uri)
        return MlflowClient(tracking_uri=self.tracking_uri)

    def for_adapter(self, kind: str) -> Tracking:
        """The experiment and registered model of one kind of adapter: the task mix uses the configured names,
        a per-task adapter `<name>-<task>`."""
        if kind == MIX:
            return self
        return replace(self, experiment=f"{self.experiment}-{kind}", registered_model=f"{self.registered_model}-{kind}")

    def run_exists(self, run_id: str) -> bool:
        """Is the run there to be continued (a run deleted in the UI is not)?"""
        try:
            return self.client().get_run(run_id).info.lifecycle_stage != "deleted"
        except MlflowException:
            return False

    def run_has_tag(self, run_id: str, tag: str) -> bool:
        return tag in self.client().get_run(run_id).data.tags

    def experiment_id(self) -> str:
        """The experiment, created with an explicit artifact location (never ./mlruns of whatever cwd)."""
        client = self.client()
        found = client.get_experiment_by_name(self.experiment)
        if found is not None:
            return found.experiment_id
        try:
            return client.create_experiment(self.experiment, artifact_location=self.artifact_location)
        except MlflowException:  # created by a concurrent step in the meantime
            return client.get_experiment_by_name(self.experiment).experiment_id


@dataclass(frozen=True)
class AdapterVersion:
    """One registered adapter version and the local folder that holds it."""

    version: str
    run_id: str
    adapter_path: Path
    tags: dict[str, str]


def _as_adapter_version(mv: ModelVersion) -> AdapterVersion:
    return AdapterVersion(str(mv.version), mv.run_id or "", Path(mv.tags.get("adapter_path", "")), dict(mv.tags))


def register_adapter(tracking: Tracking, run_id: str, adapter_path: Path) -> AdapterVersion:
    """A new version of the registered model, pointing at the adapter the run logged as an artifact."""
    client = tracking.client()
    try:
        client.create_registered_model(tracking.registered_model)
    except MlflowException as err:
        if "RESOURCE_ALREADY_EXISTS" not in str(err.error_code):
            raise
    source = f"{client.get_run(run_id).info.artifact_uri}/{ADAPTER_ARTIFACT_PATH}"
    mv = client.create_model_version(
        tracking.registered_model,
        source=source,
        run_id=run_id,
        tags={"adapter_path": str(adapter_path), "adapter_name": adapter_path.name},
    )
    client.set_registered_model_alias(tracking.registered_model, CHALLENGER_ALIAS, mv.version)
    return _as_adapter_version(mv)


def code_version() -> str:
    """The git commit of the code that trains (with `-dirty` for uncommitted changes), else the package version."""
    import subprocess
    from importlib.metadata import PackageNotFoundError, version

    here = Path(__file__).resolve().parent
    try:
        described = subprocess.run(
            ["git", "-C", str(here), "describe", "--always", "--dirty", "--abbrev=12"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if described.returncode == 0 and described.stdout.strip():
            return described.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        return f"flywheel-pipelines {version('flywheel-pipelines')}"
    except PackageNotFoundError:
        return "unknown"


def current_champion(tracking: Tracking) -> AdapterVersion | None:
    try:
        mv = tracking.client().get_model_version_by_alias(tracking.registered_model, CHAMPION_ALIAS)
    except MlflowException:
        return None  # no registered model yet, or no champion alias yet
    return _as_adapter_version(mv)


def promote(tracking: Tracking, version: str, reason: str) -> None:
    client = tracking.client()
    client.set_registered_model_alias(tracking.registered_model, CHAMPION_ALIAS, version)
    client.set_model_version_tag(tracking.registered_model, version, "promotion_reason", reason)


def record_decision(tracking: Tracking, version: str, run_id: str, promoted: bool, reason: str) -> None:
    """The promotion decision on the version and on its training run, where the MLflow UI shows it."""
    client = tracking.client()
    outcome = "promoted" if promoted else "refused"
    client.set_model_version_tag(tracking.registered_model, version, "promotion", outcome)
    client.set_model_version_tag(tracking.registered_model, version, "promotion_reason", reason[:5000])
    client.set_tag(run_id, "flywheel.promotion", outcome)
    client.set_tag(run_id, "flywheel.promotion_reason", reason[:5000])


def ensure_local_adapter(tracking: Tracking, version: AdapterVersion, cache_dir: Path) -> Path:
    """The adapter folder of a version: its recorded path when present here, else downloaded from MLflow."""
    if (version.adapter_path / "adapter_config.json").exists():
        return version.adapter_path
    target = cache_dir / f"v{version.version}"
    if not (target / ADAPTER_ARTIFACT_PATH / "adapter_config.json").exists():
        tracking.client().download_artifacts(version.run_id, ADAPTER_ARTIFACT_PATH, str(target))
    return target / ADAPTER_ARTIFACT_PATH


def _metric_name(*parts: str) -> str:
    # MLflow metric names allow letters, digits, _ - . / and spaces: pass@1 becomes pass_at_1.
    return "/".join(p.replace("@", "_at_") for p in parts)


def log_evaluation(
    tracking: Tracking,
    run_id: str,
    scores: list[dict],
    samples: list[dict],
    comparison_markdown: str = "",
    params: dict[str, str] | None = None,
) -> None:
    """Attach eval scores (as metrics, a table and a markdown comparison of the models) and every scored sample to
    the adapter's training run."""
    import pandas as pd

    tracking.client()
    with mlflow.start_run(run_id=run_id):
        mlflow.log_metrics({_metric_name("eval", r["model"], r["suite"], r["metric"]): r["value"] for r in scores})
        mlflow.log_table(pd.DataFrame(scores), artifact_file="eval/scores.json")
        if samples:
            mlflow.log_table(pd.DataFrame(samples), artifact_file="eval/samples.json")
        if comparison_markdown:
            mlflow.log_text(comparison_markdown, "eval/comparison.md")
        if params:
            mlflow.set_tags({f"eval.{k}": v for k, v in params.items()})
