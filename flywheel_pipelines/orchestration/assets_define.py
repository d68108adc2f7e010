"""Define (steps 3-4): instruction data, the base model, LoRA adapters, their scores, and the champion."""

import dagster as dg
import pandas as pd
from pydantic import Field, ValidationError

from flywheel_pipelines.define.adapters import launch_training, train_adapters
from flywheel_pipelines.define.base_model import describe, resolve_base_model
from flywheel_pipelines.define.datasets import benchmark_texts, write_dataset
from flywheel_pipelines.define.distil.dataset import build_dataset, quarantine_rows, teacher_report, templates_used
from flywheel_pipelines.define.evaluate.answer_cache import AnswerCache
from flywheel_pipelines.define.evaluate.sandbox import isolation_layers
from flywheel_pipelines.define.evaluate.scoring import (
    ModelUnderTest,
    comparison_table,
    evaluate_models,
    plan_evaluation,
)
from flywheel_pipelines.define.promotion import HISTORY_COLUMNS, PromotionDecision, PromotionHistory, judge
from flywheel_pipelines.define.tasks import EXAMPLE_FIELDS
from flywheel_pipelines.define.tracking import (
    MIX,
    Tracking,
    current_champion,
    ensure_local_adapter,
    log_evaluation,
    promote,
    record_decision,
)
from flywheel_pipelines.orchestration.checks import PROMOTION_GATE
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


def _models_under_test(settings: Settings, tracking: Tracking, lora_adapter: dict, base_model: dict):
    base_path = base_model["path"]
    models = [
        ModelUnderTest("candidate", f"v{lora_adapter['version']}", base_path, lora_adapter["path"]),
        ModelUnderTest("base", base_model["reference"], base_path),
    ]
    champion = current_champion(tracking)
    if champion is not None and champion.version != lora_adapter["version"]:
        adapter = ensure_local_adapter(tracking, champion, settings.data_path / "adapters" / "registry")
        models.append(ModelUnderTest("champion", f"v{champion.version}", base_path, adapter))
    return models


@dg.asset(group_name=GROUP, kinds={"pytorch", "mlflow"})
def eval_scores(
    context: dg.AssetExecutionContext,
    flywheel: FlywheelSettings,
    mlflow_tracking: MlflowTracking,
    lora_adapter: dict,
    base_model: dict,
    instruction_dataset: pd.DataFrame,
    curated_assets: pd.DataFrame,
    code_units: pd.DataFrame,
    crawled_code: pd.DataFrame,
) -> dg.Output[pd.DataFrame]:
    """Guide metrics of the candidate adapter, the base model and the current champion on the same problems and
    seeds: HumanEval and the repository's own paired tests executed in the sandbox (greedy pass@1, sampled pass@k),
    every task's held-out split by its validator plus chrF/BLEU, and memorisation of the training data and of the
    redacted secrets. One row per model x suite x metric; the comparison is in the metadata and on the MLflow run."""
    settings = flywheel.settings
    tracking = mlflow_tracking.tracking().for_adapter(lora_adapter.get("kind", MIX))
    models = _models_under_test(settings, tracking, lora_adapter, base_model)
    plan, dropped = plan_evaluation(
        table_records(instruction_dataset),
        settings.evaluation,
        curated_records=table_records(curated_assets),
        code_units=table_records(code_units),
        crawled_files=table_records(crawled_code),
    )
    for problem_id, reason in dropped.items():
        context.log.info(f"repository problem {problem_id} left out: {reason}")
    cache = AnswerCache(settings.data_path / "eval_answers.db") if settings.evaluation.reuse_answers else None
    try:
        evaluation = evaluate_models(models, plan, settings.evaluation, settings.base_model.dtype, cache)
    finally:
        if cache is not None:
            context.log.info(f"answers reused for {cache.hits} of {cache.hits + cache.misses} generation calls")
            cache.close()
    comparison = comparison_table(evaluation.scores)
    layers = [str(layer) for layer in isolation_layers()]
    log_evaluation(
        tracking,
        lora_adapter["mlflow_run_id"],
        evaluation.scores,
        evaluation.samples,
        comparison,
        {"sandbox_isolation": "; ".join(layers)},
    )
    df = pd.DataFrame(evaluation.scores)
    return dg.Output(
        df,
        metadata={
            "mlflow_run_id": lora_adapter["mlflow_run_id"],
            "mlflow_run": _run_link(settings, lora_adapter["experiment_id"], lora_adapter["mlflow_run_id"]),
            "comparison": dg.MetadataValue.md(comparison),
            "models": dg.MetadataValue.json({m.role: m.reference for m in models}),
            "problems": dg.MetadataValue.json(
                {
                    "humaneval": len(plan.humaneval),
                    "repository_tests": len(plan.repository),
                    "repository_tests_left_out": len(dropped),
                    **{task: len(rows) for task, rows in plan.task_examples.items()},
                    "memorisation_probes": len(plan.probes),
                }
            ),
            "sandbox_isolation": dg.MetadataValue.json(layers),
            **{f"{r['model']}/{r['suite']}/{r['metric']}": float(r["value"]) for r in evaluation.scores},
        },
    )


def _history(settings: Settings) -> PromotionHistory:
    return PromotionHistory(settings.promotion_history_url)


def _history_table(history: PromotionHistory, registered_model: str) -> dg.MetadataValue:
    rows = history.decisions(registered_model, limit=20)
    df = pd.DataFrame(rows, columns=HISTORY_COLUMNS)
    return table_preview(
        df, ["decided_at", "candidate_version", "champion_version", "promoted", "reason"], rows=20, width=160
    )


@dg.asset_check(
    asset="eval_scores",
    name=PROMOTION_GATE,
    blocking=True,
    additional_ins={"lora_adapter": dg.AssetIn("lora_adapter")},
    description="The candidate may replace the champion: no configured metric (promotion.tolerances) falls more "
    "than its tolerance below the champion's, memorisation stays under promotion.memorisation_ceiling, and no "
    "redacted secret comes back. Blocking: a refused candidate never reaches champion_adapter.",
)
def promotion_gate(
    context: dg.AssetCheckExecutionContext,
    flywheel: FlywheelSettings,
    mlflow_tracking: MlflowTracking,
    eval_scores: pd.DataFrame,
    lora_adapter: dict,
) -> dg.AssetCheckResult:
    settings = flywheel.settings
    tracking = mlflow_tracking.tracking().for_adapter(lora_adapter.get("kind", MIX))
    champion = current_champion(tracking)
    decision = _judge(settings, eval_scores, lora_adapter, champion)
    metadata = {
        "candidate_version": lora_adapter["version"],
        "decision": "may be promoted" if decision.promote else "refused",
        "reasons": dg.MetadataValue.md("\n".join(f"- {r}" for r in decision.reasons)),
        "comparisons": dg.MetadataValue.md(pd.DataFrame(decision.table()).to_markdown(index=False)),
    }
    if not decision.promote:  # champion_adapter will not run: the refusal is recorded here
        _record(settings, tracking, lora_adapter, champion, decision, context.run.run_id)
    return dg.AssetCheckResult(passed=decision.promote, severity=dg.AssetCheckSeverity.ERROR, metadata=metadata)


def _judge(settings: Settings, eval_scores: pd.DataFrame, lora_adapter: dict, champion) -> PromotionDecision:
    return judge(
        eval_scores.to_dict("records"),
        settings.promotion.tolerances,
        settings.promotion.memorisation_ceiling,
        candidate_version=lora_adapter["version"],
        champion_version=champion.version if champion else None,
    )


def _record(settings: Settings, tracking: Tracking, lora_adapter: dict, champion, decision, run_id: str) -> None:
    """The decision in the promotion history table, and as tags on the version and its MLflow run."""
    history = _history(settings)
    try:
        history.record(
            tracking.registered_model,
            lora_adapter["version"],
            champion.version if champion else None,
            decision,
            lora_adapter["mlflow_run_id"],
            run_id,
        )
    finally:
        history.dispose()
    record_decision(tracking, lora_adapter["version"], lora_adapter["mlflow_run_id"], decision.promote, decision.reason)


@dg.asset(group_name=GROUP, kinds={"mlflow"})
def champion_adapter(
    context: dg.AssetExecutionContext,
    flywheel: FlywheelSettings,
    mlflow_tracking: MlflowTracking,
    eval_scores: pd.DataFrame,
    lora_adapter: dict,
) -> dg.Output[dict]:
    """The adapter that is served. Runs only after the blocking promotion_gate check passed on eval_scores; it moves
    the `champion` alias in the MLflow registry to the candidate and records the decision in the promotion
    history table. Materialised on its own, it judges again (and refuses scores of another version)."""
    settings = flywheel.settings
    tracking = mlflow_tracking.tracking().for_adapter(lora_adapter.get("kind", MIX))
    previous = current_champion(tracking)
    decision = _judge(settings, eval_scores, lora_adapter, previous)
    _record(settings, tracking, lora_adapter, previous, decision, context.run.run_id)
    if not decision.promote:
        raise dg.Failure(f"candidate v{lora_adapter['version']} is refused promotion: {decision.reason}")
    promote(tracking, lora_adapter["version"], decision.reason)
    history = _history(settings)
    try:
        history_md = _history_table(history, tracking.registered_model)
    finally:
        history.dispose()
    champion = current_champion(tracking)
    value = {
        "version": champion.version,
        "adapter_path": str(champion.adapter_path),
        "promoted": True,
        "previous_version": previous.version if previous else None,
        "candidate_version": lora_adapter["version"],
        "reason": decision.reason,
    }
    return dg.Output(
        value,
        metadata={
            **{k: v for k, v in value.items() if v is not None},
            "comparisons": dg.MetadataValue.md(pd.DataFrame(decision.table()).to_markdown(index=False)),
            "promotion_history": history_md,
        },
    )
