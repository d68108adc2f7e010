"""Define (steps 3-4): instruction data, the base model, LoRA adapters, their scores, and the champion."""

import dagster as dg
import pandas as pd

from flywheel_pipelines.define.base_model import resolve_base_model
from flywheel_pipelines.define.champion import decide_promotion
from flywheel_pipelines.define.datasets import write_splits
from flywheel_pipelines.define.evaluate.scoring import ModelUnderTest, evaluate_models, score_of
from flywheel_pipelines.define.instructions import build_instruction_dataset, examples_from_code_units
from flywheel_pipelines.define.tracking import (
    current_champion,
    ensure_local_adapter,
    log_evaluation,
    promote,
    register_adapter,
)
from flywheel_pipelines.define.train import train_lora
from flywheel_pipelines.discover.curate import code_units_of
from flywheel_pipelines.orchestration.previews import counts, reasons_preview, table_preview
from flywheel_pipelines.orchestration.resources import FlywheelSettings, MlflowTracking

GROUP = "define"


@dg.asset(group_name=GROUP, kinds={"parquet"})
def instruction_dataset(
    flywheel: FlywheelSettings, curated_assets: pd.DataFrame, feedback_examples: pd.DataFrame
) -> dg.Output[pd.DataFrame]:
    """instruction / input / output examples ("Implement the method X") from curated code units and users' edits,
    split into train and eval by content hash; also written as train/eval Parquet files for `datasets`."""
    settings = flywheel.settings
    task = settings.tasks.implement_method
    from_code, rejected = ([], [])
    if task.enabled:
        from_code, rejected = examples_from_code_units(
            code_units_of(curated_assets.to_dict("records")),
            min_body_lines=task.min_body_lines,
            max_body_chars=task.max_body_chars,
            eval_fraction=settings.tasks.eval_fraction,
        )
    examples, invalid = build_instruction_dataset(from_code, feedback_examples.to_dict("records"))
    df = pd.DataFrame(examples)
    if df.empty:
        raise dg.Failure("no instruction examples: check `sources` and `tasks` in flywheel.yaml")
    files = write_splits(df, settings.data_path / "datasets" / "instruction_dataset")
    return dg.Output(
        df,
        metadata={
            "examples": len(df),
            "by_split": counts(df["split"]),
            "from_feedback": int(df["origin"].str.startswith("feedback:").sum()),
            "skipped": len(rejected) + len(invalid),
            "skipped_reasons": reasons_preview(f"{r.origin}: {r.reason}" for r in [*rejected, *invalid]),
            "train_file": dg.MetadataValue.path(str(files["train"])),
            "eval_file": dg.MetadataValue.path(str(files["eval"])),
            "preview": table_preview(df, ["split", "instruction", "output"]),
        },
    )


@dg.asset(group_name=GROUP, kinds={"huggingface"})
def base_model(flywheel: FlywheelSettings) -> dg.Output[dict]:
    """The configured base model as a local transformers folder (a GGUF file is converted once)."""
    settings = flywheel.settings
    resolved = resolve_base_model(
        settings.base_model_reference, settings.data_path / "models", settings.base_model.revision
    )
    value = {
        "path": str(resolved.path),
        "reference": resolved.reference,
        "origin": resolved.origin,
        "parameters": resolved.parameters,
    }
    return dg.Output(value, metadata={**value, "path": dg.MetadataValue.path(value["path"])})


@dg.asset(group_name=GROUP, kinds={"pytorch", "mlflow"})
def lora_adapter(
    context: dg.AssetExecutionContext,
    flywheel: FlywheelSettings,
    mlflow_tracking: MlflowTracking,
    instruction_dataset: pd.DataFrame,
    base_model: dict,
) -> dg.Output[dict]:
    """A LoRA adapter trained on the train split, tracked as an MLflow run and registered as a new version."""
    settings = flywheel.settings
    tracking = mlflow_tracking.tracking()
    train = instruction_dataset[instruction_dataset["split"] == "train"].reset_index(drop=True)
    trained = train_lora(
        base_model_path=base_model["path"],
        train_examples=train,
        hp=settings.training,
        adapters_dir=settings.data_path / "adapters",
        tracking=tracking,
        dtype=settings.base_model.dtype,
        dataset_source=str(settings.data_path / "datasets" / "instruction_dataset" / "train.parquet"),
        tags={
            "dagster.run_id": context.run.run_id,
            "flywheel.asset": "lora_adapter",
            "flywheel.base_model": base_model["reference"],
        },
    )
    version = register_adapter(tracking, trained.mlflow_run_id, trained.path)
    value = {
        "path": str(trained.path),
        "version": version.version,
        "mlflow_run_id": trained.mlflow_run_id,
        "base_model_path": base_model["path"],
        "train_examples": trained.train_examples,
        "steps": trained.steps,
        "final_loss": trained.final_loss,
        "tokens_per_second": round(trained.tokens_per_second, 1),
    }
    return dg.Output(value, metadata={**value, "path": dg.MetadataValue.path(value["path"])})


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
    tracking = mlflow_tracking.tracking()
    base_path = base_model["path"]
    models = [
        ModelUnderTest("candidate", f"v{lora_adapter['version']}", base_path, lora_adapter["path"]),
        ModelUnderTest("base", base_model["reference"], base_path),
    ]
    champion = current_champion(tracking)
    if champion is not None and champion.version != lora_adapter["version"]:
        adapter = ensure_local_adapter(tracking, champion, settings.data_path / "adapters" / "registry")
        models.append(ModelUnderTest("champion", f"v{champion.version}", base_path, adapter))
    eval_examples = instruction_dataset[instruction_dataset["split"] == "eval"].to_dict("records")
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
    tracking = mlflow_tracking.tracking()
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
