"""Step 3 (model): a LoRA adapter is trained on the answers only, watched on the eval split, resumable after a kill,
saved in PEFT format, and tracked in MLflow as a complete run and a registered version."""

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from flywheel_pipelines.define.adapters import train_adapters
from flywheel_pipelines.define.chat import prompt_text, tokenize_for_training
from flywheel_pipelines.define.tracking import (
    CHALLENGER_ALIAS,
    Tracking,
    current_champion,
    promote,
    register_adapter,
)
from flywheel_pipelines.define.train import target_modules_for, train_lora
from flywheel_pipelines.orchestration.assets_define import LoraTrainingConfig
from flywheel_pipelines.settings import TrainingSettings


def examples(n: int = 6, task: str = "code_generation", split: str = "train") -> pd.DataFrame:
    rows = [
        {
            "example_id": f"{i:016x}",
            "task": task,
            "instruction": f"Implement the function `f{i}`.",
            "input": f"```python\ndef f{i}(x):\n```",
            "output": f"return x * {i}",
            "origin": f"code_unit:{i:016x}",
            "split": split,
        }
        for i in range(n)
    ]
    return pd.DataFrame(rows)


def tracking_in(tmp_path: Path) -> Tracking:
    return Tracking(f"sqlite:///{tmp_path / 'mlflow.db'}", (tmp_path / "artifacts").as_uri(), "t", "flywheel-test")


def small(**fields: object) -> TrainingSettings:
    defaults = {
        "max_steps": 4,
        "per_device_batch_size": 2,
        "lora_r": 4,
        "lora_alpha": 8,
        "max_seq_length": 96,
        "warmup_steps": 0,
        "eval_steps": 2,
    }
    return TrainingSettings(**(defaults | fields))


def test_only_answer_tokens_are_learnt_and_the_answer_ends_with_the_end_of_turn(tiny_model_dir: Path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    features = tokenize_for_training(tok, "Implement f.", "def f(x):", "return x", max_length=128)
    n_prompt = len(tok(prompt_text(tok, "Implement f.", "def f(x):"), add_special_tokens=False)["input_ids"])
    assert features["labels"][:n_prompt] == [-100] * n_prompt
    assert features["labels"][n_prompt:] == features["input_ids"][n_prompt:]
    assert tok.decode(features["input_ids"][n_prompt:]) == "return x<|im_end|>\n"


def test_lora_wraps_the_attention_projections_of_the_architecture_unless_configured():
    assert target_modules_for("llama", "auto") == ["q_proj", "k_proj", "v_proj", "o_proj"]
    assert target_modules_for("gpt2", "auto") == ["c_attn", "c_proj"]
    assert target_modules_for("some_new_arch", "auto") == "all-linear"
    assert target_modules_for("llama", ["q_proj"]) == ["q_proj"]


def test_training_logs_a_complete_mlflow_run_and_saves_a_loadable_peft_adapter(tiny_model_dir: Path, tmp_path: Path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    tracking = tracking_in(tmp_path)
    card = tmp_path / "README.md"
    card.write_text("# instruction_dataset\n")
    trained = train_lora(
        tiny_model_dir,
        examples(),
        small(),
        tmp_path / "adapters",
        tracking,
        eval_examples=examples(3, split="eval"),
        dataset_source=str(tmp_path / "train.parquet"),
        dataset_version="ab" * 32,
        dataset_card=card,
        tags={"dagster.run_id": "run-123"},
    )

    assert trained.steps == 4 and trained.final_loss is not None and trained.tokens_per_second > 0
    assert trained.best_eval_loss is not None and trained.padding_share < 0.5
    assert trained.name.startswith("mix-abababababab-") and trained.path.name == trained.name
    peft_model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), trained.path)
    assert peft_model.peft_config["default"].r == 4
    assert sorted(peft_model.peft_config["default"].target_modules) == ["k_proj", "o_proj", "q_proj", "v_proj"]

    client = MlflowClient(tracking.tracking_uri)
    run = client.get_run(trained.mlflow_run_id)
    assert run.data.params["lora_r"] == "4" and run.data.params["learning_rate"] == "0.0002"
    assert run.data.params["packing"] == "True" and run.data.params["adapter_kind"] == "mix"
    assert run.data.tags["dagster.run_id"] == "run-123" and run.data.tags["flywheel.code_version"]
    assert run.data.tags["flywheel.dataset_version"] == "ab" * 32
    for metric in ("train/loss", "train/learning_rate", "train/grad_norm", "train/tokens_per_second"):
        assert [m.step for m in client.get_metric_history(trained.mlflow_run_id, metric)] == [1, 2, 3, 4], metric
    assert [m.step for m in client.get_metric_history(trained.mlflow_run_id, "eval/loss")] == [2, 4]
    assert "train/padding_share" in run.data.metrics
    (dataset_input,) = run.inputs.dataset_inputs
    assert dataset_input.dataset.name == "instruction_dataset" and dataset_input.dataset.digest == "ab" * 16
    artifacts = {a.path for a in client.list_artifacts(trained.mlflow_run_id)}
    assert {"adapter", "tokenizer", "dataset", "loss_curve.png", "training_config.json"} <= artifacts
    adapter_files = {a.path for a in client.list_artifacts(trained.mlflow_run_id, "adapter")}
    assert {"adapter/adapter_config.json", "adapter/adapter_model.safetensors"} <= adapter_files
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.artifact_location == tracking.artifact_location  # never ./mlruns of the cwd
    assert not (tmp_path / "adapters" / ".training").exists() or not any(
        (tmp_path / "adapters" / ".training").iterdir()
    )


def test_a_diverging_run_stops_early_and_keeps_its_best_checkpoint(tiny_model_dir: Path, tmp_path: Path):
    hp = small(max_steps=12, learning_rate=5.0, early_stopping_patience=1, eval_steps=1)  # it must diverge
    trained = train_lora(
        tiny_model_dir,
        examples(8),
        hp,
        tmp_path / "adapters",
        tracking_in(tmp_path),
        eval_examples=examples(4, split="eval"),
    )
    client = MlflowClient(tracking_in(tmp_path).tracking_uri)
    evals = [m.value for m in client.get_metric_history(trained.mlflow_run_id, "eval/loss")]
    assert trained.stopped_early and trained.steps < 12
    assert trained.best_eval_loss == pytest.approx(min(evals))
    best_step = int(client.get_run(trained.mlflow_run_id).data.tags["flywheel.best_checkpoint_step"])
    assert best_step < trained.steps


KILLED_TRAINING = """
import json, os, signal
from pathlib import Path
import pandas as pd
from transformers import TrainerCallback
from flywheel_pipelines.define.train import train_lora
from flywheel_pipelines.settings import TrainingSettings
from flywheel_pipelines.define.tracking import Tracking

class KillAfter(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == 5:  # after the checkpoint at step 4: the process dies as a kill -9 would end it
            os.kill(os.getpid(), signal.SIGKILL)

spec = json.loads({spec})
train_lora(spec["model"], pd.read_json(spec["train"], dtype=str), TrainingSettings(**spec["hp"]),
           Path(spec["adapters"]), Tracking(*spec["tracking"]), eval_examples=pd.read_json(spec["eval"], dtype=str),
           callbacks=[KillAfter()])
"""


def test_a_run_killed_mid_training_resumes_from_its_last_checkpoint_in_the_same_mlflow_run(
    tiny_model_dir: Path, tmp_path: Path
):
    tracking = tracking_in(tmp_path)
    hp = small(max_steps=8, eval_steps=2)
    train, evaluation = examples(8), examples(3, split="eval")
    (tmp_path / "train.json").write_text(train.to_json())
    (tmp_path / "eval.json").write_text(evaluation.to_json())
    spec = {
        "model": str(tiny_model_dir),
        "train": str(tmp_path / "train.json"),
        "eval": str(tmp_path / "eval.json"),
        "hp": hp.model_dump(),
        "adapters": str(tmp_path / "adapters"),
        "tracking": [tracking.tracking_uri, tracking.artifact_location, tracking.experiment, tracking.registered_model],
    }
    script = textwrap.dedent(KILLED_TRAINING).replace("{spec}", repr(json.dumps(spec)))
    killed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=os.environ.copy())
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    client = MlflowClient(tracking.tracking_uri)
    (interrupted,) = client.search_runs([tracking.experiment_id()])
    assert interrupted.info.status == "RUNNING"  # nobody closed it: the process was killed

    resumed = train_lora(tiny_model_dir, train, hp, tmp_path / "adapters", tracking, eval_examples=evaluation)

    assert resumed.resumed_from_step == 4 and resumed.steps == 8
    assert resumed.mlflow_run_id == interrupted.info.run_id
    run = client.get_run(resumed.mlflow_run_id)
    assert run.info.status == "FINISHED" and run.data.tags["flywheel.resumed_from_step"] == "4"
    steps = {m.step for m in client.get_metric_history(resumed.mlflow_run_id, "train/loss")}
    assert steps == set(range(1, 9))  # 1-5 before the kill, 5-8 after it


def test_the_launchpad_overrides_one_run_and_refuses_invalid_values():
    configured = TrainingSettings()
    overridden = LoraTrainingConfig(learning_rate=1e-3, packing=False).applied_to(configured)
    assert overridden.learning_rate == 1e-3 and overridden.packing is False
    assert overridden.lora_r == configured.lora_r
    import dagster as dg

    with pytest.raises(dg.Failure, match="lora_adapter run config is not valid"):
        LoraTrainingConfig(lora_r=0).applied_to(configured)
    with pytest.raises(dg.Failure, match="dtype"):
        LoraTrainingConfig(dtype="float8").applied_to(configured)


def test_per_task_adapters_are_trained_and_registered_one_per_task_primary_first(tiny_model_dir: Path, tmp_path: Path):
    tracking = tracking_in(tmp_path)
    dataset = pd.concat(
        [examples(4, "docstring_generation"), examples(4, "code_generation"), examples(2, "code_generation", "eval")]
    ).reset_index(drop=True)
    dataset["example_id"] = [f"{i:016x}" for i in range(len(dataset))]
    runs = train_adapters(
        dataset, tiny_model_dir, small(adapters="per_task", max_steps=2), {}, tmp_path / "adapters", tracking
    )
    assert [r.kind for r in runs] == ["code_generation", "docstring_generation"]
    assert [r.registered_model for r in runs] == ["flywheel-test-code_generation", "flywheel-test-docstring_generation"]
    client = MlflowClient(tracking.tracking_uri)
    for run in runs:
        assert str(client.get_model_version_by_alias(run.registered_model, CHALLENGER_ALIAS).version) == "1"
        assert client.get_run(run.trained.mlflow_run_id).info.experiment_id == run.trained.experiment_id
    assert runs[0].trained.experiment_id != runs[1].trained.experiment_id  # an experiment per adapter
    assert runs[1].trained.best_eval_loss is None  # no docstring examples in eval: no eval loss, still trained


def test_each_adapter_is_a_new_registry_version_and_the_champion_alias_moves_on_promotion(
    tiny_model_dir: Path, tmp_path: Path
):
    tracking = tracking_in(tmp_path)
    hp = small(max_steps=1, lora_r=2, lora_alpha=4, max_seq_length=64, target_modules=["q_proj"])
    first = train_lora(tiny_model_dir, examples(2), hp, tmp_path / "adapters", tracking)
    second = train_lora(tiny_model_dir, examples(2), hp, tmp_path / "adapters", tracking)
    v1 = register_adapter(tracking, first.mlflow_run_id, first.path)
    v2 = register_adapter(tracking, second.mlflow_run_id, second.path)
    assert (v1.version, v2.version) == ("1", "2")
    assert current_champion(tracking) is None
    promote(tracking, v1.version, "first")
    assert current_champion(tracking).adapter_path == first.path
    promote(tracking, v2.version, "better")
    assert current_champion(tracking).version == "2"


def test_two_training_processes_make_one_adapter_logged_as_one_run(project, tiny_model_dir: Path):
    from flywheel_pipelines.define.adapters import launch_training
    from flywheel_pipelines.orchestration.resources import AssetFiles

    files = AssetFiles(project.assets_path)
    dataset = pd.concat([examples(8), examples(2, split="eval")]).reset_index(drop=True)
    dataset["example_id"] = [f"{i:016x}" for i in range(len(dataset))]
    files.write("instruction_dataset", None, dataset)
    files.write("base_model", None, {"path": str(tiny_model_dir), "reference": "tiny"})
    hp = project.training.model_copy(update={"num_processes": 2, "max_steps": 2, "eval_steps": 1})

    (record,) = launch_training(
        project.source, hp, project.mlflow_tracking_uri, {"dagster.run_id": "run-7"}, log=lambda _: None
    )

    client = MlflowClient(project.mlflow_tracking_uri)
    (run,) = client.search_runs([record["experiment_id"]])  # one training, one run: only the main process logs
    assert run.info.run_id == record["mlflow_run_id"] and run.data.params["world_size"] == "2"
    assert run.data.tags["dagster.run_id"] == "run-7" and record["version"] == "1" and record["steps"] == 2
    assert Path(record["path"], "adapter_model.safetensors").exists()


def test_packing_is_used_only_on_architectures_that_keep_packed_examples_apart(tiny_model_dir: Path):
    from transformers import AutoModelForCausalLM, OPTConfig, OPTForCausalLM

    from flywheel_pipelines.define.train import packing_isolates

    assert packing_isolates(AutoModelForCausalLM.from_pretrained(tiny_model_dir))
    opt = OPTForCausalLM(
        OPTConfig(
            vocab_size=64,
            hidden_size=16,
            ffn_dim=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            word_embed_proj_dim=16,
            max_position_embeddings=64,
        )
    )
    assert not packing_isolates(opt)  # OPT masks without position ids: packed examples would see each other


def test_a_half_written_checkpoint_is_dropped_and_the_last_complete_one_resumed(tmp_path: Path):
    from flywheel_pipelines.define.train import _last_complete_checkpoint

    for step, complete in ((2, True), (4, True), (6, False)):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        (folder / "adapter_model.safetensors").write_bytes(b"weights")
        if complete:
            (folder / "trainer_state.json").write_text("{}")
    assert _last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-4")
    assert not (tmp_path / "checkpoint-6").exists()


def test_a_run_deleted_in_the_ui_is_not_continued_and_a_missing_primary_task_is_refused(
    tiny_model_dir: Path, tmp_path: Path
):
    tracking = tracking_in(tmp_path)
    client = MlflowClient(tracking.tracking_uri)
    run = client.create_run(tracking.experiment_id())
    assert tracking.run_exists(run.info.run_id)
    client.delete_run(run.info.run_id)
    assert not tracking.run_exists(run.info.run_id)
    with pytest.raises(ValueError, match="primary_task 'code_generation' has no train examples"):
        train_adapters(
            examples(4, "docstring_generation"), tiny_model_dir, small(adapters="per_task"), {}, tmp_path, tracking
        )
