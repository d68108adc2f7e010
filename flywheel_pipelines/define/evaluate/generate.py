"""Batched greedy generation through the shared chat prompts, for a base model with or without a LoRA adapter."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from flywheel_pipelines.define.chat import prompt_text
from flywheel_pipelines.define.train import pick_dtype


def load_for_generation(
    base_model_path: str | Path, adapter_path: str | Path | None = None, dtype: str = "auto"
) -> tuple:
    """(model, tokenizer) in eval mode; the adapter, when given, is applied with peft."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base_model_path = Path(base_model_path)
    adapter_path = Path(adapter_path) if adapter_path else None
    source = adapter_path if adapter_path and (adapter_path / "tokenizer_config.json").exists() else base_model_path
    tokenizer = AutoTokenizer.from_pretrained(source)
    tokenizer.padding_side = "left"  # generation continues at the right edge of every row
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(base_model_path, dtype=pick_dtype(dtype))
    if adapter_path is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter_path)
    if torch.cuda.is_available():
        model = model.to("cuda")
    model.eval()
    return model, tokenizer


class StopAfterCodeBlock:
    """Stops a row once its answer holds a closed ``` block: what follows is prose nobody executes."""

    def __init__(self, tokenizer: Any, prompt_width: int):
        self.tokenizer = tokenizer
        self.prompt_width = prompt_width

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        texts = self.tokenizer.batch_decode(input_ids[:, self.prompt_width :], skip_special_tokens=True)
        done = [t.count("```") >= 2 for t in texts]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


@dataclass(frozen=True)
class Sampling:
    """Sampled answers: `n` per question at this temperature; the seed is the same for every model compared."""

    n: int
    temperature: float
    top_p: float
    seed: int


def _generate(
    model: Any,
    tokenizer: Any,
    prompts: list[str],
    *,
    max_new_tokens: int,
    batch_size: int,
    sampling: Sampling | None = None,
    stop_after_code_block: bool = True,
) -> list[list[str]]:
    from transformers import StoppingCriteriaList

    per_prompt = sampling.n if sampling else 1
    answers: list[list[str]] = []
    for start in range(0, len(prompts), batch_size):
        batch = prompts[start : start + batch_size]
        enc = tokenizer(batch, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
        width = enc["input_ids"].shape[1]
        options: dict[str, Any] = {"do_sample": False}
        if sampling:
            torch.manual_seed(sampling.seed + start)  # the same draws for every model, batch by batch
            options = {
                "do_sample": True,
                "temperature": sampling.temperature,
                "top_p": sampling.top_p,
                "num_return_sequences": sampling.n,
            }
        stops = [StopAfterCodeBlock(tokenizer, width)] if stop_after_code_block else []
        with torch.inference_mode():
            out = model.generate(
                **enc,
                max_new_tokens=max_new_tokens,
                pad_token_id=tokenizer.pad_token_id,
                stopping_criteria=StoppingCriteriaList(stops),
                **options,
            )
        texts = tokenizer.batch_decode(out[:, width:], skip_special_tokens=True)
        answers.extend(texts[i : i + per_prompt] for i in range(0, len(texts), per_prompt))
    return answers


def generate_answers(
    model: Any,
    tokenizer: Any,
    questions: list[tuple[str, str]],
    *,
    max_new_tokens: int,
    batch_size: int,
) -> list[str]:
    """Greedy answers to (instruction, input) pairs, in order."""
    prompts = [prompt_text(tokenizer, instruction, input_text) for instruction, input_text in questions]
    return [a[0] for a in _generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size)]


def sample_answers(
    model: Any,
    tokenizer: Any,
    questions: list[tuple[str, str]],
    sampling: Sampling,
    *,
    max_new_tokens: int,
    batch_size: int,
) -> list[list[str]]:
    """`sampling.n` sampled answers per (instruction, input) pair, in order."""
    prompts = [prompt_text(tokenizer, instruction, input_text) for instruction, input_text in questions]
    # num_return_sequences multiplies the rows of a batch: keep the rows per forward pass near batch_size.
    rows = max(1, batch_size // sampling.n)
    return _generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=rows, sampling=sampling)


def continue_answers(
    model: Any,
    tokenizer: Any,
    prompts: list[tuple[str, str, str]],
    *,
    max_new_tokens: int,
    batch_size: int,
) -> list[str]:
    """Greedy continuations of (instruction, input, start of the answer): what the model says next."""
    texts = [prompt_text(tokenizer, instruction, input_text) + prefix for instruction, input_text, prefix in prompts]
    out = _generate(
        model, tokenizer, texts, max_new_tokens=max_new_tokens, batch_size=batch_size, stop_after_code_block=False
    )
    return [a[0] for a in out]
