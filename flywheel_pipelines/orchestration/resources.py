"""Resources: the settings, the feedback store, MLflow, and the IO manager that stores asset values as files."""

import io
import json
import os
from functools import cached_property
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from upath import UPath

from flywheel_pipelines.define.distil.teacher import Teacher, TeacherCache, TeacherConfig
from flywheel_pipelines.define.tracking import Tracking
from flywheel_pipelines.deliver.feedback_store import FeedbackStore
from flywheel_pipelines.discover.quarantine import QuarantineStore
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


def open_teacher(settings: Settings) -> Teacher | None:
    """The teacher of flywheel.yaml's `teacher` section, with its persistent cache; None when there is none."""
    t = settings.teacher
    if t is None:
        return None
    config = TeacherConfig(
        base_url=t.base_url,
        model=t.model,
        api_key_env=t.api_key_env,
        max_concurrency=t.max_concurrency,
        max_retries=t.max_retries,
        timeout_s=t.timeout_s,
        temperature=t.temperature,
        max_tokens=t.max_tokens,
        repair_attempts=t.repair_attempts,
        input_cost_per_million=t.input_cost_per_million,
        output_cost_per_million=t.output_cost_per_million,
    )
    return Teacher(config, TeacherCache(settings.resolve(t.cache_path)))


def table_records(df: pd.DataFrame) -> list[dict]:
    """Plain Python records (lists, None) rather than numpy arrays and NaN: what the core's code and schemas expect."""
    return pa.Table.from_pandas(df, preserve_index=False).to_pylist() if len(df) else []


def asset_root(base: str | os.PathLike[str]) -> Path | UPath:
    """A local folder as a `Path`, a URL (`s3://bucket/flywheel/assets`, `gs://...`, `memory://...`, `file://...`) as
    a universal path on the fsspec filesystem of its scheme."""
    if isinstance(base, UPath | Path):
        return base
    text = os.fspath(base)
    return UPath(text) if "://" in text else Path(text)


def _local(path: Path | UPath) -> bool:
    """On the local disk, where a rename is atomic (a plain path or a file:// URL)."""
    return isinstance(path, Path) or path.protocol in ("file", "local")


class AssetFiles:
    """Where asset values live: `<base>/<asset>.parquet|json`, or `<base>/<asset>/<partition>.parquet|json`. The base
    is a local folder or any fsspec URL (s3://, gs://, ...), so object storage replaces the local disk by config."""

    def __init__(self, base_dir: str | os.PathLike[str]):
        self.base_dir = asset_root(base_dir)

    def path(self, asset: str, partition: str | None, suffix: str) -> Path | UPath:
        folder = self.base_dir / asset
        # The suffix is appended, not swapped in: a source named `web.v2` keeps its whole name.
        return folder / f"{partition}{suffix}" if partition else folder.with_suffix(suffix)

    def write(self, asset: str, partition: str | None, value: Any) -> Path | UPath:
        if isinstance(value, pd.DataFrame):
            path, data = self.path(asset, partition, ".parquet"), _parquet_bytes(value)
        elif isinstance(value, dict | list):
            path = self.path(asset, partition, ".json")
            data = json.dumps(value, indent=2, default=str).encode()
        else:
            raise TypeError(f"{asset}: cannot store a {type(value).__name__}")
        if _local(path):
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(path.name + ".partial")
            partial.write_bytes(data)
            os.replace(os.fspath(partial), os.fspath(path))  # readers never see a half-written file
        else:
            # One whole-object upload: object stores show the old object or the new one, never a part (a rename
            # there would be a copy). Their folders are implicit, so there is nothing to create first.
            path.write_bytes(data)
        return path

    def read(self, asset: str, partition: str | None = None) -> Any | None:
        """The stored value, or None when it was never materialised."""
        if (parquet := self.path(asset, partition, ".parquet")).exists():
            with parquet.open("rb") as f:
                return pd.read_parquet(f)
        if (js := self.path(asset, partition, ".json")).exists():
            return json.loads(js.read_bytes())
        return None

    def records(self, asset: str, partition: str | None = None) -> list[dict]:
        """A stored table as plain Python records (lists stay lists, not numpy arrays), empty when never
        materialised: the previous value an incremental run reuses."""
        path = self.path(asset, partition, ".parquet")
        if not path.exists():
            return []
        with path.open("rb") as f:
            return pq.read_table(f).to_pylist()

    def forget_partition(self, partition: str) -> list[Path | UPath]:
        if not self.base_dir.exists():
            return []
        removed = [
            p
            for folder in self.base_dir.iterdir()
            if folder.is_dir()
            for p in (folder / f"{partition}.parquet", folder / f"{partition}.json")
            if p.exists()
        ]
        for p in removed:
            p.unlink()
        return removed


def _parquet_bytes(df: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    df.to_parquet(buffer, index=False)
    return buffer.getvalue()


class FlywheelIOManager(dg.ConfigurableIOManager):
    """Tables as Parquet, small records as JSON, one file per asset (and per source partition) under `base_dir` — a
    local folder or an fsspec URL such as s3://bucket/flywheel/assets — readable without Dagster. An unpartitioned
    asset reading a partitioned one gets every source's rows at once."""

    base_dir: str

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        partition = context.asset_partition_key if context.has_asset_partitions else None
        path = AssetFiles(self.base_dir).write(context.asset_key.to_user_string(), partition, obj)
        context.add_output_metadata({"stored_at": dg.MetadataValue.path(str(path))})

    def load_input(self, context: dg.InputContext) -> Any:
        files = AssetFiles(self.base_dir)
        asset = context.asset_key.to_user_string()
        if not context.has_asset_partitions:
            value = files.read(asset)
            if value is None:
                raise FileNotFoundError(
                    f"{asset} has not been materialised yet (no file under {self.base_dir}); "
                    "materialise it first, e.g. with `make run`"
                )
            return value
        parts = [files.read(asset, key) for key in sorted(context.asset_partition_keys)]
        frames = [p for p in parts if isinstance(p, pd.DataFrame)]
        missing = len(parts) - len(frames)
        # An input declared with metadata {"missing_partitions": "empty"} (days without feedback) reads them as none.
        empty_ok = (context.definition_metadata or {}).get("missing_partitions") == "empty"
        if missing and not empty_ok:
            context.log.warning(f"{asset}: {missing} source partition(s) not materialised yet; reading the others")
        if not frames:
            if empty_ok:
                return pd.DataFrame()
            raise FileNotFoundError(f"{asset} has no materialised source partition under {self.base_dir}")
        return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


class QuarantineResource(dg.ConfigurableResource):
    """The `quarantined_assets` table."""

    database_url: str

    def store(self) -> QuarantineStore:
        return QuarantineStore(self.database_url)


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
        "io_manager": FlywheelIOManager(base_dir=str(settings.assets_path)),
        "quarantine": QuarantineResource(database_url=settings.quarantine_database_url),
    }
