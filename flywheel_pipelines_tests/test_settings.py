"""flywheel.yaml is the one file a user edits: it loads into typed settings, and mistakes name the key at fault."""

from pathlib import Path

import pytest

from flywheel_pipelines.settings import SettingsError, load_settings
from flywheel_pipelines_tests.conftest import REPO_ROOT


def test_the_shipped_config_loads_with_paths_resolved_against_its_folder():
    settings = load_settings(REPO_ROOT / "flywheel.yaml")
    assert settings.root == REPO_ROOT
    assert settings.data_path == REPO_ROOT / "data"
    assert settings.feedback_database_url == f"sqlite:///{REPO_ROOT / 'data' / 'feedback.db'}"
    assert settings.mlflow_tracking_uri.startswith(f"sqlite:///{REPO_ROOT}")
    assert settings.base_model_reference.endswith("SmolLM2-135M-Instruct.Q4_1.gguf")
    assert [s.name for s in settings.sources] == ["flywheel_pipelines", "samples"]


def test_flywheel_config_env_var_picks_another_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    other = tmp_path / "other.yaml"
    other.write_text("sources: [{name: a, path: src}]\nbase_model: {name_or_path: Qwen/Qwen2.5-Coder-0.5B-Instruct}\n")
    monkeypatch.setenv("FLYWHEEL_CONFIG", str(other))
    settings = load_settings()
    assert settings.source == other
    assert settings.base_model_reference == "Qwen/Qwen2.5-Coder-0.5B-Instruct"  # a hub id stays a hub id
    assert settings.training.lora_r == 16  # documented defaults fill the rest


def test_an_unknown_key_is_named_with_its_path(tmp_path: Path):
    bad = tmp_path / "flywheel.yaml"
    bad.write_text("sources: [{name: a, path: src}]\nbase_model: {name_or_path: m}\ntraining: {lora_rank: 8}\n")
    with pytest.raises(SettingsError, match=r"training\.lora_rank: unknown key"):
        load_settings(bad)


def test_a_wrong_type_is_named_with_its_path(tmp_path: Path):
    bad = tmp_path / "flywheel.yaml"
    bad.write_text("sources: [{name: a, path: src}]\nbase_model: {name_or_path: m}\ntraining: {max_steps: many}\n")
    with pytest.raises(SettingsError, match=r"training\.max_steps: Input should be a valid integer"):
        load_settings(bad)


def test_missing_file_and_broken_yaml_are_clear_errors(tmp_path: Path):
    with pytest.raises(SettingsError, match="config file not found"):
        load_settings(tmp_path / "absent.yaml")
    broken = tmp_path / "flywheel.yaml"
    broken.write_text("sources: [unclosed\n")
    with pytest.raises(SettingsError, match="not valid YAML"):
        load_settings(broken)


def test_the_mlflow_store_is_the_configured_one_else_the_environments_else_the_embedded_sqlite(tmp_path, monkeypatch):
    import flywheel_pipelines.settings as settings_module

    base = {"sources": [{"name": "s", "path": "."}], "base_model": {"name_or_path": "m"}}
    monkeypatch.setattr(settings_module, "_MLFLOW_TRACKING_URI_AT_START", None)
    embedded = settings_module.parse_settings(base, tmp_path)
    assert embedded.mlflow_tracking_uri == f"sqlite:///{tmp_path / 'data' / 'mlflow' / 'mlflow.db'}"
    monkeypatch.setattr(settings_module, "_MLFLOW_TRACKING_URI_AT_START", "http://mlflow.internal:5000")
    assert settings_module.parse_settings(base, tmp_path).mlflow_tracking_uri == "http://mlflow.internal:5000"
    configured = settings_module.parse_settings({**base, "tracking": {"tracking_uri": "sqlite:///t.db"}}, tmp_path)
    assert configured.mlflow_tracking_uri == f"sqlite:///{tmp_path / 't.db'}"


@pytest.mark.parametrize(
    ("tolerances", "message"),
    [
        ("{humaneval/pass_at_1: 0.1}", "humaneval has no metric 'pass_at_1' \\(it has pass@1, sampled_pass@<k>\\)"),
        ("{memorisation/verbatim_rate: 0.1}", "memorisation is held under memorisation_ceiling"),
        ("{unit_tests/pass@1: 0.1}", "no suite 'unit_tests'"),
        ("{humaneval/pass@1: -0.1}", "the tolerance of humaneval/pass@1 is negative"),
    ],
)
def test_a_promotion_tolerance_names_a_metric_that_eval_scores_reports(tmp_path: Path, tolerances: str, message: str):
    bad = tmp_path / "flywheel.yaml"
    bad.write_text(
        f"sources: [{{name: a, path: src}}]\nbase_model: {{name_or_path: m}}\npromotion: {{tolerances: {tolerances}}}\n"
    )
    with pytest.raises(SettingsError, match=rf"promotion\.tolerances: .*{message}"):
        load_settings(bad)
