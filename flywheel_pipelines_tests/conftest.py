"""Shared fixtures: a tiny chat model built in-process, and a throw-away project (config, sources, stores)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml

from flywheel_pipelines.settings import Settings, load_settings
from flywheel_pipelines_tests.tiny_model import build_tiny_chat_model, pretrain_on

REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLES = REPO_ROOT / "data" / "samples"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    corpus = [p.read_text() for p in sorted((REPO_ROOT / "flywheel_pipelines").rglob("*.py"))]
    corpus += [p.read_text() for p in sorted(SAMPLES.rglob("*.py"))]
    return build_tiny_chat_model(tmp_path_factory.mktemp("tiny-model"), corpus)


SAMPLE_SUFFIXES = (".py", ".java", ".kt", ".ts", ".js", ".go", ".md", ".yaml", ".json")


@pytest.fixture(scope="session")
def pretrained_tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model after a few seconds of reading the sample sources (and only them, so it does not change when
    the package's code does): it writes code-like text, so guide metrics can tell a working adapter from a
    broken one."""
    corpus = [p.read_text() for p in sorted(SAMPLES.rglob("*")) if p.is_file() and p.suffix in SAMPLE_SUFFIXES]
    return pretrain_on(build_tiny_chat_model(tmp_path_factory.mktemp("pretrained-tiny-model"), corpus), corpus)


def project_config(root: Path, base_model: str, **overrides: dict) -> dict:
    """A flywheel.yaml for a project under `root`: the sample shop code, small training and eval budgets."""
    config = {
        "data_dir": "data",
        "sources": [{"name": "shop", "path": "code"}],
        "base_model": {"name_or_path": base_model},
        "tasks": {"code_generation": {"min_body_lines": 1}, "eval_fraction": 0.3},
        "training": {
            "max_steps": 3,
            "per_device_batch_size": 2,
            "max_seq_length": 128,
            "lora_r": 4,
            "lora_alpha": 8,
            "target_modules": ["q_proj", "v_proj"],
            "warmup_steps": 0,
        },
        "evaluation": {
            "humaneval_problems": 3,
            "eval_split_examples": 3,
            "max_new_tokens": 12,
            "batch_size": 4,
            "sandbox_timeout_s": 5,
            "sandbox_workers": 2,
            "repository_problems": 2,
            "memorisation": {"prompts": 3, "prefix_words": 8, "max_new_tokens": 12, "span_words": 12},
        },
        "feedback": {"retrain_min_new_events": 3},
        "tracking": {"experiment": "test-flywheel"},
    }
    for section, values in overrides.items():
        if isinstance(values, dict) and isinstance(config.get(section), dict):
            config[section] = {**config[section], **values}
        else:
            config[section] = values
    return config


def write_project(root: Path, config: dict) -> Path:
    """The sample sources (every language, API specs, user stories) as the project's local source `code/`."""
    shutil.copytree(SAMPLES, root / "code", ignore=shutil.ignore_patterns("feedback"))
    path = root / "flywheel.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture
def project(tmp_path: Path, tiny_model_dir: Path) -> Settings:
    """A fresh project on the tiny model, with its own SQLite feedback store and MLflow store."""
    return load_settings(write_project(tmp_path, project_config(tmp_path, str(tiny_model_dir))))


def feedback_line(event_id: str, kind: str = "edit", **fields: str) -> str:
    event = {
        "event_id": event_id,
        "kind": kind,
        "task": "implement_method",
        "instruction": f"Implement the function `f_{event_id}`.",
        "input": "```python\ndef f(x):\n```",
        "completion": "return x",
        **({"edited_completion": f"return x + {len(event_id)}"} if kind == "edit" else {}),
        **fields,
    }
    return json.dumps(event)
