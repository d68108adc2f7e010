"""Step 6: what users did with an answer comes back through POST /v1/feedback — validated with the field at fault
named, stored once however often it is retried, committed before it is acknowledged — on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from flywheel_pipelines.deliver.api import create_app, serve_in_thread
from flywheel_pipelines.deliver.feedback_api import StoreWriter
from flywheel_pipelines.deliver.feedback_store import FeedbackStore, PostedFeedback
from flywheel_pipelines_tests.deliver.test_feedback_store import (
    POSTGRES_SERVER,
    _drop_postgres_database,
    _postgres_database,
)
from flywheel_pipelines_tests.deliver.test_serving import TOKEN, http, make_project


def completion(completion_id: str, **fields: object) -> dict:
    return {
        "completion_id": completion_id,
        "endpoint": "chat.completions",
        "model": "flywheel-code-lora:v3",
        "adapter_version": "3",
        "task": "code_generation",
        "instruction": "Implement the function `add` in Python.",
        "input": "```python\ndef add(a, b):\n```",
        "prompt": "<|im_start|>user\n...",
        "output": "return a - b",
        "latency_ms": 12.5,
        "prompt_tokens": 20,
        "completion_tokens": 4,
        "user": "carol",
        "client_id": "vscode",
        **fields,
    }


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path):
    """A running server (the base model answers: feedback needs no champion) on a SQLite or PostgreSQL store that
    already holds three completions."""
    database = _postgres_database() if request.param == "postgresql" else None
    feedback = {"database_url": f"{POSTGRES_SERVER}/{database}"} if database else {}
    settings = make_project(tmp_path_factory.mktemp(request.param), tiny_model_dir, feedback=feedback)
    store = FeedbackStore(settings.feedback_database_url)
    for i in range(3):
        store.log_completion(completion(f"chatcmpl-{i}"))
    app = create_app(settings, token=TOKEN, store=store, poll_registry=False)
    with serve_in_thread(app) as url:
        yield url + "/feedback", store, app, settings
    store.dispose()
    if database:
        _drop_postgres_database(database)


def events_of(store: FeedbackStore, completion_id: str) -> list[dict]:
    return [e for e in store.events() if e["completion_id"] == completion_id]


def test_each_verdict_is_stored_with_the_prompt_and_answer_of_its_completion(server):
    url, store, _, _ = server
    posted = {
        "accepted": {"verdict": "accepted", "user": "dave", "client_timestamp": "2026-11-20T10:00:00+01:00"},
        "rejected": {"verdict": "rejected"},
        "edited": {"verdict": "edited", "edited_text": "return a + b", "client_id": "jetbrains"},
    }
    for verdict, body in posted.items():
        status, answer = http(url, {"completion_id": "chatcmpl-0", "event_id": f"ev-{verdict}", **body})
        assert status == 200 and json.loads(answer) == {
            "object": "feedback",
            "event_id": f"ev-{verdict}",
            "completion_id": "chatcmpl-0",
            "status": "stored",
        }
    events = {e["event_id"]: e for e in events_of(store, "chatcmpl-0")}
    accepted, rejected, edited = events["ev-accepted"], events["ev-rejected"], events["ev-edited"]
    assert [accepted["kind"], rejected["kind"], edited["kind"]] == ["accept", "reject", "edit"]
    for event in events.values():  # copied from the completion: it reads like an imported event and trains so
        assert event["task"] == "code_generation" and event["instruction"].startswith("Implement the function")
        assert event["input"].startswith("```python") and event["completion"] == "return a - b"
        assert event["model"] == "flywheel-code-lora:v3"
    assert edited["edited_completion"] == "return a + b" and accepted["edited_completion"] is None
    assert (accepted["user"], rejected["user"]) == ("dave", "carol")  # else the user the completion was asked for
    assert (edited["client_id"], rejected["client_id"]) == ("jetbrains", "vscode")
    assert accepted["created_at"].replace(tzinfo=accepted["created_at"].tzinfo or UTC) == datetime(
        2026, 11, 20, 9, tzinfo=UTC
    )


@pytest.mark.parametrize(
    ("body", "param", "reason"),
    [
        ({"completion_id": "chatcmpl-1", "verdict": "edited"}, "edited_text", "an edited verdict sends edited_text"),
        ({"completion_id": "chatcmpl-1", "verdict": "accepted", "edited_text": "x"}, "edited_text", "only an edited"),
        ({"completion_id": "chatcmpl-1", "verdict": "liked"}, "verdict", "is not one of"),
        ({"verdict": "accepted"}, "completion_id", "is required"),
        ({"completion_id": "chatcmpl-1", "verdict": "accepted", "mood": "happy"}, "mood", "not a field"),
        (
            {"completion_id": "chatcmpl-1", "verdict": "rejected", "client_timestamp": "yesterday"},
            "client_timestamp",
            "date-time",
        ),
        ({"completion_id": "chatcmpl-404", "verdict": "accepted"}, "completion_id", "no completion with id"),
    ],
)
def test_a_bad_post_is_refused_with_422_naming_the_field_and_the_reason(server, body, param, reason):
    url, store, _, _ = server
    before = len(store.events())
    status, answer = http(url, body)
    error = json.loads(answer)["error"]
    assert status == 422 and error["param"] == param and reason in error["message"]
    assert error["type"] == "invalid_request_error"
    assert len(store.events()) == before


def test_a_retried_post_is_stored_once_with_or_without_an_event_id(server):
    url, store, _, _ = server
    with_id = {"completion_id": "chatcmpl-1", "verdict": "accepted", "event_id": "retry-1"}
    without = {"completion_id": "chatcmpl-1", "verdict": "edited", "edited_text": "x", "user": "erin"}
    first = [json.loads(http(url, body)[1]) for body in (with_id, without)]
    again = [json.loads(http(url, body)[1]) for body in (with_id, without)]
    assert [a["status"] for a in first] == ["stored", "stored"]
    assert [a["status"] for a in again] == ["duplicate", "duplicate"]
    assert [a["event_id"] for a in again] == [a["event_id"] for a in first]
    assert len(events_of(store, "chatcmpl-1")) == 2


def test_a_batch_stores_its_valid_posts_and_answers_each_invalid_one_by_index(server):
    url, store, _, _ = server
    batch = [
        {"completion_id": "chatcmpl-2", "verdict": "accepted", "event_id": "b-1"},
        {"completion_id": "chatcmpl-2", "verdict": "edited"},
        {"completion_id": "chatcmpl-2", "verdict": "accepted", "event_id": "b-1"},
        {"completion_id": "chatcmpl-missing", "verdict": "rejected"},
        {"completion_id": "chatcmpl-2", "verdict": "rejected", "event_id": "b-2"},
    ]
    status, answer = http(url + "/batch", {"events": batch})
    result = json.loads(answer)
    assert status == 200 and (result["stored"], result["duplicates"], result["rejected"]) == (2, 1, 2)
    assert [r["status"] for r in result["data"]] == ["stored", "rejected", "duplicate", "rejected", "stored"]
    assert result["data"][1]["error"]["param"] == "edited_text"
    assert result["data"][3]["error"]["param"] == "completion_id"
    assert sorted(e["event_id"] for e in events_of(store, "chatcmpl-2")) == ["b-1", "b-2"]
    again = json.loads(http(url + "/batch", {"events": batch[:1]})[1])
    assert again["data"][0]["status"] == "duplicate"
    status, answer = http(url + "/batch", {"events": []})
    assert status == 422 and json.loads(answer)["error"]["param"] == "events"


def test_concurrent_posts_are_committed_in_groups_and_every_acknowledged_one_is_stored(server):
    url, store, app, _ = server
    commits_before = app.state.writer.commits
    bodies = [
        {"completion_id": f"chatcmpl-{i % 3}", "verdict": "accepted", "event_id": f"load-{i}"} for i in range(300)
    ]
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda body: http(url, body), bodies + bodies[:50]))  # 50 retried at once
    assert {status for status, _ in answers} == {200}
    stored = {e["event_id"] for e in store.events() if e["event_id"].startswith("load-")}
    assert stored == {b["event_id"] for b in bodies}
    assert app.state.writer.commits - commits_before < len(answers)  # grouped, not one commit per post


def test_the_sqlite_store_is_in_wal_mode_with_full_sync(tmp_path: Path):
    store = FeedbackStore(f"sqlite:///{tmp_path / 'feedback.db'}")
    with store.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL
    store.dispose()


def test_a_write_that_fails_fails_only_its_own_request(tmp_path: Path):
    store = FeedbackStore(f"sqlite:///{tmp_path / 'feedback.db'}")
    store.log_completion(completion("c-1"))
    real_write = store.write

    def write(completion_records=(), posts=()):
        if any(p.event_id == "poison" for p in posts):
            raise RuntimeError("refused")
        return real_write(completion_records, posts)

    store.write = write
    writer = StoreWriter(store)
    # Queued before the writer starts, so the three land in one group, which the poisoned post makes fail.
    jobs = [writer.submit_posts([PostedFeedback(eid, "c-1", "accepted")]) for eid in ("first", "poison", "ok")]
    writer.start()
    assert jobs[0].result(10) == ["stored"] and jobs[2].result(10) == ["stored"]
    with pytest.raises(RuntimeError, match="refused"):
        jobs[1].result(10)
    writer.close()
    assert sorted(e["event_id"] for e in store.events()) == ["first", "ok"]
    store.dispose()


def test_importing_jsonl_still_works_beside_the_server(server, tmp_path: Path):
    from flywheel_pipelines.cli import main
    from flywheel_pipelines_tests.conftest import feedback_line

    _, store, _, settings = server
    path = tmp_path / "events.jsonl"
    path.write_text(feedback_line("from-a-file") + "\n")
    assert main(["--config", str(settings.source), "feedback", "import", str(path)]) == 0
    assert "from-a-file" in {e["event_id"] for e in store.events()}
