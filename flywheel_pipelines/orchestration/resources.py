"""Resources: the settings, the feedback store, MLflow, and the IO manager that stores asset values as files."""

import json
import os
from functools import cached_property
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd

from flywheel_pipelines.define.tracking import Tracking
from flywheel_pipelines.deliver.feedback_store import FeedbackStore
from flywheel_pipelines.settings import Settings, load_settings


class FlywheelSettings(dg.ConfigurableResource):
    """flywheel.yaml, read once per process."""

    config_path: str

    @cached_property
    def settings(self) -> Settings:
        return load_settings(self.config_path)


class FeedbackStoreResource(dg.ConfigurableResource):
    """The SQL feedback store (SQLite file by default; PostgreSQL for scale-out)."""

    database_url: str

    def store(self) -> FeedbackStore:
        return FeedbackStore(self.database_url)


class MlflowTracking(dg.ConfigurableResource):
    tracking_uri: str
    artifact_location: str
    experiment: str
    registered_model: str

    def tracking(self) -> Tracking:
        return Tracking(self.tracking_uri, self.artifact_location, self.experiment, self.registered_model)


class FlywheelIOManager(dg.ConfigurableIOManager):
    """Tables as Parquet, small records as JSON, one file per asset under `base_dir` — readable without Dagster."""

    base_dir: str

    def _path(self, key: dg.AssetKey, suffix: str) -> Path:
        return Path(self.base_dir, *key.path).with_suffix(suffix)

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        if isinstance(obj, pd.DataFrame):
            path = self._path(context.asset_key, ".parquet")
            write = lambda p: obj.to_parquet(p, index=False)  # noqa: E731
        elif isinstance(obj, dict | list):
            path = self._path(context.asset_key, ".json")
            write = lambda p: p.write_text(json.dumps(obj, indent=2, default=str))  # noqa: E731
        else:
            raise TypeError(f"{context.asset_key.to_user_string()}: cannot store a {type(obj).__name__}")
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        write(partial)
        os.replace(partial, path)  # readers never see a half-written file
        context.add_output_metadata({"stored_at": dg.MetadataValue.path(str(path))})

    def load_input(self, context: dg.InputContext) -> Any:
        key = context.asset_key
        if (parquet := self._path(key, ".parquet")).exists():
            return pd.read_parquet(parquet)
        if (js := self._path(key, ".json")).exists():
            return json.loads(js.read_text())
        raise FileNotFoundError(
            f"{key.to_user_string()} has not been materialised yet (no file under {self.base_dir}); "
            "materialise it first, e.g. with `make run`"
        )


def build_resources(settings: Settings) -> dict[str, Any]:
    config_path = str(settings.source) if settings.source else ""
    return {
        "flywheel": FlywheelSettings(config_path=config_path),
        "feedback_store": FeedbackStoreResource(database_url=settings.feedback_database_url),
        "mlflow_tracking": MlflowTracking(
            tracking_uri=settings.mlflow_tracking_uri,
            artifact_location=settings.mlflow_artifact_location,
            experiment=settings.tracking.experiment,
            registered_model=settings.tracking.registered_model,
        ),
        "io_manager": FlywheelIOManager(base_dir=str(settings.data_path / "assets")),
    }
