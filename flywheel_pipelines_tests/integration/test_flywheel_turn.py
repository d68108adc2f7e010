"""One full turn of the flywheel on a tiny model — a local source and a git repository discovered as partitions,
then training — and feedback that retrains it: real Dagster runs, real git, real LoRA training, real MLflow
tracking, real SQL stores, real sandbox."""

import json
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

from flywheel_pipelines.cli import main as flywheel_cli
from flywheel_pipelines.definitions import build_definitions
from flywheel_pipelines.discover.quarantine import QuarantineStore
from flywheel_pipelines.orchestration.resources import build_resources
from flywheel_pipelines.orchestration.source_sync import sync_source_partitions
from flywheel_pipelines.orchestration.turn import run_turn
from flywheel_pipelines.settings import Settings, load_settings
from flywheel_pipelines_tests.conftest import feedback_line, project_config, write_project
from flywheel_pipelines_tests.openai_wire import OpenAIWireServer

TRAIN_ASSETS = {
    "curated_assets",
    "instruction_dataset",
    "base_model",
    "lora_adapter",
    "eval_scores",
    "champion_adapter",
    "feedback_examples",
    "preference_data",
}
DISCOVER_ASSETS = {"crawled_code", "code_units", "api_endpoints", "user_stories"}


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


def upstream_repo(root: Path) -> Path:
    root.mkdir(parents=True)
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.email", "dev@example.com")
    git(root, "config", "user.name", "Dev")
    for i in range(4):
        (root / f"billing{i}.py").write_text(
            f'def invoice_total_{i}(lines):\n    """Sum of line amounts."""\n    total = 0\n'
            f"    for line in lines:\n        total += line * {i + 1}\n    return total\n"
        )
    git(root, "add", ".")
    git(root, "commit", "-qm", "billing")
    return root


def stored(settings: Settings, name: str, partition: str | None = None):
    base = settings.assets_path / name
    path = (base / partition) if partition else base
    if path.with_suffix(".parquet").exists():
        return pd.read_parquet(path.with_suffix(".parquet"))
    return json.loads(path.with_suffix(".json").read_text())


def import_feedback(settings: Settings, tmp_path: Path, ids: list[str]) -> None:
    path = tmp_path / f"feedback-{ids[0]}.jsonl"
    path.write_text("\n".join(feedback_line(i) for i in ids) + "\n")
    assert flywheel_cli(["--config", str(settings.source), "feedback", "import", str(path)]) == 0


def tick(defs: dg.Definitions, settings: Settings, instance: dg.DagsterInstance, name: str, cursor: str | None):
    sensor = defs.resolve_sensor_def(name)
    with dg.build_sensor_context(
        instance=instance, cursor=cursor, resources=build_resources(settings), definitions=defs
    ) as context:
        return sensor.evaluate_tick(context)


def teacher_answer(request: dict) -> str:
    """A scripted teacher model: a doc comment for code, a user story (titled by its topic) for anything else."""
    prompt = request["messages"][1]["content"]
    if "documentation comment" in prompt:
        return "Computes the result from the given arguments."
    topic = prompt.rsplit("\n\n", 1)[-1].splitlines()[0].strip("#| ") or "the endpoints"
    return (
        f"Title: {topic[:60]}\nAs a shopper,\nI want to use {topic[:40].lower()},\nso that I save time.\n\n"
        f"AC1: It works\nGiven I am signed in\nWhen I use {topic[:40].lower()}\nThen I see the result"
    )


@pytest.fixture
def teacher_server() -> Iterator[OpenAIWireServer]:
    with OpenAIWireServer(teacher_answer) as server:
        yield server


def test_a_full_turn_over_two_sources_then_feedback_retrains_a_new_adapter_version(
    tmp_path: Path, tiny_model_dir: Path, teacher_server: OpenAIWireServer
):
    from datasets import load_dataset
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    repo = upstream_repo(tmp_path / "upstream")
    config = project_config(tmp_path, str(tiny_model_dir))
    config["sources"].append({"name": "billing", "git": f"file://{repo}", "ref": "main"})
    config["teacher"] = {"base_url": teacher_server.base_url, "model": "teacher", "max_concurrency": 2}
    config["tasks"]["user_story"] = {"topics": ["Reorder a past purchase"]}
    settings = load_settings(write_project(tmp_path, config))
    (tmp_path / "code" / "broken.py").write_text("def broken(:\n")  # must be quarantined, not fatal
    (tmp_path / "code" / "cloud.py").write_text(  # a function with a planted key and address
        'def upload_client(bucket):\n    """Client for the reports bucket."""\n'
        '    key_id = "AKIAIOSFODNN7EXAMPLE"\n    owner = "jane.doe@acme-corp.com"\n'
        "    return connect(bucket, key_id, owner)\n"
    )
    defs = build_definitions(settings)

    with dg.instance_for_test() as instance:
        assert run_turn(settings, instance, log=lambda _: None)
        assert instance.get_dynamic_partitions("sources") == ["shop", "billing"]
        for key in DISCOVER_ASSETS:
            for partition in ("shop", "billing"):
                records = instance.fetch_materializations(
                    dg.AssetRecordsFilter(asset_key=dg.AssetKey(key), asset_partitions=[partition]), limit=1
                ).records
                assert records, (key, partition)
        for key in TRAIN_ASSETS:
            assert instance.get_latest_materialization_event(dg.AssetKey(key)) is not None, key

        # Discover: every language, endpoints and stories from the local source; the git source's commit.
        units = stored(settings, "code_units", "shop")
        assert set(units["language"]) == {"python", "java", "kotlin", "typescript", "javascript", "go"}
        assert len(stored(settings, "api_endpoints", "shop")) > 0
        assert len(stored(settings, "user_stories", "shop")) > 0
        billing_files = stored(settings, "crawled_code", "billing")
        assert set(billing_files["commit"]) == {git(repo, "rev-parse", "HEAD").strip()}
        quarantine = QuarantineStore(settings.quarantine_database_url).rows(source="shop", stage="code_units")
        assert any(r["path"] == "broken.py" and "syntax error" in r["reason"] for r in quarantine)
        checks = instance.event_log_storage.get_latest_asset_check_execution_by_key(
            [dg.AssetCheckKey(dg.AssetKey("code_units"), "schema_valid")]
        )
        assert checks  # the checks ran with the materialisation

        # Step 2: curated assets in every DSL, and the planted secrets nowhere in them.
        curated = stored(settings, "curated_assets")
        assert set(curated["kind"]) == {"code_unit", "api_design", "domain_model", "user_story"}
        assert not any("AKIAIOSFODNN7EXAMPLE" in text or "jane.doe@" in text for text in curated["content"])
        (upload,) = [c for c in curated["content"] if "def upload_client" in c]
        assert "<SECRET:aws_access_key>" in upload and "<EMAIL>" in upload

        # Define: the dataset holds both sources, loads with `datasets`, and trains a loadable adapter.
        dataset = stored(settings, "instruction_dataset")
        assert any("invoice_total_" in i for i in dataset["instruction"])
        splits = load_dataset(
            "parquet",
            data_files={
                s: str(settings.data_path / "datasets" / "instruction_dataset" / f"{s}.parquet")
                for s in ("train", "eval")
            },
        )
        assert splits["train"].num_rows > 0 and splits["eval"].num_rows > 0
        folder = settings.data_path / "datasets" / "instruction_dataset"
        assert load_dataset(str(folder))["train"].num_rows == splits["train"].num_rows  # through the card
        assert load_dataset("json", data_files=str(folder / "chat" / "train.jsonl"))["train"].num_rows > 0
        assert set(dataset["task"]) >= {"code_generation", "test_generation", "docstring_generation"}
        taught = dataset[dataset["generation"] == "teacher"]
        assert {"docstring_generation", "user_story"} <= set(taught["task"])
        assert "Reorder a past purchase" in set(taught["input"])
        teacher_requests = len(teacher_server.requests)
        adapter = stored(settings, "lora_adapter")
        assert adapter["version"] == "1"
        run = MlflowClient(settings.mlflow_tracking_uri).get_run(adapter["mlflow_run_id"])
        version = run.data.tags["flywheel.dataset_version"]
        assert (
            version in (folder / "README.md").read_text()
            and run.inputs.dataset_inputs[0].dataset.digest == version[:32]
        )
        base = AutoModelForCausalLM.from_pretrained(stored(settings, "base_model")["path"])
        assert PeftModel.from_pretrained(base, adapter["path"]) is not None
        scores = stored(settings, "eval_scores")
        measured = set(zip(scores["model"], scores["suite"], scores["metric"], strict=True))
        for model in ("candidate", "base"):
            assert {
                (model, "humaneval", "pass@1"),
                (model, "code_generation", "format_valid"),
                (model, "code_generation", "chrf"),
                (model, "code_generation", "bleu"),
                (model, "memorisation", "verbatim_rate"),
                (model, "memorisation", "secret_leaks"),
            } <= measured
        assert {m for m, _, _ in measured} == {"candidate", "base"}
        champion = stored(settings, "champion_adapter")
        assert champion["promoted"] and champion["version"] == "1"
        client = MlflowClient(settings.mlflow_tracking_uri)
        run = client.get_run(adapter["mlflow_run_id"])
        assert len(client.get_metric_history(run.info.run_id, "train/loss")) == settings.training.max_steps
        assert "eval/candidate/humaneval/pass_at_1" in run.data.metrics

        # One task rebuilt alone, from the asset's run config: the other tasks keep their stored examples.
        before = stored(settings, "instruction_dataset")
        rebuilt = defs.resolve_implicit_global_asset_job_def().execute_in_process(
            instance=instance,
            asset_selection=[dg.AssetKey("instruction_dataset")],
            run_config={"ops": {"instruction_dataset": {"config": {"rebuild_tasks": ["user_story"]}}}},
        )
        assert rebuilt.success
        (materialization,) = rebuilt.asset_materializations_for_node("instruction_dataset")
        assert materialization.metadata["rebuilt_tasks"].value == ["user_story"]
        after = stored(settings, "instruction_dataset")
        unchanged = before[before["task"] != "user_story"].reset_index(drop=True)
        pd.testing.assert_frame_equal(after[after["task"] != "user_story"].reset_index(drop=True), unchanged)

        # The discovery sensor has nothing to do right after a turn.
        assert tick(defs, settings, instance, "discovery_sensor", None).run_requests == []

        # A new commit upstream: the next discover run reads only the changed file.
        (repo / "billing2.py").write_text("def invoice_total_2(lines):\n    return sum(lines) * 3\n")
        git(repo, "commit", "-qam", "simplify")
        again = defs.resolve_job_def("discover").execute_in_process(instance=instance, partition_key="billing")
        crawl_meta = again.asset_materializations_for_node("crawled_code")[0].metadata
        assert (crawl_meta["read"].value, crawl_meta["reused_unchanged"].value) == (1, 3)
        units_meta = again.asset_materializations_for_node("code_units")[0].metadata
        assert (units_meta["parsed_files"].value, units_meta["reused_files"].value) == (1, 3)
        assert all(check.passed for check in again.get_asset_check_evaluations())  # reused records stay valid
        # ... and now the discovery sensor asks for training, once.
        request = tick(defs, settings, instance, "discovery_sensor", None).run_requests
        assert len(request) == 1 and request[0].run_key.startswith("discovered-")

        # Feedback: too little is skipped; enough requests exactly one retrain; it trains version 2.
        import_feedback(settings, tmp_path, ["a1", "a2"])
        first = tick(defs, settings, instance, "feedback_sensor", None)
        assert first.run_requests == [] and "2 new feedback events" in first.skip_message
        import_feedback(settings, tmp_path, ["a3"])
        second = tick(defs, settings, instance, "feedback_sensor", None)
        (retrain_request,) = second.run_requests
        assert retrain_request.run_key == "feedback-1-3" and retrain_request.job_name == "retrain"
        assert retrain_request.partition_key == datetime.now(UTC).date().isoformat()  # today's feedback
        assert tick(defs, settings, instance, "feedback_sensor", second.cursor).run_requests == []
        retrain = defs.resolve_job_def("retrain").execute_in_process(
            instance=instance, tags=retrain_request.tags, partition_key=retrain_request.partition_key
        )
        assert retrain.success
        assert stored(settings, "instruction_dataset")["origin"].str.startswith("feedback:").sum() == 3
        assert len(teacher_server.requests) == teacher_requests  # the rebuilt dataset's teacher answers were cached
        new_adapter = stored(settings, "lora_adapter")
        assert new_adapter["version"] == "2" and new_adapter["path"] != adapter["path"]
        assert set(stored(settings, "eval_scores")["model"]) == {"candidate", "base", "champion"}
        assert stored(settings, "champion_adapter")["candidate_version"] == "2"

        # Removing a source from flywheel.yaml removes its partition and everything it left.
        config["sources"] = [s for s in config["sources"] if s["name"] != "billing"]
        settings.source.write_text(yaml.safe_dump(config))
        smaller = load_settings(settings.source)
        assert sync_source_partitions(smaller, instance) == ([], ["billing"])
        assert instance.get_dynamic_partitions("sources") == ["shop"]
        assert not list(settings.assets_path.glob("*/billing.*"))
        assert not (settings.data_path / "sources" / "billing").exists()
