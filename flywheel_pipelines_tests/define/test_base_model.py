"""The base model: the offline default GGUF becomes an ordinary transformers folder that chats in code; a local
folder is used as it is; an unreachable hub id is a clear error."""

from pathlib import Path

import pytest

from flywheel_pipelines.define.base_model import resolve_base_model
from flywheel_pipelines.settings import load_settings
from flywheel_pipelines_tests.conftest import REPO_ROOT


def test_the_default_gguf_model_converts_once_and_answers_through_its_chat_template(tmp_path: Path):
    from flywheel_pipelines.define.evaluate.generate import generate_answers, load_for_generation

    gguf = Path(load_settings(REPO_ROOT / "flywheel.yaml").base_model_reference)
    assert gguf.is_file(), f"{gguf} is missing: `make model` fetches it (make test does this first)"
    resolved = resolve_base_model(str(gguf), tmp_path)
    assert resolved.origin == "gguf" and resolved.parameters == 134_515_008
    assert (resolved.path / "config.json").exists() and (resolved.path / "model.safetensors").exists()
    stamp = (resolved.path / "model.safetensors").stat().st_mtime_ns
    assert resolve_base_model(str(gguf), tmp_path).path == resolved.path  # converted once, then reused
    assert (resolved.path / "model.safetensors").stat().st_mtime_ns == stamp

    model, tokenizer = load_for_generation(resolved.path)
    (answer,) = generate_answers(
        model,
        tokenizer,
        [("Write a Python function `add(a, b)` that returns a + b.", "")],
        max_new_tokens=48,
        batch_size=1,
    )
    assert "def add" in answer


def test_a_local_transformers_folder_is_used_as_it_is(tiny_model_dir: Path, tmp_path: Path):
    resolved = resolve_base_model(str(tiny_model_dir), tmp_path)
    assert (resolved.path, resolved.origin) == (tiny_model_dir, "folder") and resolved.parameters > 0


def test_missing_models_fail_with_what_to_do(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="make model"):
        resolve_base_model(str(tmp_path / "absent.gguf"), tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"no config\.json"):
        resolve_base_model(str(tmp_path / "empty"), tmp_path)
    with pytest.raises(RuntimeError, match="could not fetch base model 'no-such-org/no-such-model'"):
        resolve_base_model("no-such-org/no-such-model", tmp_path)
