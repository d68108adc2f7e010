"""Step 6: feedback enters the SQL store through a validated import; bad lines are reported and lose nothing."""

import re
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from flywheel_pipelines.deliver.feedback_store import FeedbackImportError, FeedbackStore
from flywheel_pipelines_tests.conftest import SAMPLES, feedback_line

POSTGRES_SERVER = "postgresql+psycopg2://postgres@127.0.0.1:5432"


def _postgres_database() -> str:
    """A fresh database on the real PostgreSQL server, so runs never see each other's rows."""
    name = f"flywheel_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(f"{POSTGRES_SERVER}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return name


def _drop_postgres_database(name: str) -> None:
    admin = create_engine(f"{POSTGRES_SERVER}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path):
    if request.param == "sqlite":
        s = FeedbackStore(f"sqlite:///{tmp_path / 'feedback.db'}")
        yield s
        s.dispose()
        return
    name = _postgres_database()
    s = FeedbackStore(f"{POSTGRES_SERVER}/{name}")
    yield s
    s.dispose()
    _drop_postgres_database(name)


def write(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_the_sample_feedback_file_imports_and_reimporting_it_adds_nothing(store: FeedbackStore):
    sample = SAMPLES / "feedback" / "sample_feedback.jsonl"
    first = store.import_jsonl(sample)
    assert (first.imported, first.duplicates) == (3, 0)
    again = store.import_jsonl(sample)
    assert (again.imported, again.duplicates) == (0, 3)
    events = store.events()
    assert [e["kind"] for e in events] == ["accept", "reject", "edit"]
    assert events[2]["edited_completion"].startswith('total = Decimal("0")')
    assert store.new_events_since(0) == (3, events[-1]["id"])
    assert store.new_events_since(events[-1]["id"]) == (0, events[-1]["id"])


def test_an_invalid_line_is_reported_with_its_number_and_nothing_is_written(store: FeedbackStore, tmp_path: Path):
    store.import_lines([feedback_line("kept")])
    lines = [
        feedback_line("a"),
        "{not json",
        feedback_line("b", kind="edit", edited_completion=""),
        feedback_line("c", kind="accept", edited_completion="x"),
        '{"event_id": "d", "kind": "like"}',
    ]
    with pytest.raises(FeedbackImportError) as err:
        store.import_jsonl(write(tmp_path, lines))
    message = str(err.value)
    assert "line 2: not JSON" in message
    assert "line 3: edited_completion" in message  # an edit must say what the user kept
    assert "line 4:" in message  # only an edit may carry an edited completion
    assert re.search(r"line 5: .*'task' is a required property.*kind: 'like' is not one of", message)
    assert [e["event_id"] for e in store.events()] == ["kept"]  # nothing already stored is lost, nothing added


def test_quarantining_imports_the_valid_lines_and_keeps_the_invalid_ones_with_reasons(
    store: FeedbackStore, tmp_path: Path
):
    report = store.import_jsonl(
        write(tmp_path, [feedback_line("a"), "[]", feedback_line("b")]), quarantine_invalid=True
    )
    assert (report.imported, report.quarantined) == (2, 1)
    (row,) = store.quarantine()
    assert row["line_number"] == 2 and row["raw"] == "[]" and "is not of type 'object'" in row["reason"]


def test_duplicate_ids_inside_one_file_are_stored_once(store: FeedbackStore):
    report = store.import_lines([feedback_line("same"), feedback_line("same")])
    assert (report.imported, report.duplicates) == (1, 1)


def test_posted_verdicts_become_events_of_their_completion_once_per_event_id_even_inside_one_batch(
    store: FeedbackStore,
):
    from flywheel_pipelines.deliver.feedback_store import UNCATALOGUED_TASK, PostedFeedback

    answer = {
        "completion_id": "chatcmpl-1",
        "endpoint": "chat.completions",
        "model": "flywheel-code-lora:v2",
        "adapter_version": "2",
        "instruction": "Say hello",
        "prompt": "<|im_start|>user\nSay hello<|im_end|>\n",
        "output": "hello",
        "latency_ms": 3.0,
        "prompt_tokens": 5,
        "completion_tokens": 1,
    }
    posts = [
        PostedFeedback("e-1", "chatcmpl-1", "edited", edited_text="Hello!"),
        PostedFeedback("e-1", "chatcmpl-1", "accepted"),
        PostedFeedback("e-2", "chatcmpl-404", "rejected"),
    ]
    assert store.write([answer], posts) == ["stored", "duplicate", "unknown_completion"]
    assert store.write(posts=posts[:1]) == ["duplicate"]
    (event,) = store.events()
    assert (event["kind"], event["task"], event["instruction"], event["input"]) == (
        "edit",
        UNCATALOGUED_TASK,  # asked without a task of the catalogue
        "Say hello",
        "",
    )
    assert (event["completion"], event["edited_completion"], event["model"]) == (
        "hello",
        "Hello!",
        "flywheel-code-lora:v2",
    )
    assert store.completion("chatcmpl-1")["adapter_version"] == "2"
