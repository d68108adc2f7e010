"""Define, step 3 (model): train a LoRA adapter with transformers + peft, every run tracked in MLflow.

The Trainer runs on accelerate, so the same code uses a CPU, one GPU, or several (`accelerate launch`).
The adapter is saved in the standard PEFT format and loads with `PeftModel.from_pretrained`.
"""

from __future__ import annotations

import shutil
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import torch

from flywheel_pipelines.define.chat import tokenize_for_training
from flywheel_pipelines.define.tracking import ADAPTER_ARTIFACT_PATH, Tracking
from flywheel_pipelines.settings import TrainingSettings


@dataclass(frozen=True)
class TrainedAdapter:
    path: Path
    mlflow_run_id: str
    train_examples: int
    steps: int
    final_loss: float | None
    tokens_per_second: float
    seconds: float


def pick_dtype(dtype: str) -> torch.dtype:
    """`auto`: bfloat16 on a GPU that supports it, float32 elsewhere (CPU bf16 matmuls are slow)."""
    if dtype != "auto":
        return getattr(torch, dtype)
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


class CompletionCollator:
    """Right-pads a batch; padding is masked out of attention and loss."""

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, features: Sequence[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        width = max(len(f["input_ids"]) for f in features)
        ids, labels, mask = [], [], []
        for f in features:
            pad = width - len(f["input_ids"])
            ids.append(f["input_ids"] + [self.pad_token_id] * pad)
            labels.append(f["labels"] + [-100] * pad)
            mask.append([1] * len(f["input_ids"]) + [0] * pad)
        return {
            "input_ids": torch.tensor(ids),
            "labels": torch.tensor(labels),
            "attention_mask": torch.tensor(mask),
        }


def hyperparameters(hp: TrainingSettings, base_model: str) -> dict[str, Any]:
    return {
        "base_model": base_model,
        **{k: str(v) if isinstance(v, list) else v for k, v in hp.model_dump().items()},
    }


def train_lora(
    base_model_path: str | Path,
    train_examples: pd.DataFrame,
    hp: TrainingSettings,
    adapters_dir: Path,
    tracking: Tracking,
    *,
    dtype: str = "auto",
    dataset_source: str | None = None,
    dataset_version: str | None = None,
    tags: dict[str, str] | None = None,
) -> TrainedAdapter:
    """Train one adapter on `train_examples` (instruction/input/output) and log it all as one MLflow run."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainerCallback, TrainingArguments

    base_model_path = Path(base_model_path)
    if train_examples.empty:
        raise ValueError("the train split is empty: nothing to train on (check sources and task settings)")
    torch.manual_seed(hp.seed)
    tokenizer = AutoTokenizer.from_pretrained(base_model_path)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    features = [
        tokenize_for_training(tokenizer, r.instruction, r.input, r.output, hp.max_seq_length)
        for r in train_examples.itertuples()
    ]
    model = AutoModelForCausalLM.from_pretrained(base_model_path, dtype=pick_dtype(dtype))
    lora = LoraConfig(
        r=hp.lora_r,
        lora_alpha=hp.lora_alpha,
        lora_dropout=hp.lora_dropout,
        target_modules=list(hp.target_modules),
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, lora)

    experiment_id = tracking.experiment_id()
    with mlflow.start_run(experiment_id=experiment_id, tags=tags or {}) as run:
        run_id = run.info.run_id
        trainable, total = model.get_nb_trainable_parameters()
        mlflow.log_params(hyperparameters(hp, str(base_model_path)))
        mlflow.log_params(
            {"train_examples": len(features), "trainable_parameters": trainable, "total_parameters": total}
        )
        with warnings.catch_warnings():
            # MLflow registers its local-file source class twice and warns that a path is ambiguous between them.
            warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted")
            dataset = mlflow.data.from_pandas(
                train_examples[["example_id", "task", "instruction", "input", "output", "origin"]],
                source=dataset_source,
                name="instruction_dataset",
                targets="output",
                # MLflow stores at most 36 characters of a digest; the whole version is the run's tag.
                digest=dataset_version[:32] if dataset_version else None,
            )
        mlflow.log_input(dataset, context="training")
        if dataset_version:
            mlflow.set_tag("flywheel.dataset_version", dataset_version)
        mlflow.log_params({f"examples.{task}": n for task, n in train_examples["task"].value_counts().items()})

        class LogToMlflow(TrainerCallback):
            def on_log(self, args, state, control, logs=None, **kwargs):
                numeric = {k: float(v) for k, v in (logs or {}).items() if isinstance(v, int | float)}
                mlflow.log_metrics({f"train/{k}": v for k, v in numeric.items()}, step=state.global_step)

        work_dir = adapters_dir / f".{run_id}.trainer"
        args = TrainingArguments(
            output_dir=str(work_dir),
            per_device_train_batch_size=hp.per_device_batch_size,
            gradient_accumulation_steps=hp.gradient_accumulation_steps,
            learning_rate=hp.learning_rate,
            num_train_epochs=hp.num_epochs,
            max_steps=hp.max_steps,
            warmup_steps=hp.warmup_steps,
            logging_steps=1,
            save_strategy="no",
            report_to="none",
            seed=hp.seed,
            bf16=model.dtype == torch.bfloat16,
            fp16=model.dtype == torch.float16,
            remove_unused_columns=False,
            dataloader_num_workers=0,
            dataloader_pin_memory=torch.cuda.is_available(),
            disable_tqdm=True,
        )
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=features,
            data_collator=CompletionCollator(tokenizer.pad_token_id),
            callbacks=[LogToMlflow()],
        )
        started = time.perf_counter()
        result = trainer.train()
        seconds = time.perf_counter() - started
        steps = result.global_step
        tokens_seen = _tokens_trained(features, steps, hp)
        losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
        summary = {
            "train/tokens_per_second": tokens_seen / seconds if seconds else 0.0,
            "train/seconds": seconds,
            "train/steps": float(steps),
        }
        if losses:
            summary["train/final_loss"] = float(losses[-1])
        mlflow.log_metrics(summary)

        adapter_path = adapters_dir / run_id
        model.save_pretrained(adapter_path)
        tokenizer.save_pretrained(adapter_path)
        mlflow.log_artifacts(str(adapter_path), artifact_path=ADAPTER_ARTIFACT_PATH)
        shutil.rmtree(work_dir, ignore_errors=True)

    return TrainedAdapter(
        path=adapter_path,
        mlflow_run_id=run_id,
        train_examples=len(features),
        steps=steps,
        final_loss=float(losses[-1]) if losses else None,
        tokens_per_second=summary["train/tokens_per_second"],
        seconds=seconds,
    )


def _tokens_trained(features: list[dict[str, list[int]]], steps: int, hp: TrainingSettings) -> int:
    """Real (unpadded) tokens processed: the examples cycled through in order for `steps` batches."""
    per_step = hp.per_device_batch_size * hp.gradient_accumulation_steps * max(torch.cuda.device_count(), 1)
    lengths = [len(f["input_ids"]) for f in features]
    return sum(lengths[i % len(lengths)] for i in range(steps * per_step))
