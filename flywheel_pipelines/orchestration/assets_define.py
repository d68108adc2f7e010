"""Define (steps 3-4): instruction data, the base model, LoRA adapters, their scores, and the champion."""

import json

import dagster as dg
import pandas as pd
from pydantic import Field, ValidationError

from flywheel_pipelines.define.adapters import launch_training, train_adapters
from flywheel_pipelines.define.base_model import describe, resolve_base_model
from flywheel_pipelines.define.champion import decide_promotion
from flywheel_pipelines.define.datasets import benchmark_texts, write_dataset
from flywheel_pipelines.define.distil.dataset import build_dataset, quarantine_rows, teacher_report, templates_used
from flywheel_pipelines.define.evaluate.scoring import ModelUnderTest, evaluate_models, score_of
from flywheel_pipelines.define.tasks import EXAMPLE_FIELDS
from flywheel_pipelines.define.tracking import (
    MIX,
    current_champion,
    ensure_local_adapter,
    log_evaluation,
    promote,
)
from flywheel_pipelines.orchestration.previews import counts, reasons_preview, table_preview
from flywheel_pipelines.orchestration.resources import (
    AssetFiles,
    FlywheelSettings,
    MlflowTracking,
    QuarantineResource,
    open_teacher,
    table_records,
)
from flywheel_pipelines.settings import Settings, TrainingSettings

GROUP = "define"
STAGE = "instruction_dataset"


class InstructionDatasetConfig(dg.Config):
    rebuild_tasks: list[str] = Field(
        default=[],
        description="Rebuild only these tasks of the catalogue; the other enabled tasks keep their stored examples. "
        "Empty: rebuild every enabled task.",
    )


@dg.asset(group_name=GROUP, kinds={"parquet", "huggingface"})
def instruction_dataset(
    context: dg.AssetExecutionContext,
    config: InstructionDatasetConfig,
    flywheel: FlywheelSettings,
    quarantine: QuarantineResource,
    curated_assets: pd.DataFrame,
    feedback_examples: pd.DataFrame,
    base_model: dict,
) -> dg.Output[pd.DataFrame]:
    """The task catalogue (code_generation, test_generation, docstring_generation, user_story, api_design,
    api_to_user_story) as instruction / input / output examples: reverse-generated from the curated assets, answered
    by the teacher where configured, merged with users' edits, validated, split by group and decontaminated against
    the eval split and HumanEval. Written as a Hugging Face dataset folder (Parquet, card, Alpaca and chat exports)
    whose digest is the dataset version that training logs to MLflow."""
    from transformers import AutoTokenizer

    settings = flywheel.settings
    stored = AssetFiles(settings.assets_path).read("instruction_dataset") if config.rebuild_tasks else None
    teacher = open_teacher(settings)
    try:
        build = build_dataset(
            table_records(curated_assets),
            table_records(feedback_examples),
            settings.tasks,
            benchmarks=benchmark_texts(),
            teacher=teacher,
            rebuild=config.rebuild_tasks or None,
            stored=table_records(stored) if isinstance(stored, pd.DataFrame) else None,
        )
    finally:
        if teacher is not None:
            teacher.close()
    if not build.examples:
        raise dg.Failure("no instruction examples: check `sources` and `tasks` in flywheel.yaml")
    store = quarantine.store()
    try:
        rejected = quarantine_rows(build, store.rows(stage=STAGE) if build.kept else ())
        for source in sorted(
            {s.name for s in settings.sources} | {"teacher", "feedback"} | {q.source for q in rejected}
        ):
            store.replace(source, STAGE, [q for q in rejected if q.source == source], context.run.run_id)
    finally:
        store.dispose()
    skipped = [s for built in build.built.values() for s in built.skipped]
    tokenizer = AutoTokenizer.from_pretrained(base_model["path"])
    report = teacher_report(build)
    files = write_dataset(
        build.examples,
        settings.data_path / "datasets" / "instruction_dataset",
        name="instruction_dataset",
        count_tokens=lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"]),
        templates=templates_used(build.examples),
        sources=sorted({e["source"] for e in build.examples}),
        contamination=build.contamination,
        extra={f"teacher {k}": v for k, v in report.items()},
    )
    df = pd.DataFrame(build.examples, columns=list(EXAMPLE_FIELDS))
    return dg.Output(
        df,
        metadata={
            "dataset_version": files.digest,
            "examples": len(df),
            "by_task": counts(df["task"]),
            "by_split": counts(df["split"]),
            "by_generation": counts(df["generation"]),
            "rebuilt_tasks": dg.MetadataValue.json(sorted(build.built)),
            "kept_tasks": dg.MetadataValue.json(build.kept),
            "unanswered_without_teacher": sum(b.unanswered for b in build.built.values()),
            "skipped_by_limits": len(skipped),
            "skipped_reasons": counts(f"{s.task}: {s.reason}" for s in skipped),
            "quarantined": len(rejected),
            "quarantine_reasons": reasons_preview(rejected),
            "decontaminated": len(build.contamination),
            "new_topics": dg.MetadataValue.json(build.new_topics),
            **{f"teacher/{k}": v for k, v in report.items()},
            "card": dg.MetadataValue.path(str(files.card)),
            "folder": dg.MetadataValue.path(str(files.folder)),
            "preview": table_preview(df, ["task", "split", "generation", "instruction", "output"]),
        },
    )


@dg.asset(group_name=GROUP, kinds={"huggingface"})
def base_model(flywheel: FlywheelSettings) -> dg.Output[dict]:
    """The configured base model as a local transformers folder — a hub id (by revision), a folder, or a GGUF file
    (a path or `package:<module>/<file>`), converted once into a folder named by its content — with what it is:
    architecture, parameters, dtype, tokenizer, chat template."""
    settings = flywheel.settings
    resolved = resolve_base_model(
        settings.base_model_reference, settings.data_path / "models", settings.base_model.revision
    )
    value = describe(resolved)
    metadata = {k: v for k, v in value.items() if v is not None}
    if value["chat_template_preview"]:
        metadata["chat_template_preview"] = dg.MetadataValue.md(f"```jinja\n{value['chat_template_preview']}\n```")
    return dg.Output(value, metadata={**metadata, "path": dg.MetadataValue.path(value["path"])})


class LoraTrainingConfig(dg.Config):
    """Overrides of flywheel.yaml's `training` for one run (launchpad); unset fields keep the configured value."""

    learning_rate: float | None = None
    lr_scheduler: str | None = None
    max_steps: int | None = None
    num_epochs: float | None = None
    lora_r: int | None = None
    lora_alpha: int | None = None
    lora_dropout: float | None = None
    target_modules: list[str] | None = None
    per_device_batch_size: int | None = None
    gradient_accumulation_steps: int | None = None
    max_seq_length: int | None = None
    warmup_steps: int | None = None
    seed: int | None = None
    packing: bool | None = None
    eval_steps: int | None = None
    eval_examples: int | None = None
    early_stopping_patience: int | None = None
    adapters: str | None = None
    primary_task: str | None = None
    num_processes: int | None = None
    dtype: str | None = None  # base_model.dtype for this run: auto, float32, bfloat16, float16

    def applied_to(self, training: TrainingSettings) -> TrainingSettings:
        if self.dtype not in (None, "auto", "float32", "bfloat16", "float16"):
            raise dg.Failure(f"lora_adapter run config: dtype {self.dtype!r} is not auto, float32, bfloat16 or float16")
        overrides = {k: v for k, v in self.model_dump(exclude={"dtype"}).items() if v is not None}
        try:
            return TrainingSettings.model_validate({**training.model_dump(), **overrides})
        except ValidationError as err:
            raise dg.Failure(f"lora_adapter run config is not valid: {err}") from None


def _run_link(settings: Settings, experiment_id: str, run_id: str) -> dg.MetadataValue:
    return dg.MetadataValue.url(f"{settings.tracking.mlflow_ui_url}/#/experiments/{experiment_id}/runs/{run_id}")


@dg.asset(group_name=GROUP, kinds={"pytorch", "mlflow"})
def lora_adapter(
    context: dg.AssetExecutionContext,
    config: LoraTrainingConfig,
    flywheel: FlywheelSettings,
    mlflow_tracking: MlflowTracking,
    instruction_dataset: pd.DataFrame,
    base_model: dict,
) -> dg.Output[dict]:
    """LoRA adapters (one for the task mix, or one per task) trained on the train split with the eval split's loss
    watched; each an MLflow run (resumed after an interruption) and a new registered version, alias `challenger`."""
    settings = flywheel.settings
    hp = config.applied_to(settings.training)
    dataset_dir = settings.data_path / "datasets" / "instruction_dataset"
    tags = {
        "dagster.run_id": context.run.run_id,
        "dagster.run_url": f"{settings.tracking.dagster_ui_url}/runs/{context.run.run_id}",
        "dagster.asset_key": context.asset_key.to_user_string(),
        "flywheel.base_model": base_model["reference"],
    }
    if hp.num_processes > 1:  # several GPUs: the same training, started by `accelerate launch`
        if settings.source is None:
            raise dg.Failure("training.num_processes > 1 launches `flywheel train`, which needs flywheel.yaml on disk")
        records = launch_training(
            settings.source, hp, settings.mlflow_tracking_uri, tags, log=context.log.info, dtype=config.dtype
        )
    else:
        runs = train_adapters(
            instruction_dataset,
            base_model["path"],
            hp,
            {task: getattr(settings.tasks, task).weight for task in settings.tasks.enabled()},
            settings.data_path / "adapters",
            mlflow_tracking.tracking(),
            dtype=config.dtype or settings.base_model.dtype,
            dataset_source=str(dataset_dir / "train.parquet"),
            dataset_card=dataset_dir / "README.md",
            tags=tags,
        )
        records = [r.as_record() for r in runs]
    primary, *others = records
    value = {**primary, "base_model_path": base_model["path"], "adapters": records}
    for record in records:
        if record["resumed_from_step"] is not None:
            context.log.info(f"{record['kind']}: resumed from the checkpoint at step {record['resumed_from_step']}")
    return dg.Output(
        value,
        metadata={
            **{k: v for k, v in primary.items() if v is not None},
            "path": dg.MetadataValue.path(value["path"]),
            "mlflow_run": _run_link(settings, primary["experiment_id"], primary["mlflow_run_id"]),
            "other_adapters": dg.MetadataValue.json(others),
        },
    )


@dg.asset(group_name=GROUP, kinds={"pytorch", "mlflow"})
def eval_scores(
    flywheel: FlywheelSettings,
    mlflow_tracking: MlflowTracking,
    lora_adapter: dict,
    base_model: dict,
    instruction_dataset: pd.DataFrame,
) -> dg.Output[pd.DataFrame]:
    """The candidate adapter, the base model and the current champion on the held-out split (syntax validity)
    and a HumanEval subset (pass@1, executed in a sandbox); one row per model x suite x metric."""
    settings = flywheel.settings
    tracking = mlflow_tracking.tracking().for_adapter(lora_adapter.get("kind", MIX))
    base_path = base_model["path"]
    models = [
        ModelUnderTest("candidate", f"v{lora_adapter['version']}", base_path, lora_adapter["path"]),
        ModelUnderTest("base", base_model["reference"], base_path),
    ]
    champion = current_champion(tracking)
    if champion is not None and champion.version != lora_adapter["version"]:
        adapter = ensure_local_adapter(tracking, champion, settings.data_path / "adapters" / "registry")
        models.append(ModelUnderTest("champion", f"v{champion.version}", base_path, adapter))
    # The syntax suite checks Python bodies; the other tasks' format validity is scored by their validators.
    eval_examples = [
        e
        for e in table_records(instruction_dataset)
        if e["split"] == "eval" and e["task"] == "code_generation" and json.loads(e["meta"]).get("language") == "python"
    ]
    evaluation = evaluate_models(models, eval_examples, settings.evaluation, settings.base_model.dtype)
    log_evaluation(tracking, lora_adapter["mlflow_run_id"], evaluation.scores, evaluation.samples)
    df = pd.DataFrame(evaluation.scores)
    return dg.Output(
        df,
        metadata={
            "mlflow_run_id": lora_adapter["mlflow_run_id"],
            "scores": table_preview(df, ["model", "model_ref", "suite", "metric", "value", "n"], rows=50),
            **{f"{r['model']}/{r['suite']}/{r['metric']}": float(r["value"]) for r in evaluation.scores},
        },
    )


@dg.asset(group_name=GROUP, kinds={"mlflow"})
def champion_adapter(
    flywheel: FlywheelSettings, mlflow_tracking: MlflowTracking, eval_scores: pd.DataFrame, lora_adapter: dict
) -> dg.Output[dict]:
    """The adapter that is served: the candidate is promoted unless it scores below the current champion
    on the primary metric; promotion moves the `champion` alias in the MLflow registry."""
    settings = flywheel.settings
    tracking = mlflow_tracking.tracking().for_adapter(lora_adapter.get("kind", MIX))
    metric = settings.evaluation.primary_metric
    scores = eval_scores.to_dict("records")
    candidate_score = score_of(scores, "candidate", metric)
    if candidate_score is None:
        raise dg.Failure(f"eval_scores has no {metric} for the candidate: check evaluation.primary_metric")
    decision = decide_promotion(candidate_score, score_of(scores, "champion", metric), metric)
    if decision.promote:
        promote(tracking, lora_adapter["version"], decision.reason)
    champion = current_champion(tracking)
    value = {
        "version": champion.version if champion else None,
        "adapter_path": str(champion.adapter_path) if champion else None,
        "promoted": decision.promote,
        "candidate_version": lora_adapter["version"],
        "reason": decision.reason,
        "metric": metric,
        "candidate_score": decision.candidate_score,
        "champion_score": decision.champion_score,
    }
    return dg.Output(value, metadata={k: v for k, v in value.items() if v is not None})
