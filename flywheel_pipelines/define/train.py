"""Define, step 3 (model): train a LoRA adapter with transformers + peft, every run tracked in MLflow.

The Trainer runs on accelerate, so the same code uses a CPU, one GPU, or several GPUs
(`accelerate launch -m flywheel_pipelines.define.train_cli ...`, see the README). Examples are packed several to a
row without attending to each other (define/packing.py), and only answer tokens are learnt. The eval split's loss is
measured every `eval_steps`, with a checkpoint each time: the best one is kept, training may stop early, and a run
that was killed resumes from its last checkpoint — in the same MLflow run — when it is started again.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import torch

from flywheel_pipelines.define.chat import tokenize_for_training
from flywheel_pipelines.define.packing import PackedCollator, for_packed_training, pack
from flywheel_pipelines.define.tracking import ADAPTER_ARTIFACT_PATH, Tracking, code_version
from flywheel_pipelines.settings import TrainingSettings

RUN_ID_FILE = "mlflow_run_id"
INPUTS_LOGGED_TAG = "flywheel.inputs_logged"

# The attention projections per architecture (config.model_type): what LoRA wraps unless configured. Models not
# listed fall back to peft's own table, then to every linear layer.
_QKVO = ["q_proj", "k_proj", "v_proj", "o_proj"]
_QKVO_FAMILIES = [
    "llama",
    "mistral",
    "mixtral",
    "qwen2",
    "qwen2_moe",
    "qwen3",
    "gemma",
    "gemma2",
    "gemma3_text",
    "starcoder2",
    "olmo",
    "olmo2",
    "granite",
    "deepseek_v2",
    "cohere",
    "stablelm",
]
ATTENTION_PROJECTIONS: dict[str, list[str]] = {
    **dict.fromkeys(_QKVO_FAMILIES, _QKVO),
    "opt": ["q_proj", "k_proj", "v_proj", "out_proj"],
    "gpt2": ["c_attn", "c_proj"],
    "gpt_bigcode": ["c_attn", "c_proj"],
    "gpt_neox": ["query_key_value", "dense"],
    "falcon": ["query_key_value", "dense"],
    "bloom": ["query_key_value", "dense"],
    "phi": ["q_proj", "k_proj", "v_proj", "dense"],
    "phi3": ["qkv_proj", "o_proj"],
    "codegen": ["qkv_proj", "out_proj"],
}


@dataclass(frozen=True)
class TrainedAdapter:
    path: Path
    name: str
    mlflow_run_id: str
    experiment_id: str
    train_examples: int
    steps: int
    final_loss: float | None
    best_eval_loss: float | None
    tokens_per_second: float
    padding_share: float
    seconds: float
    resumed_from_step: int | None
    stopped_early: bool
    target_modules: list[str] = field(default_factory=list)


def pick_dtype(dtype: str) -> torch.dtype:
    """`auto`: bfloat16 on a GPU that supports it, float32 elsewhere (CPU bf16 matmuls are slow)."""
    if dtype != "auto":
        return getattr(torch, dtype)
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def target_modules_for(model_type: str, configured: list[str] | str) -> list[str] | str:
    if configured != "auto":
        return list(configured)
    if model_type in ATTENTION_PROJECTIONS:
        return ATTENTION_PROJECTIONS[model_type]
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING

    return list(TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING.get(model_type, [])) or "all-linear"


class CompletionCollator:
    """Without packing: right-pads a batch; padding is masked out of attention and loss."""

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
        return {"input_ids": torch.tensor(ids), "labels": torch.tensor(labels), "attention_mask": torch.tensor(mask)}


class TokenCounter:
    """Counts what training really processes. The collator marks each batch with its real (non-padding) token
    count; the Trainer (`_CountingTrainer`) takes the mark off and adds it up when the batch is trained on — not
    when it is collated, which happens a batch ahead, and not for eval batches."""

    def __init__(self, collator: Any):
        self.collator = collator
        self.tokens = 0  # real tokens trained on
        self.slots = 0  # token positions trained on, padding included

    def __call__(self, rows: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = self.collator(rows)
        batch["real_tokens"] = torch.tensor(sum(len(r["input_ids"]) for r in rows))
        return batch

    def trained(self, batch: dict[str, torch.Tensor]) -> None:
        self.tokens += int(batch.pop("real_tokens"))
        self.slots += batch["input_ids"].numel()

    @property
    def padding_share(self) -> float:
        return 1 - self.tokens / self.slots if self.slots else 0.0


def _counting_trainer(trainer_class: type, counter: TokenCounter) -> type:
    """The Trainer, counting each batch's real tokens as it is trained on (see TokenCounter)."""

    class CountingTrainer(trainer_class):
        def training_step(self, model: Any, inputs: dict, *args: Any, **kwargs: Any) -> Any:
            counter.trained(inputs)
            return super().training_step(model, inputs, *args, **kwargs)

        def prediction_step(self, model: Any, inputs: dict, *args: Any, **kwargs: Any) -> Any:
            inputs.pop("real_tokens", None)
            return super().prediction_step(model, inputs, *args, **kwargs)

    return CountingTrainer


def hyperparameters(hp: TrainingSettings, base_model: str) -> dict[str, Any]:
    return {
        "base_model": base_model,
        **{k: str(v) if isinstance(v, list) else v for k, v in hp.model_dump().items()},
    }


def training_key(base_model: str, hp: TrainingSettings, data: str, kind: str, dtype: str) -> str:
    """What identifies one training — the model, the settings, the very rows trained and evaluated on (after task
    weighting) and the dtype: a re-run with the same key resumes its checkpoints instead of starting over."""
    what = {"base_model": base_model, "hp": hp.model_dump(), "data": data, "kind": kind, "dtype": dtype}
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _content_hash(examples: pd.DataFrame) -> str:
    """A version for examples that come without one: the hash of what is learnt from them."""
    texts = examples[["instruction", "input", "output"]].astype(str).values.tolist()
    return hashlib.sha256(json.dumps(texts, ensure_ascii=False).encode()).hexdigest()


def _features(tokenizer: Any, examples: pd.DataFrame, max_length: int) -> list[dict[str, list[int]]]:
    return [
        tokenize_for_training(tokenizer, r.instruction, r.input, r.output, max_length) for r in examples.itertuples()
    ]


def _rows(features: list[dict], hp: TrainingSettings) -> list[dict]:
    """Training rows: packed, or one example each."""
    if hp.packing:
        return [r.__dict__ for r in pack(features, hp.max_seq_length)]
    return features


def _last_complete_checkpoint(work_dir: Path) -> str | None:
    """The newest checkpoint that was written to the end (its trainer state is saved last); half-written ones, from a
    kill or a full disk during a save, are removed so that they never block a resume."""
    complete = None
    for folder in sorted(work_dir.glob("checkpoint-*"), key=lambda p: int(p.name.rsplit("-", 1)[-1])):
        if (folder / "trainer_state.json").exists() and any(folder.glob("adapter_model.*")):
            complete = folder
        else:
            shutil.rmtree(folder, ignore_errors=True)
    return str(complete) if complete else None


def packing_isolates(model: Any) -> bool:
    """Does this model keep packed examples apart? Two short examples packed in one row must give the second the
    logits it has alone; architectures whose attention mask ignores position ids fail this."""
    vocab = model.config.vocab_size
    first, second = [3 % vocab, 5 % vocab, 7 % vocab], [11 % vocab, 13 % vocab, 17 % vocab]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            packed = model(
                input_ids=torch.tensor([first + second], device=model.device),
                position_ids=torch.tensor([[0, 1, 2, 0, 1, 2]], device=model.device),
                use_cache=False,
            ).logits[0, 3:]
            alone = model(input_ids=torch.tensor([second], device=model.device), use_cache=False).logits[0]
    finally:
        model.train(was_training)
    return bool(torch.allclose(packed.float(), alone.float(), atol=1e-3, rtol=1e-3))


def _loss_curve(history: list[dict]) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4))
    train = [(h["step"], h["loss"]) for h in history if "loss" in h]
    evals = [(h["step"], h["eval_loss"]) for h in history if "eval_loss" in h]
    if train:
        axes.plot(*zip(*train, strict=True), label="train loss")
    if evals:
        axes.plot(*zip(*evals, strict=True), marker="o", label="eval loss")
    axes.set_xlabel("step")
    axes.set_ylabel("loss")
    axes.legend()
    axes.grid(alpha=0.3)
    return figure


class _OffRank:
    """What the MLflow calls become on the other processes of a multi-process (`accelerate launch`) training:
    nothing, so one training stays one run, logged by the main process."""

    def __getattr__(self, name: str) -> _OffRank:
        return self

    def __call__(self, *args: Any, **kwargs: Any) -> _OffRank:
        return self

    def __enter__(self) -> _OffRank:
        return self

    def __exit__(self, *exc: object) -> bool:
        return False


def _process_state() -> Any:
    """accelerate's view of this process. Made with `cpu` set where there is no GPU, as the Trainer makes it: the
    state is shared, and one made first without it would not see the other CPU processes of a torchrun launch."""
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def _world_size() -> int:
    return _process_state().num_processes


def is_main_process() -> bool:
    return _process_state().is_main_process


def train_lora(
    base_model_path: str | Path,
    train_examples: pd.DataFrame,
    hp: TrainingSettings,
    adapters_dir: Path,
    tracking: Tracking,
    *,
    eval_examples: pd.DataFrame | None = None,
    dtype: str = "auto",
    kind: str = "mix",
    dataset_source: str | None = None,
    dataset_version: str | None = None,
    dataset_card: Path | None = None,
    tags: dict[str, str] | None = None,
    callbacks: Sequence[Any] = (),
) -> TrainedAdapter:
    """Train one adapter on `train_examples` (instruction/input/output) and log it all as one MLflow run; resume the
    run's last checkpoint when an earlier attempt with the same base model, settings and data was interrupted."""
    from peft import LoraConfig, get_peft_model
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        EarlyStoppingCallback,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    base_model_path = Path(base_model_path)
    if train_examples.empty:
        raise ValueError("the train split is empty: nothing to train on (check sources and task settings)")
    torch.manual_seed(hp.seed)
    tokenizer = AutoTokenizer.from_pretrained(base_model_path)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(base_model_path, dtype=pick_dtype(dtype))
    for_packed_training(model)  # no KV cache in training, which packing relies on
    if hp.packing and not packing_isolates(model):
        # Some architectures (OPT, Falcon, Bloom) build their mask without position ids: packed examples would see
        # each other, so this model trains on one example per row instead.
        hp = hp.model_copy(update={"packing": False})
    features = _features(tokenizer, train_examples, hp.max_seq_length)
    rows = _rows(features, hp)
    evaluating = eval_examples is not None and len(eval_examples) > 0 and hp.eval_examples > 0
    eval_rows = None
    if evaluating:
        eval_features = _features(tokenizer, eval_examples.head(hp.eval_examples), hp.max_seq_length)
        eval_rows = _rows(eval_features, hp)
    targets = target_modules_for(model.config.model_type, hp.target_modules)
    lora = LoraConfig(
        r=hp.lora_r,
        lora_alpha=hp.lora_alpha,
        lora_dropout=hp.lora_dropout,
        target_modules=targets,
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, lora)

    version = dataset_version or _content_hash(train_examples)
    data = _content_hash(train_examples) + (_content_hash(eval_examples) if evaluating else "")
    key = training_key(str(base_model_path), hp, data, kind, dtype)
    work_dir = adapters_dir / ".training" / key
    work_dir.mkdir(parents=True, exist_ok=True)
    last_checkpoint = _last_complete_checkpoint(work_dir)
    run_id_file = work_dir / RUN_ID_FILE
    earlier_run = run_id_file.read_text().strip() if run_id_file.exists() else None
    main = is_main_process()  # only the main process of a multi-process launch talks to MLflow
    ml: Any = mlflow if main else _OffRank()
    experiment_id = tracking.experiment_id() if main else ""
    if main and earlier_run is not None and not tracking.run_exists(earlier_run):
        earlier_run = None  # the tracking store was reset since: start a new run, still from the checkpoint
    with ml.start_run(run_id=earlier_run, experiment_id=None if earlier_run else experiment_id, tags=tags or {}) as run:
        run_id = run.info.run_id if main else ""
        if main:
            run_id_file.write_text(run_id)
        resumed_from = int(Path(last_checkpoint).name.split("-")[-1]) if last_checkpoint else None
        if resumed_from is not None:
            ml.set_tag("flywheel.resumed_from_step", str(resumed_from))
        if earlier_run is None or (main and not tracking.run_has_tag(earlier_run, INPUTS_LOGGED_TAG)):
            _log_run_inputs(
                ml,
                model,
                hp,
                str(base_model_path),
                targets,
                features,
                rows,
                kind,
                train_examples,
                dataset_source,
                version,
                dataset_card,
                tokenizer,
            )
        counter = TokenCounter(
            PackedCollator(tokenizer.pad_token_id) if hp.packing else CompletionCollator(tokenizer.pad_token_id)
        )

        class LogToMlflow(TrainerCallback):
            started = time.perf_counter()
            tokens_at_last_log = 0

            def on_train_begin(self, args, state, control, **kwargs):
                self.started = time.perf_counter()  # not model loading or a checkpoint's restore

            def on_log(self, args, state, control, logs=None, **kwargs):
                numeric = {k: float(v) for k, v in (logs or {}).items() if isinstance(v, int | float)}
                metrics = {
                    (f"eval/{k.removeprefix('eval_')}" if k.startswith("eval_") else f"train/{k}"): v
                    for k, v in numeric.items()
                }
                now = time.perf_counter()
                if "loss" in numeric:
                    seconds = now - self.started
                    metrics["train/tokens_per_second"] = (counter.tokens - self.tokens_at_last_log) / max(seconds, 1e-9)
                    self.started, self.tokens_at_last_log = now, counter.tokens
                # Asynchronous: a store write per step must not hold up training (flushed when the run ends).
                ml.log_metrics(metrics, step=state.global_step, synchronous=False)

        args = TrainingArguments(
            output_dir=str(work_dir),
            per_device_train_batch_size=hp.per_device_batch_size,
            per_device_eval_batch_size=hp.per_device_batch_size,
            gradient_accumulation_steps=hp.gradient_accumulation_steps,
            learning_rate=hp.learning_rate,
            lr_scheduler_type=hp.lr_scheduler,
            num_train_epochs=hp.num_epochs,
            max_steps=hp.max_steps,
            warmup_steps=hp.warmup_steps,
            logging_steps=1,
            eval_strategy="steps" if evaluating else "no",
            eval_steps=hp.eval_steps,
            save_strategy="steps",
            save_steps=hp.eval_steps,
            save_total_limit=2,  # the best and the last, which resuming needs
            load_best_model_at_end=evaluating,
            metric_for_best_model="eval_loss",
            greater_is_better=False,
            report_to="none",
            seed=hp.seed,
            bf16=model.dtype == torch.bfloat16,
            fp16=model.dtype == torch.float16,
            remove_unused_columns=False,
            # Rows of like length batched together pad least (packed batches that would still pad much are laid
            # end to end instead, see PackedCollator).
            train_sampling_strategy="group_by_length",
            dataloader_num_workers=0,
            dataloader_pin_memory=torch.cuda.is_available(),
            disable_tqdm=True,
        )
        extra = [EarlyStoppingCallback(hp.early_stopping_patience)] if evaluating and hp.early_stopping_patience else []
        trainer = _counting_trainer(Trainer, counter)(
            model=model,
            args=args,
            train_dataset=rows,
            eval_dataset=eval_rows,
            data_collator=counter,
            callbacks=[LogToMlflow(), *extra, *callbacks],
        )
        started = time.perf_counter()
        result = trainer.train(resume_from_checkpoint=last_checkpoint)
        seconds = time.perf_counter() - started
        state = trainer.state
        losses = [h["loss"] for h in state.log_history if "loss" in h]
        eval_losses = [h["eval_loss"] for h in state.log_history if "eval_loss" in h]
        planned = hp.max_steps if hp.max_steps > 0 else state.max_steps
        stopped_early = bool(extra) and result.global_step < planned
        tokens_per_second = counter.tokens / seconds if seconds and counter.tokens else 0.0
        summary = {"train/steps": float(result.global_step)}
        if counter.tokens:  # an attempt resumed at the last step trains nothing: keep the figures it would overwrite
            summary |= {
                "train/tokens_per_second_run": tokens_per_second,
                "train/seconds": seconds,
                "train/padding_share": counter.padding_share,
            }
        if losses:
            summary["train/final_loss"] = float(losses[-1])
        if state.best_metric is not None:
            summary["eval/best_loss"] = float(state.best_metric)
        ml.log_metrics(summary)
        ml.set_tag("flywheel.stopped_early", str(stopped_early).lower())
        if state.best_model_checkpoint:
            ml.set_tag("flywheel.best_checkpoint_step", state.best_model_checkpoint.rsplit("-", 1)[-1])
        figure = _loss_curve(state.log_history)
        ml.log_figure(figure, "loss_curve.png")
        import matplotlib.pyplot as plt

        plt.close(figure)

        name = f"{kind}-{version[:12]}-{run_id[:8]}"
        adapter_path = adapters_dir / name
        if main:
            model.save_pretrained(adapter_path)  # the best checkpoint's weights when one was kept
            tokenizer.save_pretrained(adapter_path)
        ml.log_artifacts(str(adapter_path), artifact_path=ADAPTER_ARTIFACT_PATH)
        ml.set_tag("flywheel.adapter_name", name)
    if main:
        shutil.rmtree(work_dir, ignore_errors=True)  # finished: nothing left to resume

    return TrainedAdapter(
        path=adapter_path,
        name=name,
        mlflow_run_id=run_id,
        experiment_id=experiment_id,
        train_examples=len(features),
        steps=result.global_step,
        final_loss=float(losses[-1]) if losses else None,
        best_eval_loss=float(min(eval_losses)) if eval_losses else None,
        tokens_per_second=tokens_per_second,
        padding_share=counter.padding_share,
        seconds=seconds,
        resumed_from_step=resumed_from,
        stopped_early=stopped_early,
        target_modules=targets if isinstance(targets, list) else [targets],
    )


def _log_run_inputs(
    ml: Any,
    model: Any,
    hp: TrainingSettings,
    base_model: str,
    targets: list[str] | str,
    features: list[dict],
    rows: list[dict],
    kind: str,
    train_examples: pd.DataFrame,
    dataset_source: str | None,
    dataset_version: str,
    dataset_card: Path | None,
    tokenizer: Any,
) -> None:
    """Everything a run is started with: parameters, the dataset as an input, the resolved config, the tokenizer."""
    trainable, total = model.get_nb_trainable_parameters()
    params = hyperparameters(hp, base_model)
    params["target_modules"] = str(targets)
    ml.log_params(params)
    ml.log_params(
        {
            "adapter_kind": kind,
            "train_examples": len(features),
            "train_rows": len(rows),
            "trainable_parameters": trainable,
            "total_parameters": total,
            "world_size": _world_size(),
            "dtype": str(model.dtype).removeprefix("torch."),
        }
    )
    ml.log_params({f"examples.{task}": n for task, n in train_examples["task"].value_counts().items()})
    ml.set_tags({"flywheel.dataset_version": dataset_version, "flywheel.code_version": code_version()})
    with warnings.catch_warnings():
        # MLflow registers its local-file source class twice and warns that a path is ambiguous between them.
        warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted")
        dataset = ml.data.from_pandas(
            train_examples[["example_id", "task", "instruction", "input", "output", "origin"]],
            source=dataset_source,
            name="instruction_dataset",
            targets="output",
            digest=dataset_version[:32],  # MLflow keeps 36 characters; the whole version is the run's tag
        )
    ml.log_input(dataset, context="training")
    ml.log_dict(
        {"hyperparameters": params, "target_modules": targets, "kind": kind, "train_rows": len(rows)},
        "training_config.json",
    )
    if dataset_card is not None and dataset_card.exists():
        ml.log_artifact(str(dataset_card), artifact_path="dataset")
    _log_tokenizer(ml, tokenizer)
    ml.set_tag(INPUTS_LOGGED_TAG, "true")  # last: a run resumed after a kill before this point logs them again


def _log_tokenizer(ml: Any, tokenizer: Any) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save_pretrained(tmp)
        ml.log_artifacts(tmp, artifact_path="tokenizer")
