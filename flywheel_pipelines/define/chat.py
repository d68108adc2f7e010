"""How an instruction example is put to a model: through its chat template, or a plain layout when it has none.

Training and generation share these functions, so a model is always trained on exactly the prompts it is asked.
"""

from __future__ import annotations

from typing import Any

PLAIN_TEMPLATE = "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"


def user_message(instruction: str, input_text: str) -> str:
    return f"{instruction}\n\n{input_text}" if input_text else instruction


def prompt_text(tokenizer: Any, instruction: str, input_text: str) -> str:
    """The text a model sees before it answers (generation prompt included)."""
    if getattr(tokenizer, "chat_template", None):
        messages = [{"role": "user", "content": user_message(instruction, input_text)}]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return PLAIN_TEMPLATE.format(instruction=instruction, input=input_text)


def answer_suffix(tokenizer: Any) -> str:
    """What ends an answer in this tokenizer's layout, so a trained model learns to stop."""
    if getattr(tokenizer, "chat_template", None):
        probe = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "ANSWER"}]
        rendered = tokenizer.apply_chat_template(probe, tokenize=False)
        return rendered.split("ANSWER", 1)[1]
    return tokenizer.eos_token or ""


def tokenize_for_training(
    tokenizer: Any, instruction: str, input_text: str, output: str, max_length: int
) -> dict[str, list[int]]:
    """input_ids and labels for one example; prompt tokens are labelled -100 so only the answer is learnt."""
    prompt_ids = tokenizer(prompt_text(tokenizer, instruction, input_text), add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(output + answer_suffix(tokenizer), add_special_tokens=False)["input_ids"]
    # Keep the whole answer when possible: cut the prompt from the left (the signature sits at its end).
    room_for_prompt = max(max_length - len(answer_ids), max_length // 2)
    prompt_ids = prompt_ids[-room_for_prompt:]
    input_ids = (prompt_ids + answer_ids)[:max_length]
    labels = ([-100] * len(prompt_ids) + answer_ids)[:max_length]
    return {"input_ids": input_ids, "labels": labels}
