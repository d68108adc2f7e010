"""One full turn of the flywheel on a tiny model, then feedback that retrains it: real Dagster runs, real LoRA
training, real MLflow tracking, real SQL store, real sandbox."""

import json
from pathlib import Path

import dagster as dg
import pandas as pd
from mlflow.tracking import MlflowClient

from flywheel_pipelines.cli import main as flywheel_cli
from flywheel_pipelines.definitions import build_definitions
from flywheel_pipelines.orchestration.resources import build_resources
from flywheel_pipelines.settings import Settings
from flywheel_pipelines_tests.conftest import feedback_line

ALL_ASSETS = {
    "crawled_code",
    "code_units",
    "instruction_dataset",
    "base_model",
    "lora_adapter",
    "eval_scores",
    "champion_adapter",
    "feedback_events",
    "feedback_examples",
}


def asset_value(settings: Settings, name: str):
    folder = settings.data_path / "assets"
    if (folder / f"{name}.parquet").exists():
        return pd.read_parquet(folder / f"{name}.parquet")
    return json.loads((folder / f"{name}.json").read_text())


def import_feedback(settings: Settings, tmp_path: Path, ids: list[str]) -> None:
    path = tmp_path / f"feedback-{ids[0]}.jsonl"
    path.write_text("\n".join(feedback_line(i) for i in ids) + "\n")
    assert flywheel_cli(["--config", str(settings.source), "feedback", "import", str(path)]) == 0


def tick(defs: dg.Definitions, settings: Settings, instance: dg.DagsterInstance, cursor: str | None):
    sensor = defs.resolve_sensor_def("feedback_sensor")
    resources = build_resources(settings)
    with dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources) as context:
        return sensor.evaluate_tick(context)


def test_a_full_turn_then_feedback_retrains_and_registers_a_new_adapter_version(project: Settings, tmp_path: Path):
    from datasets import load_dataset
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    defs = build_definitions(project)
    with dg.instance_for_test() as instance:
        # One full turn: every asset materialised in one run.
        turn = defs.resolve_job_def("flywheel_turn").execute_in_process(instance=instance)
        assert turn.success
        materialised = {
            key.to_user_string()
            for key in all_asset_keys(defs)
            if instance.get_latest_materialization_event(key) is not None
        }
        assert materialised == ALL_ASSETS

        units = asset_value(project, "code_units")
        assert {"OrderService.place_order", "PriceList.quote"} <= set(units["qualified_name"])

        splits = load_dataset(
            "parquet",
            data_files={
                s: str(project.data_path / "datasets" / "instruction_dataset" / f"{s}.parquet")
                for s in ("train", "eval")
            },
        )
        assert splits["train"].num_rows > 0 and splits["eval"].num_rows > 0
        assert set(splits["train"].column_names) >= {"instruction", "input", "output"}

        adapter = asset_value(project, "lora_adapter")
        assert adapter["version"] == "1"
        base = AutoModelForCausalLM.from_pretrained(asset_value(project, "base_model")["path"])
        assert PeftModel.from_pretrained(base, adapter["path"]) is not None

        scores = asset_value(project, "eval_scores")
        assert set(zip(scores["model"], scores["suite"], scores["metric"], strict=True)) == {
            ("candidate", "eval_split", "syntax_valid"),
            ("candidate", "humaneval", "pass@1"),
            ("base", "eval_split", "syntax_valid"),
            ("base", "humaneval", "pass@1"),
        }
        assert scores["n"].tolist() == [3, 3, 3, 3]

        champion = asset_value(project, "champion_adapter")
        assert champion["promoted"] and champion["version"] == "1" and "no champion yet" in champion["reason"]

        client = MlflowClient(project.mlflow_tracking_uri)
        run = client.get_run(adapter["mlflow_run_id"])
        assert run.data.tags["dagster.run_id"] == turn.run_id
        assert len(client.get_metric_history(run.info.run_id, "train/loss")) == project.training.max_steps
        assert "eval/candidate/humaneval/pass_at_1" in run.data.metrics

        # Too little feedback: the sensor skips.
        import_feedback(project, tmp_path, ["a1", "a2"])
        first = tick(defs, project, instance, None)
        assert first.run_requests == [] and "2 new feedback events" in first.skip_message

        # Enough: exactly one run request, and the same events never trigger again.
        import_feedback(project, tmp_path, ["a3"])
        second = tick(defs, project, instance, None)
        (request,) = second.run_requests
        assert request.run_key == "feedback-1-3"  # the sensor targets the `retrain` job
        assert tick(defs, project, instance, second.cursor).run_requests == []

        # The requested run folds the edits into the dataset and trains a new adapter version.
        retrain = defs.resolve_job_def("retrain").execute_in_process(instance=instance, tags=request.tags)
        assert retrain.success
        dataset = asset_value(project, "instruction_dataset")
        assert dataset["origin"].str.startswith("feedback:").sum() == 3
        new_adapter = asset_value(project, "lora_adapter")
        assert new_adapter["version"] == "2" and new_adapter["path"] != adapter["path"]
        rescored = asset_value(project, "eval_scores")
        assert set(rescored["model"]) == {"candidate", "base", "champion"}  # the champion is re-scored beside
        decision = asset_value(project, "champion_adapter")
        assert decision["candidate_version"] == "2"
        assert decision["champion_score"] is not None


def all_asset_keys(defs: dg.Definitions) -> list[dg.AssetKey]:
    return list(defs.resolve_asset_graph().get_all_asset_keys())
