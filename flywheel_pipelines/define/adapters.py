"""Which adapters one training makes: one for the weighted task mix, or one per task; each trained, tracked in its
own MLflow experiment and registered as a new version (alias `challenger`) of its own registered model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from flywheel_pipelines.define.datasets import dataset_digest, mix_tasks
from flywheel_pipelines.define.tracking import MIX, AdapterVersion, Tracking, register_adapter
from flywheel_pipelines.define.train import TrainedAdapter, is_main_process, train_lora
from flywheel_pipelines.settings import TrainingSettings


@dataclass(frozen=True)
class AdapterRun:
    kind: str  # "mix" or a task
    trained: TrainedAdapter
    version: AdapterVersion | None  # None on the other processes of a multi-process launch: the main one registers
    registered_model: str

    def as_record(self) -> dict:
        t = self.trained
        return {
            "kind": self.kind,
            "name": t.name,
            "path": str(t.path),
            "registered_model": self.registered_model,
            "version": self.version.version if self.version else None,
            "mlflow_run_id": t.mlflow_run_id,
            "experiment_id": t.experiment_id,
            "train_examples": t.train_examples,
            "steps": t.steps,
            "final_loss": t.final_loss,
            "best_eval_loss": t.best_eval_loss,
            "tokens_per_second": round(t.tokens_per_second, 1),
            "padding_share": round(t.padding_share, 4),
            "resumed_from_step": t.resumed_from_step,
            "stopped_early": t.stopped_early,
        }


def _records(df: pd.DataFrame) -> list[dict]:
    return [{k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()} for row in df.to_dict("records")]


def train_adapters(
    dataset: pd.DataFrame,
    base_model_path: str | Path,
    hp: TrainingSettings,
    weights: Mapping[str, float],
    adapters_dir: Path,
    tracking: Tracking,
    *,
    dtype: str = "auto",
    dataset_source: str | None = None,
    dataset_card: Path | None = None,
    tags: Mapping[str, str] | None = None,
) -> list[AdapterRun]:
    """Train what `hp.adapters` asks for on the dataset's train split, the eval split giving the eval loss; the
    primary adapter (the mix, or `hp.primary_task`'s) comes first."""
    version = dataset_digest(_records(dataset))
    train, evaluation = (dataset[dataset["split"] == s].reset_index(drop=True) for s in ("train", "eval"))
    if hp.adapters == MIX:
        plan = [(MIX, mix_tasks(train, weights, seed=hp.seed), evaluation)]
    else:
        tasks = sorted(set(train["task"]), key=lambda t: (t != hp.primary_task, t))
        if hp.primary_task not in tasks:
            raise ValueError(
                f"training.primary_task {hp.primary_task!r} has no train examples: it is the adapter that is scored "
                f"and promoted (tasks with examples: {', '.join(tasks) or 'none'})"
            )
        plan = [
            (t, train[train["task"] == t].reset_index(drop=True), evaluation[evaluation["task"] == t]) for t in tasks
        ]
    runs = []
    main = is_main_process()
    for kind, train_part, eval_part in plan:
        kind_tracking = tracking.for_adapter(kind)
        trained = train_lora(
            base_model_path,
            train_part.reset_index(drop=True),
            hp,
            adapters_dir,
            kind_tracking,
            eval_examples=eval_part.reset_index(drop=True),
            dtype=dtype,
            kind=kind,
            dataset_source=dataset_source,
            dataset_version=version,
            dataset_card=dataset_card,
            tags={**(tags or {}), "flywheel.adapter_kind": kind},
        )
        registered = register_adapter(kind_tracking, trained.mlflow_run_id, trained.path) if main else None
        runs.append(AdapterRun(kind, trained, registered, kind_tracking.registered_model))
    return runs


def launch_training(
    config_path: Path,
    hp: TrainingSettings,
    tracking_uri: str,
    tags: Mapping[str, str],
    log: Callable[[str], None] = print,
    dtype: str | None = None,
) -> list[dict]:
    """Run `flywheel train` on `hp.num_processes` processes — one per GPU under `accelerate launch`, or CPU processes
    under torchrun where there is no GPU — and return the adapters' records, which the main process writes."""
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        training_json, output = Path(tmp) / "training.json", Path(tmp) / "adapters.json"
        training_json.write_text(hp.model_dump_json())
        # GPUs: `accelerate launch --multi_gpu`; CPU processes: torchrun, which accelerate itself uses underneath.
        launcher = (
            ["-m", "accelerate.commands.launch", "--multi_gpu", "--num_machines", "1"]
            if torch.cuda.is_available()
            else ["-m", "torch.distributed.run", "--nnodes", "1"]
        )
        command = [
            sys.executable, *launcher,
            "--num_processes" if torch.cuda.is_available() else "--nproc_per_node", str(hp.num_processes),
            "-m", "flywheel_pipelines.cli", "--config", str(config_path),
            "train", "--training-json", str(training_json), "--output", str(output),
            *(["--dtype", dtype] if dtype else []),
            *(arg for key, value in tags.items() for arg in ("--tag", f"{key}={value}")),
        ]  # fmt: skip
        log("launching: " + " ".join(command))
        # The store this process resolved, not whatever MLFLOW_TRACKING_URI the environment happens to carry.
        env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri}
        finished = subprocess.run(command, capture_output=True, text=True, env=env)
        if finished.returncode != 0 or not output.exists():
            raise RuntimeError(
                f"the {hp.num_processes}-process training failed (exit {finished.returncode}):\n"
                f"{finished.stderr.strip()[-4000:]}"
            )
        return json.loads(output.read_text())
