"""Step 3 (model): a LoRA adapter is trained on the answers only, saved in PEFT format, and tracked in MLflow."""

from pathlib import Path

import pandas as pd
from mlflow.tracking import MlflowClient

from flywheel_pipelines.define.chat import prompt_text, tokenize_for_training
from flywheel_pipelines.define.tracking import Tracking, current_champion, promote, register_adapter
from flywheel_pipelines.define.train import train_lora
from flywheel_pipelines.settings import TrainingSettings


def examples(n: int = 6) -> pd.DataFrame:
    rows = [
        {
            "example_id": f"{i:016x}",
            "task": "implement_method",
            "instruction": f"Implement the function `f{i}`.",
            "input": f"```python\ndef f{i}(x):\n```",
            "output": f"return x * {i}",
            "origin": f"code_unit:{i:016x}",
        }
        for i in range(n)
    ]
    return pd.DataFrame(rows)


def tracking_in(tmp_path: Path) -> Tracking:
    return Tracking(f"sqlite:///{tmp_path / 'mlflow.db'}", (tmp_path / "artifacts").as_uri(), "t", "flywheel-test")


def test_only_answer_tokens_are_learnt_and_the_answer_ends_with_the_end_of_turn(tiny_model_dir: Path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    features = tokenize_for_training(tok, "Implement f.", "def f(x):", "return x", max_length=128)
    n_prompt = len(tok(prompt_text(tok, "Implement f.", "def f(x):"), add_special_tokens=False)["input_ids"])
    assert features["labels"][:n_prompt] == [-100] * n_prompt
    assert features["labels"][n_prompt:] == features["input_ids"][n_prompt:]
    assert tok.decode(features["input_ids"][n_prompt:]) == "return x<|im_end|>\n"


def test_training_logs_a_complete_mlflow_run_and_saves_a_loadable_peft_adapter(tiny_model_dir: Path, tmp_path: Path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    tracking = tracking_in(tmp_path)
    hp = TrainingSettings(
        max_steps=4,
        per_device_batch_size=2,
        lora_r=4,
        lora_alpha=8,
        target_modules=["q_proj", "v_proj"],
        max_seq_length=96,
        warmup_steps=0,
    )
    trained = train_lora(
        tiny_model_dir,
        examples(),
        hp,
        tmp_path / "adapters",
        tracking,
        dataset_source=str(tmp_path / "train.parquet"),
        tags={"dagster.run_id": "run-123"},
    )

    assert trained.steps == 4 and trained.final_loss is not None and trained.tokens_per_second > 0
    peft_model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), trained.path)
    assert peft_model.peft_config["default"].r == 4

    client = MlflowClient(tracking.tracking_uri)
    run = client.get_run(trained.mlflow_run_id)
    assert run.data.params["lora_r"] == "4" and run.data.params["learning_rate"] == "0.0002"
    assert run.data.tags["dagster.run_id"] == "run-123"
    losses = client.get_metric_history(trained.mlflow_run_id, "train/loss")
    assert [m.step for m in losses] == [1, 2, 3, 4]
    assert run.inputs.dataset_inputs[0].dataset.name == "instruction_dataset"
    artifacts = {a.path for a in client.list_artifacts(trained.mlflow_run_id, "adapter")}
    assert {"adapter/adapter_config.json", "adapter/adapter_model.safetensors"} <= artifacts
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.artifact_location == tracking.artifact_location  # never ./mlruns of the cwd


def test_each_adapter_is_a_new_registry_version_and_the_champion_alias_moves_on_promotion(
    tiny_model_dir: Path, tmp_path: Path
):
    tracking = tracking_in(tmp_path)
    hp = TrainingSettings(
        max_steps=1, per_device_batch_size=2, lora_r=2, lora_alpha=4, max_seq_length=64, target_modules=["q_proj"]
    )
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
