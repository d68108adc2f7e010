"""The `flywheel` command: every command explains itself, feedback and datasets come out in the formats they go in
and trainers read, any adapter or the base model alone can be scored, and mistakes get one line that says what to
do, not a traceback."""

import json
from pathlib import Path

import pandas as pd
import pytest
import typer
import yaml

from flywheel_pipelines.cli import app, main
from flywheel_pipelines.define.datasets import write_dataset
from flywheel_pipelines.define.tasks import example_id
from flywheel_pipelines.deliver.feedback_store import EVENT_FIELDS, FeedbackStore, PostedFeedback
from flywheel_pipelines.settings import Settings, load_settings
from flywheel_pipelines_tests.conftest import SAMPLES, feedback_line


def flywheel(settings: Settings, *args: str) -> int:
    return main(["--config", str(settings.source), *args])


# --- help, and errors in one line ------------------------------------------------------------------------------------


def commands(command=None, path=()):
    """(path, command) for every command and group under `command`, hidden aliases included."""
    command = command or typer.main.get_command(app)
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from commands(sub, (*path, name))


def test_every_command_and_group_answers_help_with_a_one_line_description(capsys: pytest.CaptureFixture[str]):
    found = dict(commands())
    assert {
        ("run",), ("turn",), ("serve",), ("feedback", "import"), ("feedback", "export"), ("dataset", "export"),
        ("eval",), ("bench",), ("model", "fetch"), ("train",), ("where",), ("mlflow-uri",), ("promotions",),
    } <= set(found)  # fmt: skip
    for path, command in found.items():
        summary = (command.help or "").strip().split("\n\n")[0]
        assert summary and "\n" not in summary, f"flywheel {' '.join(path)}: no one-line description"
        assert main([*path, "--help"]) == 0
        out = capsys.readouterr().out
        assert "Usage" in out and "flywheel" in out, path


def error_line(err: str) -> str:
    """The one line a mistake gets (libraries may log around it, but no traceback)."""
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, err
    return errors[0]


def test_a_missing_config_is_one_line_not_a_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    assert main(["--config", str(tmp_path / "flywheel.yaml"), "where"]) == 2
    assert error_line(capsys.readouterr().err).startswith("error: config file not found:")


def test_a_broken_config_is_reported_not_raised(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    bad = tmp_path / "flywheel.yaml"
    bad.write_text("sources: []\nbase_model: {name_or_path: m}\n")
    assert main(["--config", str(bad), "where"]) == 2
    assert "sources: List should have at least 1 item" in capsys.readouterr().err


def test_an_unknown_option_value_is_a_usage_error(project: Settings, capsys: pytest.CaptureFixture[str]):
    assert flywheel(project, "dataset", "export", "--format", "csv") == 2
    assert "csv" in capsys.readouterr().err


def test_where_says_to_run_first_when_nothing_ran(project: Settings, capsys: pytest.CaptureFixture[str]):
    assert flywheel(project, "where") == 0
    out = capsys.readouterr().out
    assert "make ui" in out and "make mlflow" in out and "No eval scores yet" in out


# --- run --------------------------------------------------------------------------------------------------------------


def test_run_follows_every_step_of_its_dagster_runs_as_it_starts():
    import dagster as dg

    from flywheel_pipelines.cli import _follow_events

    @dg.asset
    def crawled() -> int:
        return 1

    @dg.asset
    def units(crawled: int) -> int:
        return crawled + 1

    seen = []
    with dg.instance_for_test() as instance:
        _follow_events(instance, lambda event: seen.append((event.event_type, event.step_key)))
        assert dg.materialize([crawled, units], instance=instance).success
    assert [step for kind, step in seen if kind == dg.DagsterEventType.STEP_START] == ["crawled", "units"]
    assert (dg.DagsterEventType.RUN_SUCCESS, None) in seen  # the end of a stage


# --- feedback --------------------------------------------------------------------------------------------------------


def test_importing_a_file_with_a_bad_line_imports_nothing_and_names_the_line(
    project: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    path = tmp_path / "events.jsonl"
    path.write_text(feedback_line("ok") + "\n" + '{"event_id": "x"}\n')
    assert flywheel(project, "feedback", "import", str(path)) == 1
    err = capsys.readouterr().err
    assert "line 2:" in err and "'kind' is a required property" in err and "--quarantine-invalid" in err
    assert FeedbackStore(project.feedback_database_url).events() == []

    assert flywheel(project, "feedback", "import", str(path), "--quarantine-invalid") == 0
    captured = capsys.readouterr()
    assert "imported 1 events" in captured.out and "quarantined line 2" in captured.err


def test_the_sample_feedback_imports(project: Settings, capsys: pytest.CaptureFixture[str]):
    sample = SAMPLES / "feedback" / "sample_feedback.jsonl"
    assert flywheel(project, "feedback", "import", str(sample)) == 0
    assert "imported 3 events" in capsys.readouterr().out


def stored_events(settings: Settings) -> list[dict]:
    store = FeedbackStore(settings.feedback_database_url)
    try:
        return [{name: e[name] for name in EVENT_FIELDS} for e in store.events()]
    finally:
        store.dispose()


def test_exported_feedback_imports_into_a_fresh_store_as_the_same_events(
    project: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    events = tmp_path / "events.jsonl"
    events.write_text(
        "\n".join([feedback_line("e1"), feedback_line("a1", "accept", user="ana", model="flywheel-code-lora:v2")])
    )
    assert flywheel(project, "feedback", "import", str(SAMPLES / "feedback" / "sample_feedback.jsonl")) == 0
    assert flywheel(project, "feedback", "import", str(events)) == 0
    store = FeedbackStore(project.feedback_database_url)  # and one posted to the API, about an answer it gave
    completion = {"completion_id": "c-1", "endpoint": "chat.completions", "model": "flywheel-code-lora:v2"}
    completion |= {"instruction": "Write tests for `total`.", "prompt": "p", "output": "def test(): ...", "task": None}
    completion |= {"latency_ms": 3.0, "prompt_tokens": 5, "completion_tokens": 4, "client_id": "ide"}
    store.write([completion], [PostedFeedback("p1", "c-1", "edited", "def test_total(): assert total([]) == 0")])
    store.dispose()
    capsys.readouterr()

    exported = tmp_path / "out" / "feedback.jsonl"
    assert flywheel(project, "feedback", "export", "--out", str(exported)) == 0
    assert "exported 6 events" in capsys.readouterr().err
    fresh_config = yaml.safe_load(project.source.read_text()) | {"feedback": {"database_url": "sqlite:///fresh.db"}}
    (tmp_path / "fresh.yaml").write_text(yaml.safe_dump(fresh_config))
    fresh = load_settings(tmp_path / "fresh.yaml")
    assert flywheel(fresh, "feedback", "import", str(exported)) == 0
    assert "imported 6 events" in capsys.readouterr().out
    assert stored_events(fresh) == stored_events(project)

    # Only what came after the newest event the last export named; to standard output by default.
    assert flywheel(project, "feedback", "export", "--since-id", "5") == 0
    captured = capsys.readouterr()
    assert [json.loads(line)["event_id"] for line in captured.out.splitlines()] == ["p1"]
    assert "--since-id 6" in captured.err

    assert flywheel(project, "feedback", "export", "--format", "parquet") == 2
    assert "--out" in capsys.readouterr().err
    table = tmp_path / "feedback.parquet"
    assert flywheel(project, "feedback", "export", "--format", "parquet", "--out", str(table)) == 0
    assert list(pd.read_parquet(table)["event_id"]) == [e["event_id"] for e in stored_events(project)]


# --- datasets --------------------------------------------------------------------------------------------------------


def example(name: str, split: str) -> dict:
    e = {
        "task": "code_generation",
        "template_version": 1,
        "instruction": f"Implement `{name}`.",
        "input": f"def {name}():",
        "output": "return 1",
        "origin": f"curated_asset:{name}",
        "source": "shop",
        "generation": "reverse",
        "group": name,
        "split": split,
        "meta": "{}",
    }
    return {"example_id": example_id(e["task"], e["instruction"], e["input"]), **e}


def test_the_stored_dataset_exports_in_every_format_and_split(
    project: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    examples = [example("alpha", "train"), example("beta", "train"), example("gamma", "eval")]
    folder = project.data_path / "datasets" / "instruction_dataset"
    write_dataset(examples, folder, name="instruction_dataset", count_tokens=lambda t: len(t.split()), templates={})
    counts = {"train": 2, "eval": 1, "all": 3}
    for fmt in ("alpaca", "chat", "sharegpt"):
        for split, n in counts.items():
            assert flywheel(project, "dataset", "export", "--format", fmt, "--split", split) == 0, (fmt, split)
            out = capsys.readouterr().out
            records = json.loads(out) if fmt == "alpaca" else [json.loads(line) for line in out.splitlines()]
            assert len(records) == n, (fmt, split)
    turns = [{"from": "human", "value": "Implement `gamma`.\n\ndef gamma():"}, {"from": "gpt", "value": "return 1"}]
    assert records[-1] == {"conversations": turns}  # sharegpt, all: train first, then eval
    out = tmp_path / "chat" / "train.jsonl"
    assert flywheel(project, "dataset", "export", "--out", str(out)) == 0  # chat, train: what trl's SFTTrainer reads
    assert [json.loads(line)["messages"][1] for line in out.read_text().splitlines()] == [
        {"role": "assistant", "content": "return 1"}
    ] * 2
    table = tmp_path / "all.parquet"
    assert flywheel(project, "dataset", "export", "--format", "parquet", "--split", "all", "--out", str(table)) == 0
    df = pd.read_parquet(table)
    assert list(df["split"]) == ["train", "train", "eval"] and set(df["group"]) == {"alpha", "beta", "gamma"}


def test_preference_data_exports_for_trl_and_has_no_eval_split(project: Settings, capsys: pytest.CaptureFixture[str]):
    assert flywheel(project, "dataset", "export", "--format", "dpo") == 2
    assert "run `make run` first" in capsys.readouterr().err
    pair = {"prompt": [{"role": "user", "content": "q"}], "chosen": [{"role": "assistant", "content": "a"}]}
    pair["rejected"] = [{"role": "assistant", "content": "b"}]
    path = project.data_path / "datasets" / "preference" / "dpo" / "train.jsonl"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(pair) + "\n")
    assert flywheel(project, "dataset", "export", "--format", "dpo") == 0
    assert json.loads(capsys.readouterr().out) == pair
    assert flywheel(project, "dataset", "export", "--format", "dpo", "--split", "eval") == 2
    assert "no eval split" in capsys.readouterr().err


def test_nothing_materialised_yet_says_to_run_first(project: Settings, capsys: pytest.CaptureFixture[str]):
    assert flywheel(project, "dataset", "export", "--format", "alpaca") == 2
    error = error_line(capsys.readouterr().err)
    assert error.startswith("error: no instruction dataset yet") and error.endswith("run `make run` first")
    assert flywheel(project, "eval") == 2  # the default suites need the dataset; HumanEval alone does not
    error = error_line(capsys.readouterr().err)
    assert "run `make run` first" in error and "--suite humaneval" in error


# --- eval ------------------------------------------------------------------------------------------------------------


def test_eval_scores_an_adapter_folder_beside_the_base_model(
    project: Settings, tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    adapter = tmp_path / "my-adapter"
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    get_peft_model(model, LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"])).save_pretrained(adapter)
    report = tmp_path / "eval.json"
    args = ["--suite", "humaneval", "--humaneval-problems", "2", "--output", str(report)]
    assert flywheel(project, "eval", "--adapter", str(adapter), *args) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0] == f"| suite | metric | n | base ({tiny_model_dir}) | candidate (my-adapter) | candidate - base |"
    assert table[2].startswith("| humaneval | pass@1 | 2 |") and len(table) == 3
    written = json.loads(report.read_text())
    assert written["models"] == {"candidate": "my-adapter", "base": str(tiny_model_dir)}
    assert {(s["model"], s["suite"]) for s in written["samples"]} == {("candidate", "humaneval"), ("base", "humaneval")}


def test_eval_names_an_unknown_adapter(project: Settings, capsys: pytest.CaptureFixture[str]):
    assert flywheel(project, "eval", "--adapter", "7", "--suite", "humaneval") == 2
    error = error_line(capsys.readouterr().err)
    assert "'7' is neither an adapter folder nor a version of flywheel-code-lora" in error
    assert error.endswith("(versions: none yet: run `make run` first)")


# --- benchmarks ------------------------------------------------------------------------------------------------------


def test_bench_lists_every_benchmark_with_what_it_measures(capsys: pytest.CaptureFixture[str]):
    assert main(["bench", "--list"]) == 0
    listed = dict(line.split(maxsplit=1) for line in capsys.readouterr().out.splitlines())
    bench = Path(__file__).resolve().parent.parent / "bench"
    assert set(listed) == {p.stem for p in bench.glob("*.py")}
    assert listed["crawl_stdlib"].startswith("Crawl + extract + validate")
    assert main(["bench", "no_such_bench"]) == 2
    assert "no benchmark 'no_such_bench'" in capsys.readouterr().err
