"""Deliver, step 6: POST /v1/feedback — users' verdicts on the server's completions, checked against
`schemas/feedback_post.schema.json` and answered only once stored.

The write path: one thread (`StoreWriter`) is the server's only writer of the feedback store. Requests hand it their
rows and await its answer; it takes everything that queued up while its previous commit ran, writes it in one
transaction, and only then answers each request. Under load a commit carries many events (one fsync for all of
them), with no load it carries one and nobody waits for a timer. Acknowledged therefore means committed, and event
ids make a retried post a no-op.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import queue
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request, Response

from flywheel_pipelines.deliver.feedback_store import FeedbackStore, PostedFeedback
from flywheel_pipelines.deliver.serving import RequestError
from flywheel_pipelines.schemas import validation_errors, validator

log = logging.getLogger(__name__)

SCHEMA = "feedback_post"
MAX_BATCH_EVENTS = 1000  # posts in one POST /v1/feedback/batch


# --- validation -----------------------------------------------------------------------------------------------------


def _explain(error: Any) -> list[tuple[str | None, str]]:
    """A JSON Schema error as (the field at fault, why) pairs."""
    conditional = "then" in error.schema_path or "else" in error.schema_path
    if error.validator == "required":
        missing = [name for name in error.validator_value if name not in error.instance]
        reason = error.schema.get("description", "is required") if conditional else "is required"
        return [(name, reason) for name in missing]
    if error.validator == "not" and isinstance(error.validator_value, dict) and "required" in error.validator_value:
        return [(error.validator_value["required"][0], error.schema.get("description", error.message))]
    if error.validator == "additionalProperties":
        known = ", ".join(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        return [(name, f"is not a field of a feedback post (the fields are {known})") for name in extra]
    path = ".".join(str(p) for p in error.absolute_path)
    return [(path or None, error.message)]


def post_errors(body: Any) -> list[tuple[str | None, str]]:
    """Every way `body` is not a feedback post, as (field, reason); empty when it is one."""
    if not validation_errors(SCHEMA, body):  # the compiled validator: fast for the valid majority
        problems = []
    else:
        errors = sorted(validator(SCHEMA).iter_errors(body), key=lambda e: [str(p) for p in e.absolute_path])
        problems = [problem for e in errors for problem in _explain(e)]
    if not problems and isinstance(body, dict) and "client_timestamp" in body:
        try:
            _timestamp(body["client_timestamp"])
        except ValueError:
            problems.append(("client_timestamp", f"{body['client_timestamp']!r} is not an RFC 3339 date-time"))
    return problems


def _timestamp(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError("no time zone")
    return parsed


def derived_event_id(body: dict) -> str:
    """The event id of a post that sends none: a hash of what it says, so a retry of the same post has the same id
    (and the same user accepting the same completion twice at the same moment is one event)."""
    key = [body["completion_id"], body["verdict"], body.get("edited_text"), body.get("user")]
    key.append(body.get("client_timestamp"))
    return "fb-" + hashlib.sha256(json.dumps(key, ensure_ascii=False).encode()).hexdigest()[:32]


def parse_post(body: Any) -> PostedFeedback:
    """A feedback post checked and ready to store; a RequestError (422) naming the first field at fault and
    listing every problem otherwise."""
    problems = post_errors(body)
    if problems:
        param = problems[0][0]
        message = "; ".join(f"{p}: {reason}" if p else reason for p, reason in problems)
        errors = [{"param": p, "message": reason} for p, reason in problems]
        raise RequestError(message, param, status=422, code="invalid_feedback", errors=errors)
    stamp = body.get("client_timestamp")
    return PostedFeedback(
        event_id=body.get("event_id") or derived_event_id(body),
        completion_id=body["completion_id"],
        verdict=body["verdict"],
        edited_text=body.get("edited_text"),
        user=body.get("user"),
        client_id=body.get("client_id"),
        created_at=_timestamp(stamp).astimezone(UTC) if stamp else None,
    )


# --- the writer -----------------------------------------------------------------------------------------------------


@dataclass
class _Job:
    completions: list[dict] = field(default_factory=list)
    posts: list[PostedFeedback] = field(default_factory=list)
    future: Future = field(default_factory=Future)


class StoreWriter:
    """The one thread that writes the feedback store while the server runs (group commit; see the module's
    docstring). `submit_*` return futures that resolve once the rows are committed."""

    def __init__(self, store: FeedbackStore, max_rows: int = 2000):
        self.store = store
        self.max_rows = max_rows  # rows in one transaction, at most (a queue this long is split)
        self.commits = 0
        self.rows = 0
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="feedback-writer", daemon=True)

    def start(self) -> StoreWriter:
        self._thread.start()
        return self

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    def submit_completion(self, record: dict) -> Future:
        """Resolves to None once the completion is logged."""
        return self._submit(_Job(completions=[record]))

    def submit_posts(self, posts: list[PostedFeedback]) -> Future:
        """Resolves to each post's outcome (`stored`, `duplicate`, `unknown_completion`) once committed."""
        return self._submit(_Job(posts=list(posts)))

    def _submit(self, job: _Job) -> Future:
        if self._closed:
            raise RuntimeError("the feedback writer is closed: the server is shutting down")
        self._queue.put(job)
        return job.future

    def close(self, timeout_s: float = 60) -> None:
        """Write what is queued, then stop."""
        self._closed = True
        self._queue.put(None)
        self._thread.join(timeout=timeout_s)

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            batch, rows, closing = [job], len(job.posts) + len(job.completions), False
            while rows < self.max_rows:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    closing = True
                    break
                batch.append(more)
                rows += len(more.posts) + len(more.completions)
            self._commit(batch)
            if closing:
                return

    def _commit(self, batch: list[_Job]) -> None:
        try:
            outcomes = self.store.write(
                [c for job in batch for c in job.completions], [p for job in batch for p in job.posts]
            )
        except Exception as err:
            if len(batch) > 1:  # one bad request must not fail the others: write them one by one
                for job in batch:
                    self._commit([job])
                return
            log.exception("the feedback store refused a write")
            _settle(batch[0].future, error=err)
            return
        self.commits += 1
        self.rows += sum(len(job.posts) + len(job.completions) for job in batch)
        start = 0
        for job in batch:
            _settle(job.future, result=outcomes[start : start + len(job.posts)] if job.posts else None)
            start += len(job.posts)


def _settle(future: Future, result: Any = None, error: BaseException | None = None) -> None:
    if future.set_running_or_notify_cancel():  # False: the request gave up waiting (its client went away)
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)


# --- the routes -----------------------------------------------------------------------------------------------------


def _json_response(payload: dict, status: int = 200) -> Response:
    return Response(json.dumps(payload, ensure_ascii=False), status_code=status, media_type="application/json")


async def _json_body(request: Request) -> Any:
    try:
        return json.loads(await request.body())
    except ValueError as err:
        raise RequestError(f"the body is not JSON: {err}", None, status=400, code="invalid_json") from err


def _unknown_completion(post: PostedFeedback) -> RequestError:
    return RequestError(
        f"no completion with id {post.completion_id!r}: post the id this server returned with the completion",
        "completion_id",
        status=422,
        code="unknown_completion",
    )


def feedback_router(writer: StoreWriter) -> APIRouter:
    router = APIRouter()

    @router.post("/v1/feedback")
    async def post_feedback(request: Request) -> Response:
        """One verdict (schemas/feedback_post.schema.json). 200 with `status` `stored`, or `duplicate` when its event
        id is stored already; 422 naming the field at fault, or `completion_id` when no such completion was given."""
        post = parse_post(await _json_body(request))
        (outcome,) = await asyncio.wrap_future(writer.submit_posts([post]))
        if outcome == "unknown_completion":
            raise _unknown_completion(post)
        return _json_response(
            {"object": "feedback", "event_id": post.event_id, "completion_id": post.completion_id, "status": outcome}
        )

    @router.post("/v1/feedback/batch")
    async def post_feedback_batch(request: Request) -> Response:
        """`{"events": [post, ...]}`, up to MAX_BATCH_EVENTS. Each post stands alone: the valid ones are stored
        (together, in one transaction), the others are answered with their error, by index. 200 whenever the
        envelope is right; 422 naming `events` when it is not."""
        body = await _json_body(request)
        events = body.get("events") if isinstance(body, dict) else None
        if not isinstance(events, list) or not events or len(events) > MAX_BATCH_EVENTS:
            raise RequestError(
                f'the body must be {{"events": [...]}} with 1 to {MAX_BATCH_EVENTS} feedback posts',
                "events",
                status=422,
                code="invalid_feedback",
            )
        if extra := sorted(set(body) - {"events"}):
            raise RequestError(f"{extra[0]} is not a field of a batch", extra[0], status=422, code="invalid_feedback")
        results: list[dict] = [{} for _ in events]
        valid: list[tuple[int, PostedFeedback]] = []
        for index, item in enumerate(events):
            try:
                valid.append((index, parse_post(item)))
            except RequestError as err:
                results[index] = {"index": index, "status": "rejected", "error": err.body()["error"]}
        outcomes = await asyncio.wrap_future(writer.submit_posts([p for _, p in valid])) if valid else []
        for (index, post), outcome in zip(valid, outcomes, strict=True):
            if outcome == "unknown_completion":
                error = _unknown_completion(post).body()["error"]
                results[index] = {"index": index, "event_id": post.event_id, "status": "rejected", "error": error}
            else:
                results[index] = {"index": index, "event_id": post.event_id, "status": outcome}
        statuses = [r["status"] for r in results]
        return _json_response(
            {
                "object": "list",
                "data": results,
                "stored": statuses.count("stored"),
                "duplicates": statuses.count("duplicate"),
                "rejected": statuses.count("rejected"),
            }
        )

    return router
