"""A real HTTP server speaking OpenAI's chat-completions wire format, with answers scripted by the test.

It stands in for OpenAI, vLLM or llama.cpp's server, so clients are tested through the same SDK, sockets, retries
and back-off they use in production. It records every request, tracks how many were in flight at once, and can be
told to fail (429, 5xx) the way a throttled or broken endpoint does.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

_ERROR_TYPES = {400: "invalid_request_error", 401: "invalid_api_key", 404: "not_found", 429: "rate_limit_exceeded"}


class WireError(Exception):
    """Raised by `respond` to answer a request with an OpenAI-style error instead of content."""

    def __init__(self, status: int, message: str = "scripted failure") -> None:
        super().__init__(message)
        self.status = status


def _words(text: Any) -> int:
    return len(text.split()) if isinstance(text, str) else 0


class OpenAIWireServer:
    """POST /v1/chat/completions and GET /v1/models on 127.0.0.1, in a daemon thread; use as a context manager."""

    def __init__(
        self,
        respond: Callable[[dict], str],
        *,
        expected_api_key: str | None = None,
        retry_after_ms: int = 10,
    ) -> None:
        self.respond = respond
        self.expected_api_key = expected_api_key
        # The SDK honours retry-after-ms over its own back-off (0.5 s and up), which keeps retry tests fast.
        self.retry_after_ms = retry_after_ms
        self.requests: list[dict] = []
        self.max_in_flight = 0
        self._in_flight = 0
        self._failures: list[int] = []
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.wire = self  # type: ignore[attr-defined]
        # A short poll interval makes shutdown, and so each test, fast.
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def fail_next(self, count: int, status: int = 429) -> None:
        """Answer the next `count` chat requests with `status` (and retry-after headers)."""
        with self._lock:
            self._failures.extend([status] * count)

    def __enter__(self) -> OpenAIWireServer:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def _chat(self, body: dict, authorization: str | None) -> tuple[int, dict]:
        with self._lock:
            self.requests.append(body)
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
            scripted_failure = self._failures.pop(0) if self._failures else None
        try:
            if self.expected_api_key is not None and authorization != f"Bearer {self.expected_api_key}":
                raise WireError(401, "Incorrect API key provided.")
            if body.get("stream"):
                raise WireError(400, "stream is not supported by this test server")
            if scripted_failure is not None:
                raise WireError(scripted_failure)
            content = self.respond(body)
        except WireError as error:
            kind = _ERROR_TYPES.get(error.status, "server_error")
            return error.status, {"error": {"message": str(error), "type": kind, "param": None, "code": kind}}
        finally:
            with self._lock:
                self._in_flight -= 1
        prompt_tokens = sum(_words(message.get("content")) for message in body.get("messages", []))
        completion_tokens = _words(content)
        return 200, {
            "id": f"chatcmpl-{len(self.requests)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", ""),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the SDK's connection pool expects

    def do_GET(self) -> None:
        if self.path.rstrip("/") != "/v1/models":
            self._send(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
            return
        self._send(200, {"object": "list", "data": [{"id": "test-model", "object": "model", "owned_by": "tests"}]})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._send(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
            return
        wire: OpenAIWireServer = self.server.wire  # type: ignore[attr-defined]
        status, payload = wire._chat(body, self.headers.get("authorization"))
        throttled = status == 429 or status >= 500
        self._send(
            status, payload, {"retry-after": "0", "retry-after-ms": str(wire.retry_after_ms)} if throttled else {}
        )

    def _send(self, status: int, payload: dict, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: the test's own assertions say what happened."""
