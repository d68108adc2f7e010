"""Deliver, step 5: the OpenAI-compatible server (`flywheel serve`) — /v1/models, /v1/completions and
/v1/chat/completions answered by the champion adapter, every answer logged in the feedback store with its id, and
POST /v1/feedback (`feedback_api.py`) for what users did with it. Every /v1 route wants `Authorization: Bearer`.

Generation runs on worker threads, so the event loop keeps answering feedback posts and /health meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hmac
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from functools import partial
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException

from flywheel_pipelines.deliver.feedback_api import StoreWriter, feedback_router
from flywheel_pipelines.deliver.feedback_store import FeedbackStore
from flywheel_pipelines.deliver.serving import (
    Generation,
    ModelLoader,
    ModelServer,
    Prompt,
    RequestError,
    Sampling,
    ServedModel,
    chat_prompt,
    completion_prompt,
)
from flywheel_pipelines.settings import Settings

GENERATION_THREADS = 2  # one generation per model at a time; two let a request on a new champion pass an old one


class MissingToken(RuntimeError):
    """The server will not start without a bearer token: nobody would be able to use it, or anybody could."""


# --- requests -------------------------------------------------------------------------------------------------------


class _Completion(BaseModel):
    """What both endpoints read. Other OpenAI fields (tools, logprobs, ...) are accepted and ignored."""

    model_config = ConfigDict(extra="allow")

    model: str
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    n: int | None = Field(default=None, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    logit_bias: dict[str, float] | None = None
    stream: bool | None = False
    stream_options: dict[str, Any] | None = None
    user: str | None = Field(default=None, max_length=128)
    # Flywheel's own (the openai client sends them with extra_body=): a task of the catalogue and its template's
    # fields, and the tool that asks.
    task: str | None = None
    task_fields: dict[str, Any] | None = None
    client_id: str | None = Field(default=None, max_length=128)


class ChatCompletionRequest(_Completion):
    messages: list[dict[str, Any]]
    max_completion_tokens: int | None = Field(default=None, ge=1)


class CompletionRequest(_Completion):
    prompt: str | list[str]


def _sampling(body: _Completion, default_max_tokens: int) -> Sampling:
    if (body.n or 1) != 1:
        raise RequestError("this server gives one choice per request (n=1)", "n")
    stop = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
    if len(stop) > 4:
        raise RequestError("at most 4 stop sequences", "stop")
    try:
        bias = {int(token): value for token, value in (body.logit_bias or {}).items()}
    except ValueError as err:
        raise RequestError("logit_bias keys are token ids", "logit_bias") from err
    limit = getattr(body, "max_completion_tokens", None) or body.max_tokens or default_max_tokens
    return Sampling(
        max_new_tokens=limit,
        temperature=1.0 if body.temperature is None else body.temperature,
        top_p=1.0 if body.top_p is None else body.top_p,
        stop=tuple(stop),
        seed=body.seed,
        logit_bias=bias,
    )


# --- auth -----------------------------------------------------------------------------------------------------------


def _error(status: int, message: str, param: str | None = None, code: str | None = None, **headers: str):
    kind = "invalid_request_error" if status < 500 else "server_error"
    payload = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return JSONResponse(payload, status_code=status, headers=headers or None)


class BearerAuth:
    """Every /v1 route wants `Authorization: Bearer <token>`; anything else is answered 401 before the route runs.
    (A plain ASGI middleware: it adds nothing measurable to a request.)"""

    def __init__(self, app: Any, token: str):
        self.app = app
        self.token = token.encode()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/v1"):
            header = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
            scheme, _, given = header.partition(b" ")
            if scheme.lower() != b"bearer" or not hmac.compare_digest(given.strip(), self.token):
                message = "Incorrect API key provided." if header else "Missing bearer token: send Authorization."
                response = _error(401, message, code="invalid_api_key", **{"www-authenticate": "Bearer"})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


# --- the app --------------------------------------------------------------------------------------------------------


def api_token(settings: Settings) -> str:
    """The bearer token clients must send, from the environment variable flywheel.yaml names."""
    name = settings.serving.api_token_env
    token = os.environ.get(name, "").strip()
    if not token:
        raise MissingToken(
            f"no API token: set the environment variable {name} (serving.api_token_env in flywheel.yaml) to the "
            "bearer token clients will send"
        )
    return token


def create_app(
    settings: Settings,
    *,
    token: str | None = None,
    store: FeedbackStore | None = None,
    model_server: ModelServer | None = None,
    poll_registry: bool = True,
) -> FastAPI:
    """The server: the champion (or `model_server`'s model) answering, the feedback store (`store`, else
    flywheel.yaml's) logging. The model loads at startup, before the first request is accepted; with
    `poll_registry`, a thread looks for a new champion every `serving.reload_interval_seconds`."""
    token = token or api_token(settings)
    serving = settings.serving
    server = model_server or ModelServer(ModelLoader(settings))
    own_store = store is None
    store = store or FeedbackStore(settings.feedback_database_url)
    writer = StoreWriter(store)
    executor = ThreadPoolExecutor(GENERATION_THREADS, thread_name_prefix="generate")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        writer.start()
        if server.current is None:
            await asyncio.get_running_loop().run_in_executor(executor, server.load)
        # torch, transformers, MLflow and the model leave ~650k long-lived objects; a full collection walks them all
        # (~300 ms, every 15-30 s at 1,000 posts/s) holding the GIL. Frozen, they are out of its sight.
        gc.collect()
        gc.freeze()
        if poll_registry:
            server.start_polling(serving.reload_interval_seconds)
        try:
            yield
        finally:
            server.stop()
            executor.shutdown(wait=True)
            writer.close()  # last: what the finished requests queued is written before it stops
            if own_store:
                store.dispose()

    app = FastAPI(
        title="flywheel",
        summary="The champion adapter behind OpenAI's API, and feedback on its answers.",
        lifespan=lifespan,
    )
    app.state.server, app.state.writer, app.state.store = server, writer, store
    app.add_middleware(BearerAuth, token=token)

    @app.exception_handler(RequestError)
    async def request_error(request: Request, err: RequestError) -> JSONResponse:
        return JSONResponse(err.body(), status_code=err.status)

    @app.exception_handler(RequestValidationError)
    async def invalid_body(request: Request, err: RequestValidationError) -> JSONResponse:
        first = err.errors()[0]
        loc = [str(p) for p in first["loc"] if p != "body"]
        param = ".".join(loc) or None
        return _error(400, f"{param or 'body'}: {first['msg']}", param, "invalid_request")

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, err: HTTPException) -> JSONResponse:
        return _error(err.status_code, str(err.detail), code="not_found" if err.status_code == 404 else None)

    @app.exception_handler(Exception)
    async def server_error(request: Request, err: Exception) -> JSONResponse:
        # Still logged with its traceback by the server; the client gets OpenAI's shape, and may retry.
        return _error(500, f"the server failed: {type(err).__name__}: {err}", code="server_error")

    def served() -> ServedModel:
        if server.current is None:
            raise RequestError("the model is still loading", None, status=503, code="model_loading")
        return server.current

    def model_card(model: ServedModel) -> dict:
        return {
            "id": serving.model_name,
            "object": "model",
            "created": int(model.loaded_at),
            "owned_by": "flywheel",
            # Which model answers: the champion's registry version, or none while the base model answers alone.
            "served": model.name,
            "registered_model": model.registered_model,
            "version": model.version,
            "champion": model.version is not None,
            "base_model": str(model.base_model),
        }

    def answers_to(requested: str, model: ServedModel) -> bool:
        """A request may name the served model, or the registered model (with any `:vN`: the champion answers)."""
        names = (serving.model_name, model.name, model.registered_model)
        return requested in names or requested.startswith(f"{model.registered_model}:")

    @app.get("/health")
    async def health() -> dict:
        """No token needed: is it up, and which model answers."""
        model = server.current
        return {
            "status": "ok" if model is not None else "loading",
            "model": serving.model_name,
            "served": model.name if model else None,
            "version": model.version if model else None,
            "base_model": str(model.base_model) if model else None,
            "loaded_at": _iso(model.loaded_at) if model else None,
            "registry_checked_at": _iso(server.checked_at) if server.checked_at else None,
            "last_reload_error": server.last_error,
            "feedback_writer": {"commits": writer.commits, "rows": writer.rows, "queued": writer.queued},
        }

    @app.get("/v1/models")
    async def list_models() -> dict:
        return {"object": "list", "data": [model_card(served())]}

    @app.get("/v1/models/{model_id:path}")
    async def retrieve_model(model_id: str) -> dict:
        model = served()
        if not answers_to(model_id, model):
            raise RequestError(f"The model `{model_id}` does not exist", "model", status=404, code="model_not_found")
        return model_card(model)

    async def answer(
        request: Request, body: _Completion, endpoint: str, make_prompt: Any
    ) -> JSONResponse | StreamingResponse:
        started = time.perf_counter()
        model = served()  # this request's model, whatever a reload does meanwhile
        if not answers_to(body.model, model):
            raise RequestError(
                f"The model `{body.model}` does not exist: this server answers as `{serving.model_name}`",
                "model",
                status=404,
                code="model_not_found",
            )
        prompt: Prompt = make_prompt(model.tokenizer, body.task, body.task_fields)
        sampling = _sampling(body, serving.max_new_tokens)
        chat = endpoint == "chat.completions"
        completion_id = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}"
        context = _Answer(
            completion_id, int(time.time()), endpoint, model, prompt, started, body.user, _client(request, body)
        )
        loop = asyncio.get_running_loop()
        if body.stream:
            await loop.run_in_executor(executor, model.check, prompt, sampling)
            include_usage = bool((body.stream_options or {}).get("include_usage"))
            return StreamingResponse(
                _stream(context, sampling, include_usage, loop),
                media_type="text/event-stream",
                headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
            )
        generation = await loop.run_in_executor(executor, model.generate, prompt, sampling)
        await _log(context, generation)
        return JSONResponse(context.response(generation))

    async def _log(context: _Answer, generation: Generation) -> None:
        """The answer is logged (committed) before the client has it whole — the response, or a stream's last chunk —
        so feedback on it always finds it."""
        await asyncio.wrap_future(writer.submit_completion(context.record(generation)))

    async def _stream(context: _Answer, sampling: Sampling, include_usage: bool, loop: Any) -> AsyncIterator[str]:
        pieces: asyncio.Queue[str | None] = asyncio.Queue()
        cancelled = threading.Event()

        def on_delta(delta: str) -> None:  # on the generation thread
            loop.call_soon_threadsafe(pieces.put_nowait, delta)

        job = loop.run_in_executor(
            executor, partial(context.model.generate, context.prompt, sampling, on_delta, cancelled)
        )
        # Runs after every piece the thread queued before it finished: the end marker comes last.
        job.add_done_callback(lambda _: pieces.put_nowait(None))
        try:
            yield _sse(context.chunk(None, role=True))
            while (delta := await pieces.get()) is not None:
                yield _sse(context.chunk(delta))
            try:
                generation = job.result()
                await _log(context, generation)
            except RequestError as err:
                yield _sse(err.body())
                return
            except Exception as err:
                yield _sse(RequestError(f"generation failed: {err}", None, 500, "server_error").body())
                return
            yield _sse(context.chunk(None, finish_reason=generation.finish_reason))
            if include_usage:
                yield _sse({**context.chunk(None), "choices": [], "usage": _usage(generation)})
            yield "data: [DONE]\n\n"
        finally:
            cancelled.set()  # the client went away mid-answer: stop generating for nobody

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(request: Request, body: ChatCompletionRequest) -> JSONResponse | StreamingResponse:
        """OpenAI's chat completions; `task` (+ `task_fields`) asks a task of the catalogue through its template."""
        return await answer(
            request, body, "chat.completions", lambda tok, task, fields: chat_prompt(tok, body.messages, task, fields)
        )

    @app.post("/v1/completions", response_model=None)
    async def completions(request: Request, body: CompletionRequest) -> JSONResponse | StreamingResponse:
        """OpenAI's (legacy) completions: the prompt continued as raw text, or with `task` asked as that task."""
        return await answer(
            request, body, "completions", lambda tok, task, fields: completion_prompt(tok, body.prompt, task, fields)
        )

    app.include_router(feedback_router(writer))
    return app


# --- answers on the wire --------------------------------------------------------------------------------------------


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat()


def _client(request: Request, body: _Completion) -> str | None:
    return body.client_id or request.headers.get("x-client-id")


def _usage(generation: Generation) -> dict:
    return {
        "prompt_tokens": generation.prompt_tokens,
        "completion_tokens": generation.completion_tokens,
        "total_tokens": generation.prompt_tokens + generation.completion_tokens,
    }


def _sse(payload: dict) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


class _Answer:
    """One request's answer in the making: its id, model and prompt, rendered in the endpoint's wire format."""

    def __init__(
        self,
        completion_id: str,
        created: int,
        endpoint: str,
        model: ServedModel,
        prompt: Prompt,
        started: float,
        user: str | None,
        client_id: str | None,
    ):
        self.completion_id, self.created, self.endpoint, self.model = completion_id, created, endpoint, model
        self.prompt, self.started, self.user, self.client_id = prompt, started, user, client_id
        self.chat = endpoint == "chat.completions"

    def _envelope(self, kind: str) -> dict:
        return {
            "id": self.completion_id,
            "object": kind,
            "created": self.created,
            "model": self.model.name,
            "system_fingerprint": self.model.name,
        }

    def response(self, generation: Generation) -> dict:
        if self.chat:
            choice = {"index": 0, "message": {"role": "assistant", "content": generation.text}, "logprobs": None}
            body = self._envelope("chat.completion")
        else:
            choice = {"index": 0, "text": generation.text, "logprobs": None}
            body = self._envelope("text_completion")
        choice["finish_reason"] = generation.finish_reason
        return {**body, "choices": [choice], "usage": _usage(generation)}

    def chunk(self, delta: str | None, role: bool = False, finish_reason: str | None = None) -> dict:
        if self.chat:
            content: dict = {"role": "assistant", "content": ""} if role else {}
            if delta is not None:
                content["content"] = delta
            choice = {"index": 0, "delta": content, "logprobs": None, "finish_reason": finish_reason}
            return {**self._envelope("chat.completion.chunk"), "choices": [choice]}
        choice = {"index": 0, "text": delta or "", "logprobs": None, "finish_reason": finish_reason}
        return {**self._envelope("text_completion"), "choices": [choice]}

    def record(self, generation: Generation) -> dict:
        """The row of the `completions` table."""
        return {
            "completion_id": self.completion_id,
            "created_at": datetime.fromtimestamp(self.created, UTC),
            "endpoint": self.endpoint,
            "model": self.model.name,
            "adapter_version": self.model.version,
            "task": self.prompt.task,
            "instruction": self.prompt.instruction,
            "input": self.prompt.input,
            "prompt": self.prompt.text,
            "output": generation.text,
            "latency_ms": (time.perf_counter() - self.started) * 1000,
            "prompt_tokens": generation.prompt_tokens,
            "completion_tokens": generation.completion_tokens,
            "user": self.user,
            "client_id": self.client_id,
        }


# --- running it -----------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def serve_in_thread(app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Run `app` under uvicorn in a background thread (port 0: a free one), yielding its base URL (`.../v1`) once
    it accepts requests; stopped, gracefully, on exit. For tests and benchmarks that want real HTTP."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    config = uvicorn.Config(app, log_level="warning", lifespan="on", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the server did not start (see its log)")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{sock.getsockname()[1]}/v1"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
