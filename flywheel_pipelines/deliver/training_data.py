"""Deliver, step 6: users' reactions become the next training data — an edit is the answer the model should give."""

from __future__ import annotations

import json
from collections.abc import Iterable

from flywheel_pipelines.define.tasks import example_id

# Task names that were renamed in the catalogue; events already stored keep their old name.
RENAMED_TASKS = {"implement_method": "code_generation"}


def examples_from_feedback(events: Iterable[dict]) -> list[dict]:
    """Edited completions become training examples: the user's edit is the output the model should have given.
    Its example id is that of the prompt, so the edit replaces the answer generated for the same prompt."""
    out = []
    for e in events:
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
