"""Feedback ingestion: POST /v1/feedback on loopback, `flywheel serve` in its own process and the load in another,
against a named baseline measured in this same run. Goals (the issue): >= 1,000 events/s sustained with p99 < 50 ms,
and zero events lost or duplicated, counted in the database after the run.

    .venv/bin/python bench/feedback_ingestion.py [--rate 1000] [--seconds 20] [--connections 32] [--retries 0.05]
        [--batch-events 100000] [--baseline-threads 4] [--database-url postgresql+psycopg2://postgres@127.0.0.1:5432]

The server is the real one (`flywheel serve` on a throw-away project whose base model is the tests' tiny model: no
champion, so the base model would answer; feedback needs none), on a SQLite store (WAL, synchronous=FULL) in a
temporary folder, or on a fresh PostgreSQL database created on `--database-url`'s server and dropped afterwards. The
completions the feedback names are logged in the store before the server starts.

The load is open loop: post i is due at start + i/rate whatever became of the earlier ones, and its latency runs from
that moment, so a server that falls behind shows as latency (posts wait in the client for a free connection), not as
less offered load. It runs in its own process (asyncio, raw HTTP/1.1 on `--connections` keep-alive connections).
`--retries` of the posts re-send an event posted shortly before (the same event id, often while the first is still
in flight): each must be answered `duplicate` and stored once. Afterwards the database is read: every acknowledged
event id must be there exactly once, with the verdict and completion posted.

Baseline: the same server, routes and validation, with its writer swapped for one that commits each event in its own
transaction (`FeedbackStore.write` per event from a pool of `--baseline-threads` threads: one fsync per event) — what
a handler that writes its row and answers would do — under the same load. Last, batch mode: `/v1/feedback/batch`
with 100 events per post, closed loop on a few connections, gives the events/s ceiling.

Columns: events/s, acknowledged posts per second from the first due time to the last answer; min 1s, those in the
run's slowest whole second; lost and dup, counted in the database; 2x stored, event ids answered `stored` more than
once (a retry the client was told was new); cores, CPU used by the server and by the load process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import math
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import psutil
import yaml
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from flywheel_pipelines.deliver.feedback_store import VERDICT_KINDS, FeedbackStore, feedback_events

REPO_ROOT = Path(__file__).resolve().parents[1]
GOAL_RATE = 1000.0  # events/s, sustained
GOAL_P99_MS = 50.0
TOKEN = "bench-token"
COMPLETION_IDS = [f"chatcmpl-bench-{i}" for i in range(500)]  # logged answers the feedback is about
BATCH_SIZE = 100


# --- the baseline's writer (runs inside the baseline's server process) ----------------------------------------------


class PerEventWriter:
    """StoreWriter's interface, without the group commit: every event is its own transaction (its own fsync), written
    by whichever of `threads` pool threads is free. The baseline server is `flywheel serve` with this writer."""

    threads = 4

    def __init__(self, store: FeedbackStore):
        self.store = store
        self.commits = self.rows = 0
        self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="per-event-writer")

    def start(self) -> PerEventWriter:
        return self

    @property
    def queued(self) -> int:
        return self._pool._work_queue.qsize()

    def submit_completion(self, record: dict) -> Future:
        return self._pool.submit(self.store.write, [record])

    def submit_posts(self, posts: list) -> Future:
        return self._pool.submit(lambda: [self.store.write((), [post])[0] for post in posts])

    def close(self, timeout_s: float = 60) -> None:
        self._pool.shutdown(wait=True)


def serve_with_per_event_writer(config: str, port: int, threads: int) -> None:
    from flywheel_pipelines import cli
    from flywheel_pipelines.deliver import api

    PerEventWriter.threads = threads
    api.StoreWriter = PerEventWriter  # create_app builds its writer from this name
    sys.exit(cli.main(["--config", config, "serve", "--port", str(port), "--log-level", "warning"]))


# --- the servers under test -----------------------------------------------------------------------------------------


def tiny_model(scratch: Path) -> Path:
    from flywheel_pipelines_tests.tiny_model import build_tiny_chat_model

    corpus = [p.read_text() for p in sorted((REPO_ROOT / "flywheel_pipelines").rglob("*.py"))]
    return build_tiny_chat_model(scratch / "tiny-model", corpus)


def project(root: Path, model: Path, database_url: str) -> Path:
    """A flywheel.yaml on the tiny model and `database_url`, whose store already holds the completions."""
    (root / "code").mkdir(parents=True)
    config = {
        "data_dir": "data",
        "sources": [{"name": "bench", "path": "code"}],
        "base_model": {"name_or_path": str(model)},
        "feedback": {"database_url": database_url},
    }
    path = root / "flywheel.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    store = FeedbackStore(database_url)
    store.write(
        completion_records=[
            {
                "completion_id": cid,
                "endpoint": "chat.completions",
                "model": "base:tiny-model",
                "task": "code_generation",
                "instruction": "Implement the function `add` in Python.",
                "input": "```python\ndef add(a, b):\n```",
                "prompt": "<|im_start|>user\nImplement the function `add` in Python.<|im_end|>",
                "output": "return a - b",
                "latency_ms": 12.5,
                "prompt_tokens": 20,
                "completion_tokens": 4,
                "user": "carol",
                "client_id": "bench",
            }
            for cid in COMPLETION_IDS
        ]
    )
    store.dispose()
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def healthy(port: int) -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", "/health")
        response = connection.getresponse()
        return response.status == 200 and json.loads(response.read())["status"] == "ok"
    except OSError:
        return False
    finally:
        connection.close()


@contextlib.contextmanager
def running_server(config: Path, baseline_threads: int | None = None) -> Iterator[tuple[int, psutil.Process]]:
    """`flywheel serve` on `config` (with the per-event writer when `baseline_threads` is set), once it answers."""
    port = free_port()
    if baseline_threads is None:
        command = [sys.executable, "-m", "flywheel_pipelines.cli", "--config", str(config), "serve"]
        command += ["--port", str(port), "--log-level", "warning"]
    else:
        command = [sys.executable, __file__, "--serve-with-per-event-writer", str(config), "--port", str(port)]
        command += ["--baseline-threads", str(baseline_threads)]
    log = config.parent / "server.log"
    with log.open("wb") as output:
        env = {**os.environ, "FLYWHEEL_API_TOKEN": TOKEN}
        server = subprocess.Popen(command, env=env, cwd=config.parent, stdout=output, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while not healthy(port):
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not come up: {' '.join(command)}\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield port, psutil.Process(server.pid)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


# --- the load (runs in its own process) -----------------------------------------------------------------------------


def http_post(port: int, path: str, body: dict) -> bytes:
    payload = json.dumps(body).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {TOKEN}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    )
    return head.encode() + payload


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> tuple[int, bytes]:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
    )
    return int(head[9:12]), await reader.readexactly(length)


def _outcome(status: int, body: bytes) -> str:
    answer = json.loads(body)
    if status != 200:
        return f"{status} {answer.get('error', {}).get('code')}"
    if "data" in answer:  # a batch: "stored/duplicates/rejected"
        return f"{answer['stored']}/{answer['duplicates']}/{answer['rejected']}"
    return answer["status"]


async def _open_loop(port: int, requests: list[bytes], rate: float, connections: int, drain_s: float) -> list:
    """(sent, answered, status, outcome) per request, times in seconds from the schedule's start (post i is due at
    i/rate); answered is NaN for a post that got no answer."""
    clock = time.perf_counter  # not loop.time(): uvloop's clock has millisecond steps
    results: list = [(math.nan, math.nan, 0, "unanswered")] * len(requests)
    due: asyncio.Queue[int] = asyncio.Queue()
    finished = asyncio.Event()
    answered = 0
    streams = [await asyncio.open_connection("127.0.0.1", port) for _ in range(connections)]
    start = clock() + 0.1

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal answered
        while True:
            i = await due.get()
            sent = clock() - start
            try:
                status, body = await _exchange(reader, writer, requests[i])
                results[i] = (sent, clock() - start, status, _outcome(status, body))
            except (OSError, asyncio.IncompleteReadError) as err:
                results[i] = (sent, math.nan, 0, f"connection: {type(err).__name__}")
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            answered += 1
            if answered == len(requests):
                finished.set()

    workers = [asyncio.ensure_future(connection(r, w)) for r, w in streams]
    for i in range(len(requests)):
        delay = start + i / rate - clock()
        if delay > 0:
            await asyncio.sleep(delay)
        due.put_nowait(i)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(finished.wait(), drain_s)
    for worker in workers:
        worker.cancel()
    for _, writer in streams:
        writer.close()
    return results


async def _closed_loop(port: int, requests: list[bytes], connections: int) -> list:
    """Each connection posts the next request as soon as its last one is answered, until all are."""
    results: list = [None] * len(requests)
    pending = iter(range(len(requests)))
    start = time.perf_counter()

    async def connection() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for i in pending:
            sent = time.perf_counter() - start
            status, body = await _exchange(reader, writer, requests[i])
            results[i] = (sent, time.perf_counter() - start, status, _outcome(status, body))
        writer.close()

    await asyncio.gather(*(connection() for _ in range(connections)))
    return results


def offer_load(
    server_pid: int, port: int, requests: list[bytes], rate: float | None, connections: int, drain_s: float
) -> dict:
    """The load process's work: open loop at `rate`, or closed loop when rate is None. Returns the results, and the
    cores this process and the server used meanwhile (plain data: it crosses back to the parent by pickle)."""
    import uvloop

    server = psutil.Process(server_pid)
    before, started, own = server.cpu_times(), time.perf_counter(), time.process_time()
    if rate is None:
        results = uvloop.run(_closed_loop(port, requests, connections))
    else:
        results = uvloop.run(_open_loop(port, requests, rate, connections, drain_s))
    wall, after = time.perf_counter() - started, server.cpu_times()
    server_cpu = after.user + after.system - before.user - before.system
    return {"results": results, "load_cpu": (time.process_time() - own) / wall, "server_cpu": server_cpu / wall}


def in_load_process(server: psutil.Process, port: int, requests: list[bytes], rate: float | None, args) -> dict:
    connections = args.connections if rate else args.batch_connections
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        return pool.submit(offer_load, server.pid, port, requests, rate, connections, args.drain_seconds).result()


# --- the posts, and what the database says about them ---------------------------------------------------------------


def feedback_posts(prefix: str, count: int, retries: float, seed: int) -> list[tuple[str, bool, dict]]:
    """(event id, is a retry, body): new events, and `retries` of re-sent recent ones (the same body)."""
    rng = random.Random(seed)
    posts: list[tuple[str, bool, dict]] = []
    fresh: list[tuple[str, bool, dict]] = []
    for i in range(count):
        if fresh and rng.random() < retries:
            event_id, _, body = fresh[-rng.randint(1, min(len(fresh), 100))]
            posts.append((event_id, True, body))
            continue
        verdict = rng.choices(["accepted", "rejected", "edited"], weights=[6, 2.5, 1.5])[0]
        body = {"completion_id": rng.choice(COMPLETION_IDS), "verdict": verdict, "event_id": f"{prefix}-{i}"}
        if verdict == "edited":
            body["edited_text"] = f"return a + b  # {i}"
        body |= {"user": f"user-{i % 37}", "client_id": "bench", "client_timestamp": "2026-11-20T10:00:00Z"}
        fresh.append((body["event_id"], False, body))
        posts.append(fresh[-1])
    return posts


@dataclass
class Count:
    acknowledged: int  # distinct event ids with a 200
    stored: int  # rows in the database under the run's prefix
    lost: int  # acknowledged, not in the database
    duplicated: int  # rows beyond one per event id
    stored_twice: int  # answers `stored` beyond one per event id: a retry the client was told was new
    unexpected: int  # rows for events never acknowledged (only possible for posts left unanswered)
    mismatched: int  # rows whose verdict or completion is not what was posted


def count_in_database(
    url: str, prefix: str, posts: dict[str, dict], acknowledged: set[str], stored_twice: int
) -> Count:
    engine = create_engine(url)
    columns = feedback_events.c
    with engine.connect() as conn:
        rows = conn.execute(
            select(columns.event_id, columns.kind, columns.completion_id).where(columns.event_id.startswith(prefix))
        ).all()
        distinct = conn.scalar(
            select(func.count(func.distinct(columns.event_id))).where(columns.event_id.startswith(prefix))
        )
    engine.dispose()
    in_db = {r.event_id for r in rows}
    mismatched = sum(
        1
        for r in rows
        if r.event_id in posts
        and (r.kind, r.completion_id)
        != (VERDICT_KINDS[posts[r.event_id]["verdict"]], posts[r.event_id]["completion_id"])
    )
    return Count(
        len(acknowledged),
        len(rows),
        len(acknowledged - in_db),
        len(rows) - distinct,
        stored_twice,
        len(in_db - acknowledged),
        mismatched,
    )


# --- one measurement ------------------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else math.nan


@dataclass
class Run:
    name: str
    posts: int
    offered: float  # posts per second
    achieved: float  # acknowledged posts per second, first due time to last answer
    fewest_in_a_second: int  # acknowledgements in the run's slowest whole second
    latencies_ms: list[float]  # every answered post's, from its due time
    errors: Counter  # non-200 answers and posts left without one, by kind
    retries: int
    retries_duplicate: int  # retries answered `duplicate` (a retry that overtook its original is `stored`)
    count: Count
    server_cpu: float  # cores the server process used, on average
    load_cpu: float


def single_events(name: str, port: int, server: psutil.Process, url: str, args: argparse.Namespace, prefix: str) -> Run:
    posts = feedback_posts(prefix, int(args.rate * args.seconds), args.retries, seed=1)
    load = in_load_process(
        server, port, [http_post(port, "/v1/feedback", body) for _, _, body in posts], args.rate, args
    )
    results = load["results"]
    answered = [r for r in results if r[2] == 200]
    stored_answers = Counter(posts[i][0] for i, r in enumerate(results) if r[3] == "stored")
    retries = [i for i, post in enumerate(posts) if post[1]]
    count = count_in_database(
        url,
        prefix,
        {event_id: body for event_id, _, body in posts},
        {posts[i][0] for i, r in enumerate(results) if r[2] == 200},
        sum(n - 1 for n in stored_answers.values()),
    )
    per_second = Counter(int(r[1]) for r in answered)
    return Run(
        name=name,
        posts=len(posts),
        offered=args.rate,
        achieved=len(answered) / max(r[1] for r in answered),
        fewest_in_a_second=min(per_second[k] for k in range(int(args.seconds))),
        latencies_ms=[(r[1] - i / args.rate) * 1000 for i, r in enumerate(results) if not math.isnan(r[1])],
        errors=Counter(r[3] for r in results if r[2] != 200),
        retries=len(retries),
        retries_duplicate=sum(results[i][3] == "duplicate" for i in retries),
        count=count,
        server_cpu=load["server_cpu"],
        load_cpu=load["load_cpu"],
    )


@dataclass
class Batches:
    posts: int
    events_per_s: float
    latencies_ms: list[float]  # per post
    errors: int
    count: Count
    server_cpu: float


def batches(port: int, server: psutil.Process, url: str, args: argparse.Namespace, prefix: str) -> Batches:
    """Closed loop on /v1/feedback/batch, BATCH_SIZE events a post."""
    posts = feedback_posts(prefix, args.batch_events, 0.0, seed=2)
    bodies = [{"events": [body for _, _, body in posts[i : i + BATCH_SIZE]]} for i in range(0, len(posts), BATCH_SIZE)]
    load = in_load_process(server, port, [http_post(port, "/v1/feedback/batch", b) for b in bodies], None, args)
    results = load["results"]
    # "stored/duplicates/rejected": a post's events are acknowledged unless rejected, and none is.
    acknowledged = {
        body["event_id"] for b, r in zip(bodies, results, strict=True) if r[3].endswith("/0") for body in b["events"]
    }
    span = max(r[1] for r in results) - min(r[0] for r in results)
    return Batches(
        posts=len(results),
        events_per_s=len(acknowledged) / span,
        latencies_ms=[(r[1] - r[0]) * 1000 for r in results],
        errors=sum(not r[3].endswith("/0") for r in results),
        count=count_in_database(url, prefix, {event_id: body for event_id, _, body in posts}, acknowledged, 0),
        server_cpu=load["server_cpu"],
    )


# --- the stores -----------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def fresh_database(server_url: str | None, folder: Path, name: str) -> Iterator[str]:
    """A SQLite file in `folder`, or a new database on the PostgreSQL server, dropped afterwards."""
    if server_url is None:
        yield f"sqlite:///{folder / f'{name}.db'}"
        return
    database = f"flywheel_bench_{name}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(make_url(server_url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{database}"'))
    try:
        yield make_url(server_url).set(database=database).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        admin.dispose()


# --- the report -----------------------------------------------------------------------------------------------------

COLUMNS = (
    f"  {'':36} {'offered/s':>9} {'events/s':>9} {'min 1s':>6} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7}"
    f" {'max ms':>8} {'errors':>6} {'lost':>4} {'dup':>3} {'2x stored':>9} {'cores srv/load':>14}"
)


def row(run: Run) -> str:
    c, ms = run.count, run.latencies_ms
    return (
        f"  {run.name:36} {run.offered:9.0f} {run.achieved:9.1f} {run.fewest_in_a_second:6d}"
        f" {percentile(ms, 0.5):7.1f} {percentile(ms, 0.95):7.1f} {percentile(ms, 0.99):7.1f} {max(ms):8.1f}"
        f" {sum(run.errors.values()):6d} {c.lost:4d} {c.duplicated:3d} {c.stored_twice:9d}"
        f" {run.server_cpu:8.2f}/{run.load_cpu:.2f}"
    )


def database_line(name: str, c: Count) -> str:
    return (
        f"  {name}: the database holds {c.stored} events for {c.acknowledged} acknowledged event ids: lost {c.lost},"
        f" duplicated {c.duplicated}, not acknowledged {c.unexpected}, wrong verdict or completion {c.mismatched}"
    )


def goal(label: str, met: bool, detail: str) -> str:
    return f"  goal {label}: {'PASS' if met else 'FAIL'} ({detail})"


def report(
    ours: Run, baseline: Run | None, batch: Batches | None, args: argparse.Namespace, store: str, idle_load: float
) -> None:
    print(
        f"store: {store}; server: flywheel serve, one uvicorn worker; load: its own process, {args.connections}"
        f" keep-alive connections, open loop; {os.cpu_count()} cores for both (load average before the run:"
        f" {idle_load:.2f}, the work of others on this machine)"
    )
    print(
        f"single events, POST /v1/feedback: {args.rate:,.0f}/s offered for {args.seconds:g} s ({ours.posts:,} posts,"
        f" {ours.retries} of them retries of a recent event id); latency from each post's due time"
    )
    print(COLUMNS)
    runs = [baseline, ours] if baseline else [ours]
    for run in runs:
        print(row(run))
    for run in runs:
        print(database_line(run.name, run.count))
        print(
            f"  {run.name}: retries answered duplicate {run.retries_duplicate}/{run.retries}"
            + (f"; errors {dict(run.errors)}" if run.errors else "")
        )
    if baseline:
        ours_p99, base_p99 = percentile(ours.latencies_ms, 0.99), percentile(baseline.latencies_ms, 0.99)
        print(
            f"  ratio flywheel/baseline: {ours.achieved / baseline.achieved:.2f}x the events/s,"
            f" {base_p99 / ours_p99:.1f}x lower p99 ({base_p99:,.1f} ms -> {ours_p99:.1f} ms)"
        )
    errors = sum(ours.errors.values())
    # Kept up: every post answered 200 and acknowledgements came at the offered rate. `achieved` counts them from
    # the first due time to the last answer, so it is the offered rate less one latency over the run: 1% allowance.
    kept_up = errors == 0 and ours.offered >= GOAL_RATE and ours.achieved >= 0.99 * ours.offered
    sustained = (
        f"{ours.offered:,.0f}/s offered for {args.seconds:g} s, {ours.posts - errors:,} of {ours.posts:,} posts"
        f" acknowledged at {ours.achieved:,.1f}/s, {ours.fewest_in_a_second:,} in the slowest second"
    )
    print(goal(f">= {GOAL_RATE:,.0f} events/s sustained", kept_up, sustained))
    p99 = percentile(ours.latencies_ms, 0.99)
    print(goal(f"p99 < {GOAL_P99_MS:.0f} ms", p99 < GOAL_P99_MS, f"{p99:.1f} ms"))
    c = ours.count
    print(goal("0 lost", c.lost == 0, f"{c.lost} acknowledged events missing from the database"))
    detail = f"{c.duplicated} rows beyond one per event id, {c.stored_twice} retries answered `stored` again"
    print(goal("0 duplicated", c.duplicated == 0 and c.stored_twice == 0, detail))
    if batch:
        ms = batch.latencies_ms
        print(
            f"batch mode, POST /v1/feedback/batch with {BATCH_SIZE} events: {batch.posts} posts on"
            f" {args.batch_connections} connections, closed loop: {batch.events_per_s:,.0f} events/s"
            f" ({batch.events_per_s / ours.achieved:.1f}x single events), post p50 {percentile(ms, 0.5):.1f} ms,"
            f" p99 {percentile(ms, 0.99):.1f} ms, errors {batch.errors}, server {batch.server_cpu:.2f} cores"
        )
        print(database_line("batch mode", batch.count))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=1000.0, help="posts per second offered")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--retries", type=float, default=0.05, help="share of posts that re-send a recent event")
    parser.add_argument("--drain-seconds", type=float, default=30.0, help="wait for answers after the last post")
    parser.add_argument("--batch-events", type=int, default=100_000, help="0: no batch mode")
    parser.add_argument("--batch-connections", type=int, default=4)
    parser.add_argument("--baseline-threads", type=int, default=4, help="the per-event writer's pool")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument(
        "--database-url",
        help="a PostgreSQL server, e.g. postgresql+psycopg2://postgres@127.0.0.1:5432: each server gets a fresh"
        " database there, dropped afterwards (default: SQLite files in a temporary folder)",
    )
    parser.add_argument("--serve-with-per-event-writer", metavar="CONFIG", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_with_per_event_writer:
        serve_with_per_event_writer(args.serve_with_per_event_writer, args.port, args.baseline_threads)

    store = "PostgreSQL" if args.database_url else "SQLite (WAL, synchronous=FULL)"
    idle_load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="feedback-bench-") as scratch_dir:
        scratch = Path(scratch_dir)
        model = tiny_model(scratch)
        with fresh_database(args.database_url, scratch, "ours") as url:
            config = project(scratch / "ours", model, url)
            with running_server(config) as (port, server):
                ours = single_events("flywheel serve (group commit)", port, server, url, args, "ours")
                batch = batches(port, server, url, args, "batch") if args.batch_events else None
        baseline = None
        if not args.skip_baseline:
            with fresh_database(args.database_url, scratch, "baseline") as url:
                config = project(scratch / "baseline", model, url)
                with running_server(config, args.baseline_threads) as (port, server):
                    name = f"baseline: 1 txn/event, {args.baseline_threads} threads"
                    baseline = single_events(name, port, server, url, args, "base")
    report(ours, baseline, batch, args, store, idle_load)


if __name__ == "__main__":
    main()
