"""Step 4's promotion gate in real Dagster runs: a champion is trained, a regressing adapter is refused by the
blocking check (the alias stays, the refusal and its reason are in the history table), and a better one is
promoted; base, candidate and champion scores sit side by side in the asset metadata and on the MLflow run."""

from pathlib import Path

import dagster as dg
import pytest
from mlflow.tracking import MlflowClient

from flywheel_pipelines.cli import main as flywheel_cli
from flywheel_pipelines.define.promotion import PromotionHistory
from flywheel_pipelines.definitions import build_definitions
from flywheel_pipelines.orchestration.source_sync import sync_source_partitions
from flywheel_pipelines.orchestration.turn import _promotion_refusal
from flywheel_pipelines.settings import load_settings
from flywheel_pipelines_tests.conftest import project_config, write_project

# WORKING: one step at a negligible learning rate, the pretrained tiny model as it is (chrF of a few points per task).
# BROKEN: LoRA scaled a thousandfold (alpha 4096 on rank 4) at a high learning rate: the model diverges and answers
# nothing the references resemble (chrF 0) — a regressing adapter.
ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
WORKING = {"max_steps": 1, "learning_rate": 1e-7, "warmup_steps": 0}
BROKEN = {
    "max_steps": 30,
    "learning_rate": 5e-2,
    "warmup_steps": 0,
    "lr_scheduler": "constant",
    "lora_r": 4,
    "lora_alpha": 4096,
    "target_modules": ALL_LINEAR,
}
GATED = {f"{task}/chrf": 0.5 for task in ("api_design", "code_generation", "docstring_generation", "test_generation")}


def _train(defs: dg.Definitions, instance: dg.DagsterInstance, training: dict) -> dg.ExecuteInProcessResult:
    run_config = {"ops": {"lora_adapter": {"config": training}}}
    return defs.resolve_job_def("train").execute_in_process(
        instance=instance, run_config=run_config, raise_on_error=False
    )


def _scores(instance: dg.DagsterInstance) -> dict:
    event = instance.get_latest_materialization_event(dg.AssetKey("eval_scores"))
    return event.asset_materialization.metadata


def test_a_regressing_adapter_is_refused_by_the_blocking_gate_and_a_better_one_is_promoted(
    tmp_path: Path, pretrained_tiny_model_dir: Path, capsys: pytest.CaptureFixture
):
    config = project_config(
        tmp_path,
        str(pretrained_tiny_model_dir),
        training={"max_seq_length": 96, "per_device_batch_size": 4},
        evaluation={
            "humaneval_problems": 2,
            "repository_problems": 2,
            "eval_split_examples": 6,
            "max_new_tokens": 24,
            "memorisation": {"prompts": 3, "prefix_words": 8, "max_new_tokens": 24, "span_words": 12},
        },
        promotion={"tolerances": {**GATED, "humaneval/pass@1": 0.0}, "memorisation_ceiling": 0.5},
    )
    settings = load_settings(write_project(tmp_path, config))
    defs = build_definitions(settings)
    client = MlflowClient(settings.mlflow_tracking_uri)
    registered = settings.tracking.registered_model
    with dg.instance_for_test() as instance:
        sync_source_partitions(settings, instance)
        assert defs.resolve_job_def("discover").execute_in_process(instance=instance, partition_key="shop").success

        first = _train(defs, instance, WORKING)
        assert first.success
        assert str(client.get_model_version_by_alias(registered, "champion").version) == "1"
        champion_chrf = {name: _scores(instance)[f"candidate/{name}"].value for name in GATED}

        regressing = _train(defs, instance, BROKEN)
        assert not regressing.success, _scores(instance)["comparison"].value
        step, reasons = _promotion_refusal(regressing)
        assert step == "eval_scores_promotion_gate"
        regressed = [name for name in GATED if any(r.startswith(f"{name} regressed: candidate") for r in reasons)]
        assert regressed, reasons
        assert {e.step_key for e in regressing.all_events if e.is_step_failure} == {step}
        assert "champion_adapter" not in {
            e.step_key for e in regressing.all_events if e.event_type_value == "STEP_SUCCESS"
        }
        assert str(client.get_model_version_by_alias(registered, "champion").version) == "1"  # the alias did not move
        scores = _scores(instance)
        for name in GATED:  # the champion, scored again on the same problems: the same values
            assert scores[f"champion/{name}"].value == champion_chrf[name]
        assert all(scores[f"candidate/{name}"].value < champion_chrf[name] - GATED[name] for name in regressed)
        comparison = scores["comparison"].value
        assert "base (" in comparison and "candidate (v2)" in comparison and "champion (v1)" in comparison
        refused_run = client.get_run(client.get_model_version(registered, "2").run_id)
        assert refused_run.data.tags["flywheel.promotion"] == "refused"
        assert f"eval/champion/{regressed[0]}" in refused_run.data.metrics
        artifacts = {a.path for a in client.list_artifacts(refused_run.info.run_id, "eval")}
        assert {"eval/comparison.md", "eval/scores.json", "eval/samples.json"} <= artifacts

        better = _train(defs, instance, WORKING)
        assert better.success
        assert str(client.get_model_version_by_alias(registered, "champion").version) == "3"

    history = PromotionHistory(settings.promotion_history_url)
    try:
        decisions = history.decisions(registered)
    finally:
        history.dispose()
    assert [(d["candidate_version"], d["champion_version"], d["promoted"]) for d in decisions] == [
        ("3", "1", True),
        ("2", "1", False),
        ("1", None, True),
    ]
    assert "regressed" in decisions[1]["reason"] and decisions[0]["reason"].startswith("no regression")
    capsys.readouterr()  # what training printed
    assert flywheel_cli(["--config", str(settings.source), "promotions"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].endswith(f"{registered} v3 promoted against v1")
    assert printed[2].endswith(f"{registered} v2 refused  against v1") and "regressed" in printed[3]
