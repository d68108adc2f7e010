"""Step 6, durability: `flywheel serve` killed with SIGKILL in the middle of a feedback load (no shutdown, no last
flush) has lost no event it acknowledged, stored none twice, and once restarted on the same database answers a retry of
an acknowledged event `duplicate` — on SQLite and on PostgreSQL. The server and the load each run in their own
process, as in production."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import zlib
from collections import Counter
from multiprocessing import get_context
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select

from flywheel_pipelines.deliver.feedback_store import FeedbackStore, feedback_events
from flywheel_pipelines.settings import Settings
from flywheel_pipelines_tests.deliver.test_feedback_api import completion
from flywheel_pipelines_tests.deliver.test_feedback_store import (
    POSTGRES_SERVER,
    _drop_postgres_database,
    _postgres_database,
)
from flywheel_pipelines_tests.deliver.test_serving import TOKEN, make_project

COMPLETIONS = [f"chatcmpl-{i}" for i in range(10)]
CONNECTIONS = 8  # of the load process; every fourth posts batches
BATCH = 20
KILL_AFTER = 400  # acknowledged events before the kill


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def feedback_project(request: pytest.FixtureRequest, tmp_path: Path, tiny_model_dir: Path):
    """A project whose feedback store (SQLite, or a fresh PostgreSQL database) holds the completions posted about."""
    database = _postgres_database() if request.param == "postgresql" else None
    feedback = {"database_url": f"{POSTGRES_SERVER}/{database}"} if database else {}
    settings = make_project(tmp_path, tiny_model_dir, feedback=feedback)
    store = FeedbackStore(settings.feedback_database_url)
    store.write(completion_records=[completion(cid) for cid in COMPLETIONS])
    store.dispose()
    yield settings
    if database:
        _drop_postgres_database(database)


def feedback_post(event_id: str) -> dict:
    """The one post for `event_id`, however often it is sent."""
    n = zlib.crc32(event_id.encode())
    verdict = ("accepted", "rejected", "edited")[n % 3]
    post = {"completion_id": COMPLETIONS[n % len(COMPLETIONS)], "verdict": verdict, "event_id": event_id}
    return post | ({"edited_text": f"return a + b  # {event_id}"} if verdict == "edited" else {})


def up(port: int) -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", "/health")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


def post(connection: http.client.HTTPConnection, path: str, body: dict) -> tuple[int, dict]:
    headers = {"content-type": "application/json", "authorization": f"Bearer {TOKEN}"}
    connection.request("POST", path, json.dumps(body), headers)
    response = connection.getresponse()
    return response.status, json.loads(response.read())


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def serve(settings: Settings, port: int) -> subprocess.Popen:
    """`flywheel serve` in its own process, once it answers."""
    command = [sys.executable, "-m", "flywheel_pipelines.cli", "--config", str(settings.source), "serve"]
    server = subprocess.Popen(
        [*command, "--port", str(port), "--log-level", "warning"],
        env={**os.environ, "FLYWHEEL_API_TOKEN": TOKEN},
        start_new_session=True,
    )
    deadline = time.monotonic() + 90
    while not up(port):
        assert server.poll() is None and time.monotonic() < deadline, "flywheel serve did not come up"
        time.sleep(0.1)
    return server


def post_until_the_server_dies(port: int, prefix: str, report, limit_s: float = 60) -> None:
    """The load process: CONNECTIONS keep-alive connections post feedback (every fourth one batches of BATCH, the
    others single events, one in ten a retry of the connection's previous event) and put ("acknowledged", event id)
    on `report` the moment the answer says stored or duplicate. A connection stops at its first refused or broken
    exchange, putting ("unanswered", event ids) for what it was posting. Last: ("done", how each connection ended)."""
    deadline = time.monotonic() + limit_s
    while not up(port):  # the server starts meanwhile
        if time.monotonic() > deadline:
            report.put(("done", ["never up"]))
            return
        time.sleep(0.1)
    endings: list[str] = []

    def client(n: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        previous = None
        for i in range(10**9):
            if time.monotonic() > deadline:
                endings.append("time limit")
                return
            if n % 4 == 3:
                events = [feedback_post(f"{prefix}-{n}-{i}-{j}") for j in range(BATCH)]
                path, body = "/v1/feedback/batch", {"events": events}
            else:
                events = [previous if previous and i % 10 == 9 else feedback_post(f"{prefix}-{n}-{i}")]
                path, body = "/v1/feedback", events[0]
            try:
                status, answer = post(connection, path, body)
            except (OSError, http.client.HTTPException) as err:
                report.put(("unanswered", [e["event_id"] for e in events]))
                endings.append(type(err).__name__)
                return
            if status != 200:
                report.put(("error", f"{status} {answer}"))
                continue
            outcomes = [item["status"] for item in answer["data"]] if "data" in answer else [answer["status"]]
            for event, outcome in zip(events, outcomes, strict=True):
                if outcome in ("stored", "duplicate"):
                    report.put(("acknowledged", event["event_id"]))
            previous = events[0]

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CONNECTIONS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    report.put(("done", endings))


def rows_per_event(settings: Settings, prefix: str) -> Counter:
    engine = create_engine(settings.feedback_database_url)
    query = (
        select(feedback_events.c.event_id, func.count())
        .where(feedback_events.c.event_id.startswith(prefix))
        .group_by(feedback_events.c.event_id)
    )
    with engine.connect() as conn:
        counts = Counter(dict(conn.execute(query).all()))
    engine.dispose()
    return counts


def test_a_server_killed_mid_load_has_stored_every_event_it_acknowledged_exactly_once(feedback_project: Settings):
    spawn = get_context("spawn")  # the load process starts clean, not as a copy of this one
    report = spawn.Queue()
    port = free_port()
    load = spawn.Process(target=post_until_the_server_dies, args=(port, "kill", report), daemon=True)
    load.start()  # it imports while the server starts
    server = serve(feedback_project, port)
    acknowledged: set[str] = set()
    unanswered: set[str] = set()
    errors: list[str] = []
    try:
        while True:
            kind, value = report.get(timeout=120)
            if kind == "done":
                endings = value
                break
            if kind == "acknowledged":
                acknowledged.add(value)
                if len(acknowledged) == KILL_AFTER:
                    server.send_signal(signal.SIGKILL)  # no lifespan shutdown, no writer.close(): nothing flushed
            elif kind == "unanswered":
                unanswered.update(value)
            else:
                errors.append(value)
    finally:
        server.kill()
        server.wait(30)
        load.join(30)
    assert server.returncode == -signal.SIGKILL
    assert not errors
    # Killed mid-load: every connection was still posting when the server went away.
    assert len(endings) == CONNECTIONS and "time limit" not in endings, endings

    stored = rows_per_event(feedback_project, "kill-")
    assert acknowledged - set(stored) == set()  # none lost
    assert set(stored.values()) == {1}  # none twice
    assert set(stored) <= acknowledged | unanswered  # nothing that was not posted

    # Restarted on the same database: the client retries what it saw acknowledged (some of it) and what it never
    # heard back about (all of it). The first are duplicates; the second are stored now, or were before the kill.
    port = free_port()
    server = serve(feedback_project, port)
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        sample = sorted(acknowledged)[:: max(1, len(acknowledged) // 40)]
        answers = [post(connection, "/v1/feedback", feedback_post(event_id)) for event_id in sample]
        assert {(status, answer["status"]) for status, answer in answers} == {(200, "duplicate")}
        status, answer = post(
            connection, "/v1/feedback/batch", {"events": [feedback_post(e) for e in sorted(unanswered)]}
        )
        assert status == 200 and answer["rejected"] == 0
        connection.close()
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
    stored = rows_per_event(feedback_project, "kill-")
    assert set(stored) == acknowledged | unanswered and set(stored.values()) == {1}
