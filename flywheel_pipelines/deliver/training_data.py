"""Deliver, step 6: users' reactions become the next training data — an edit is the answer the model should give."""

from __future__ import annotations

import json
from collections.abc import Iterable

from flywheel_pipelines.define.chat import user_message
from flywheel_pipelines.define.tasks import example_id

# Task names that were renamed in the catalogue; events already stored keep their old name.
RENAMED_TASKS = {"implement_method": "code_generation"}


def examples_from_feedback(events: Iterable[dict]) -> list[dict]:
    """Edited completions become training examples: the user's edit is the output the model should have given.
    Its example id is that of the prompt, so the edit replaces the answer generated for the same prompt."""
    out = []
    for e in sorted(events, key=lambda e: e.get("id") or 0):  # arrival order: of two edits, the later one wins
        if e["kind"] != "edit" or not e.get("edited_completion"):
            continue
        task = RENAMED_TASKS.get(e["task"], e["task"])
        input_text = e.get("input") or ""
        eid = example_id(task, e["instruction"], input_text)
        out.append(
            {
                "example_id": eid,
                "task": task,
                "template_version": 0,  # written by whoever sent the prompt, not rendered from a template here
                "instruction": e["instruction"],
                "input": input_text,
                "output": e["edited_completion"],
                "origin": f"feedback:{e['event_id']}",
                "source": "feedback",
                "generation": "feedback",
                "group": f"feedback:{eid}",
                "split": "train",  # human corrections are always learnt from, never only scored
                "meta": json.dumps({}),
            }
        )
    return out


# --- preference data: what users accepted or rejected, for trl's DPO and KTO trainers ----------------------------


def _prompt(event: dict) -> list[dict]:
    return [{"role": "user", "content": user_message(event["instruction"], event.get("input") or "")}]


def _answer(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


def _prompt_key(event: dict) -> tuple[str, str, str]:
    return RENAMED_TASKS.get(event["task"], event["task"]), event["instruction"], event.get("input") or ""


def kto_examples(events: Iterable[dict]) -> list[dict]:
    """Unpaired judgements in trl's conversational KTO format (prompt, completion, label): an accepted answer is
    desirable, a rejected one is not, and an edit says both — the user's text is, the model's was not. One row per
    (prompt, answer); when users disagree about an answer, the later event wins."""
    rows: dict[tuple, dict] = {}
    for e in sorted(events, key=lambda e: e["id"]):
        judged = {"accept": [(e["completion"], True)], "reject": [(e["completion"], False)]}.get(e["kind"])
        if e["kind"] == "edit":  # an edit that changed nothing kept the answer: an accept
            kept = e["edited_completion"]
            judged = [(kept, True)] if kept == e["completion"] else [(kept, True), (e["completion"], False)]
        for answer, label in judged or []:
            if label and not answer.strip():  # nothing to learn to say; an empty answer rejected still teaches
                continue
            task, instruction, input_text = _prompt_key(e)
            rows[(task, instruction, input_text, answer)] = {
                "prompt": _prompt(e),
                "completion": _answer(answer),
                "label": label,
                "task": task,
                "origin": f"feedback:{e['event_id']}",
                "model": e.get("model") or "",
            }
    return list(rows.values())


def dpo_pairs(events: Iterable[dict]) -> list[dict]:
    """Paired preferences in trl's conversational DPO format (prompt, chosen, rejected): an edit prefers the user's
    text to the model's answer; for one prompt, every rejected answer pairs with the latest accepted or edited one.
    Identical pairs are kept once; an answer is never paired with itself."""
    ordered = sorted(events, key=lambda e: e["id"])
    preferred: dict[tuple, dict] = {}
    for e in ordered:
        if e["kind"] in ("accept", "edit"):
            preferred[_prompt_key(e)] = e
    pairs: dict[tuple, dict] = {}

    def add(e: dict, chosen: str, rejected: str, origins: list[str]) -> None:
        if chosen.strip() and chosen != rejected:  # an empty rejected answer is a preference too
            task, instruction, input_text = _prompt_key(e)
            pairs[(task, instruction, input_text, chosen, rejected)] = {
                "prompt": _prompt(e),
                "chosen": _answer(chosen),
                "rejected": _answer(rejected),
                "task": task,
                "origin": ",".join(f"feedback:{o}" for o in origins),
                "model": e.get("model") or "",
            }

    for e in ordered:
        if e["kind"] == "edit":
            add(e, e["edited_completion"], e["completion"], [e["event_id"]])
        elif e["kind"] == "reject" and (best := preferred.get(_prompt_key(e))) is not None:
            chosen = best["edited_completion"] if best["kind"] == "edit" else best["completion"]
            add(e, chosen, e["completion"], [best["event_id"], e["event_id"]])
    return list(pairs.values())
