"""Step 6, feedback to data: the store read by day of arrival and joined with the completion log; edits, accepts
and rejects as DPO pairs and KTO judgements that trl reads; the sensor's backlog by count and age."""

from datetime import UTC, date, datetime

import pytest
from sqlalchemy import update

from flywheel_pipelines.deliver.feedback_days import backlog, day_bounds, events_of_day
from flywheel_pipelines.deliver.feedback_store import FeedbackStore, feedback_events
from flywheel_pipelines.deliver.training_data import dpo_pairs, kto_examples
from flywheel_pipelines_tests.conftest import feedback_line


@pytest.fixture
def store(tmp_path):
    s = FeedbackStore(f"sqlite:///{tmp_path / 'feedback.db'}")
    yield s
    s.dispose()


def _arrived(store: FeedbackStore, event_id: str, when: datetime) -> None:
    with store.engine.begin() as conn:
        conn.execute(update(feedback_events).where(feedback_events.c.event_id == event_id).values(imported_at=when))


def test_a_days_events_are_those_received_that_day_joined_with_their_completion(store):
    store.log_completion(
        {
            "completion_id": "cmpl-1",
            "endpoint": "chat.completions",
            "model": "flywheel:v3",
            "adapter_version": "3",
            "task": "code_generation",
            "instruction": "Implement f",
            "input": "def f(x):",
            "prompt": "<prompt>",
            "output": "return x",
            "latency_ms": 12.5,
            "prompt_tokens": 5,
            "completion_tokens": 2,
        }
    )
    store.import_lines([feedback_line("yesterday"), feedback_line("today", kind="accept"), feedback_line("late")])
    with store.engine.begin() as conn:
        conn.execute(
            update(feedback_events).where(feedback_events.c.event_id == "today").values(completion_id="cmpl-1")
        )
    _arrived(store, "yesterday", datetime(2026, 11, 21, 23, 59, tzinfo=UTC))
    _arrived(store, "today", datetime(2026, 11, 22, 0, 0, tzinfo=UTC))
    _arrived(store, "late", datetime(2026, 11, 23, 0, 0, tzinfo=UTC))
    (today,) = events_of_day(store, date(2026, 11, 22), "UTC")
    assert today["event_id"] == "today" and today["kind"] == "accept"
    assert (today["adapter_version"], today["latency_ms"], today["endpoint"]) == ("3", 12.5, "chat.completions")
    (yesterday,) = events_of_day(store, date(2026, 11, 21), "UTC")
    assert yesterday["event_id"] == "yesterday" and yesterday["adapter_version"] is None  # imported, no completion
    # In another time zone the same instants fall on other days.
    assert [e["event_id"] for e in events_of_day(store, date(2026, 11, 22), "America/New_York")] == ["late"]
    assert day_bounds(date(2026, 11, 22), "Europe/Berlin")[0] == datetime(2026, 11, 21, 23, 0, tzinfo=UTC)


def test_the_backlog_counts_new_events_their_days_and_how_long_the_oldest_waited(store):
    assert backlog(store, 0, "UTC").count == 0
    store.import_lines([feedback_line("a"), feedback_line("b"), feedback_line("c")])
    _arrived(store, "a", datetime(2026, 11, 20, 8, 0, tzinfo=UTC))
    _arrived(store, "b", datetime(2026, 11, 22, 8, 0, tzinfo=UTC))
    waiting = backlog(store, 0, "UTC")
    assert (waiting.count, waiting.newest_id) == (3, 3)
    assert waiting.days[:2] == (date(2026, 11, 20), date(2026, 11, 22))
    assert waiting.age_minutes(datetime(2026, 11, 20, 9, 0, tzinfo=UTC)) == pytest.approx(60)
    after_first = backlog(store, 1, "UTC")
    assert after_first.count == 2 and date(2026, 11, 20) not in after_first.days


def _event(i: int, kind: str, completion: str, edited: str | None = None, instruction: str = "Implement f") -> dict:
    return {
        "id": i,
        "event_id": f"e{i}",
        "kind": kind,
        "task": "code_generation",
        "instruction": instruction,
        "input": "def f(x):",
        "completion": completion,
        "edited_completion": edited,
        "model": "flywheel:v1",
    }


def test_edits_and_rejects_become_dpo_pairs_and_every_judgement_a_kto_row():
    events = [
        _event(1, "accept", "return x + 1"),
        _event(2, "reject", "return None"),
        _event(3, "edit", "return x", edited="return x * 2"),
        _event(4, "reject", "pass"),  # after the edit: the edit is the preferred answer now
        _event(5, "reject", "return x", instruction="Another prompt"),  # nothing preferred for this prompt
        _event(6, "edit", "same", edited="same", instruction="Third prompt"),  # changed nothing: no pair
    ]
    pairs = dpo_pairs(events)
    triples = [(p["chosen"][0]["content"], p["rejected"][0]["content"]) for p in pairs]
    assert triples == [  # every reject of a prompt pairs with its latest preferred answer: the edit
        ("return x * 2", "return None"),
        ("return x * 2", "return x"),
        ("return x * 2", "pass"),
    ]
    assert pairs[0]["prompt"] == [{"role": "user", "content": "Implement f\n\ndef f(x):"}]
    assert pairs[0]["origin"] == "feedback:e3,feedback:e2"
    judged = {(r["completion"][0]["content"], r["label"]) for r in kto_examples(events)}
    assert judged == {
        ("return x + 1", True),
        ("return None", False),
        ("return x * 2", True),
        ("return x", False),  # both prompts' "return x" were rejected
        ("pass", False),
        ("same", True),  # an edit that changed nothing kept the answer
    }


def test_the_exports_are_datasets_trls_preference_trainers_read(tmp_path):
    import pandas as pd
    from datasets import load_dataset
    from trl.data_utils import is_conversational, unpair_preference_dataset

    events = [_event(1, "edit", "return x", edited="return x * 2"), _event(2, "accept", "return x * 2")]
    for name, rows in (("dpo", dpo_pairs(events)), ("kto", kto_examples(events))):
        pd.DataFrame(rows).drop(columns=["task", "origin", "model"]).to_json(
            tmp_path / f"{name}.jsonl", orient="records", lines=True
        )
    dpo = load_dataset("json", data_files=str(tmp_path / "dpo.jsonl"), split="train")
    assert set(dpo.column_names) == {"prompt", "chosen", "rejected"} and is_conversational(dpo[0])
    kto = load_dataset("json", data_files=str(tmp_path / "kto.jsonl"), split="train")
    assert set(kto.column_names) == {"prompt", "completion", "label"} and is_conversational(kto[0])
    assert sorted(unpair_preference_dataset(dpo)["label"]) == [False, True]  # trl turns pairs into KTO rows too


def test_the_newest_edit_of_a_prompt_is_the_one_that_trains():
    from flywheel_pipelines.deliver.training_data import examples_from_feedback

    older, newer = _event(1, "edit", "a", edited="return 1"), _event(2, "edit", "b", edited="return 2")
    examples = examples_from_feedback([newer, older])  # in any order
    assert [e["output"] for e in examples] == ["return 1", "return 2"]  # in arrival order: the later one wins


def test_a_blank_answer_can_be_rejected_but_is_never_a_desirable_one():
    events = [_event(1, "edit", "  \n", edited="return x"), _event(2, "accept", "\n", instruction="Other")]
    assert [(p["chosen"][0]["content"], p["rejected"][0]["content"]) for p in dpo_pairs(events)] == [
        ("return x", "  \n")
    ]
    assert {(r["completion"][0]["content"], r["label"]) for r in kto_examples(events)} == {
        ("return x", True),
        ("  \n", False),
    }
