"""Deliver, step 6: users' reactions become the next training data — an edit is the answer the model should give."""

from __future__ import annotations

from collections.abc import Iterable

from flywheel_pipelines.define.instructions import example_id


def examples_from_feedback(events: Iterable[dict]) -> list[dict]:
    """Edited completions become training examples: the user's edit is the output the model should have given."""
    out = []
    for e in events:
        if e["kind"] != "edit" or not e.get("edited_completion"):
            continue
        out.append(
            {
                "example_id": example_id(e["instruction"], e.get("input") or ""),
                "task": e["task"],
                "instruction": e["instruction"],
                "input": e.get("input") or "",
                "output": e["edited_completion"],
                "origin": f"feedback:{e['event_id']}",
                "split": "train",  # human corrections are always learnt from, never only scored
            }
        )
    return out
