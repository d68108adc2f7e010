"""A teacher model behind any OpenAI-compatible endpoint: cached, bounded-concurrency distillation with repair turns.

Works with OpenAI, vLLM, llama.cpp's server, Ollama, or any local server speaking /v1/chat/completions. Retries
with back-off are the official SDK's; this module adds what a data pipeline needs on top: a persistent cache (a
re-run costs nothing), validation with repair turns, and counts and cost for the run's metadata.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import openai

# Statuses the SDK retries (besides connection errors); counted so a run reports how hard it was throttled.
_RETRIED_STATUSES = frozenset({408, 409, 429})
# Local servers need no key, but the SDK refuses to start without one.
_NO_KEY = "not-needed"
_REPAIR = (
    "Your answer does not pass validation:\n{errors}\nReply again with the corrected answer only, in the same format."
)


def _is_retried(status: int) -> bool:
    return status in _RETRIED_STATUSES or status >= 500


@dataclass(frozen=True)
class TeacherConfig:
    base_url: str
    """The endpoint's root, e.g. "https://api.openai.com/v1" or "http://localhost:8000/v1" (vLLM)."""
    model: str
    """The model id the endpoint serves."""
    api_key_env: str = "OPENAI_API_KEY"
    """Name of the environment variable holding the key; the key itself is never stored or logged."""
    max_concurrency: int = 4
    """Requests in flight at once."""
    max_retries: int = 5
    """Retries per request on 408/409/429/5xx and connection errors, with exponential back-off (by the SDK)."""
    timeout_s: float = 120.0
    """Per-request timeout."""
    temperature: float = 0.2
    max_tokens: int = 1024
    repair_attempts: int = 2
    """Extra turns in which the validator's errors are fed back to the teacher."""
    input_cost_per_million: float = 0.0
    """USD per 1M prompt tokens, for cost accounting."""
    output_cost_per_million: float = 0.0
    """USD per 1M completion tokens."""


@dataclass(frozen=True)
class TeacherPrompt:
    key: str
    """Stable id of what is asked (e.g. "curated_asset:ab12.. / docstring_generation"), reported back."""
    system: str
    """The task's expected output format."""
    user: str
    """The instruction and its input."""
    validate: Callable[[str], list[str]] | None = field(default=None, compare=False)
    """This prompt's own validator (e.g. one that knows the signature); else the batch's `validate`."""


@dataclass
class Distilled:
    key: str
    output: str | None
    """The validated (extracted) answer; None when every attempt failed validation or the request failed."""
    attempts: int
    """Model turns used (1 + repairs)."""
    errors: list[str]
    """The last validation errors, or the request error, when output is None."""
    cached: bool
    """Every turn came from the cache."""


@dataclass
class Usage:
    """Counters of a batch of teacher calls; thread-safe because distil's workers share one."""

    requests: int = 0
    """Turns sent to the endpoint (not cache hits); each may take several HTTP attempts, counted in `retries`."""
    cache_hits: int = 0
    retries: int = 0
    """Retryable responses (429, 5xx, ...) that the SDK retried after back-off."""
    repairs: int = 0
    prompt_tokens: int = 0
    """Only from real requests: a cache hit costs nothing."""
    completion_tokens: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, count in counts.items():
                setattr(self, name, getattr(self, name) + count)


@dataclass
class DistillationReport:
    """What a distillation did and cost; reports of several batches add up with `+`."""

    prompts: int = 0
    succeeded: int = 0
    failed: int = 0
    requests: int = 0
    cache_hits: int = 0
    retries: int = 0
    repairs: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0

    @classmethod
    def of(cls, results: Sequence[Distilled], usage: Usage, config: TeacherConfig) -> DistillationReport:
        succeeded = sum(result.output is not None for result in results)
        # cost = prompt_tokens * input_price / 1e6 + completion_tokens * output_price / 1e6 (prices per 1M tokens)
        cost = (
            usage.prompt_tokens * config.input_cost_per_million
            + usage.completion_tokens * config.output_cost_per_million
        ) / 1e6
        counters = {f.name: getattr(usage, f.name) for f in fields(Usage) if not f.name.startswith("_")}
        return cls(len(results), succeeded, len(results) - succeeded, cost_usd=cost, **counters)

    def __add__(self, other: DistillationReport) -> DistillationReport:
        return DistillationReport(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})

    def as_metadata(self) -> dict[str, int | float]:
        """A flat dict for Dagster metadata."""
        metadata: dict[str, int | float] = {f.name: getattr(self, f.name) for f in fields(self)}
        metadata["cost_usd"] = round(self.cost_usd, 6)
        return metadata


class TeacherCache:
    """Persistent answers keyed by request, in SQLite: one connection per call keeps it safe across threads."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as connection, connection:
            # WAL lets readers (a re-run, a second worker process) proceed while an answer is written.
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, value TEXT NOT NULL)")

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=30)

    @staticmethod
    def key_for(model: str, messages: list[dict], temperature: float, max_tokens: int) -> str:
        request = {"model": model, "messages": messages, "temperature": temperature, "max_tokens": max_tokens}
        canonical = json.dumps(request, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def get(self, key: str) -> dict | None:
        with closing(self._connect()) as connection:
            row = connection.execute("SELECT value FROM answers WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key: str, value: dict) -> None:
        with closing(self._connect()) as connection, connection:
            connection.execute("INSERT OR REPLACE INTO answers VALUES (?, ?)", (key, json.dumps(value)))

    def __len__(self) -> int:
        with closing(self._connect()) as connection:
            return connection.execute("SELECT COUNT(*) FROM answers").fetchone()[0]


class EmptyAnswer(RuntimeError):
    """The endpoint answered without a choice or with blank text; not cached, so a re-run asks again."""


class Teacher:
    """Asks the teacher, through the cache; retries are counted only on the client it builds itself."""

    def __init__(self, config: TeacherConfig, cache: TeacherCache, client: openai.OpenAI | None = None) -> None:
        self.config = config
        self.cache = cache
        self.usage = Usage()
        """Lifetime counters of `chat` calls made without a Usage of their own."""
        # Retryable responses are counted per thread: the SDK's sync client runs the hook in the calling thread.
        self._attempts = threading.local()
        self._owns_client = client is None
        self._client = client or openai.OpenAI(
            base_url=config.base_url,
            api_key=os.environ.get(config.api_key_env) or _NO_KEY,
            max_retries=config.max_retries,
            timeout=config.timeout_s,
            http_client=openai.DefaultHttpxClient(event_hooks={"response": [self._count_retryable]}),
        )

    def _count_retryable(self, response: Any) -> None:
        if _is_retried(response.status_code):
            self._attempts.retryable = getattr(self._attempts, "retryable", 0) + 1

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    def chat(self, messages: list[dict], usage: Usage | None = None) -> tuple[str, bool]:
        """(content, was_cached) for `messages`, from the cache when this exact request was answered before."""
        usage = self.usage if usage is None else usage
        config = self.config
        key = TeacherCache.key_for(config.model, messages, config.temperature, config.max_tokens)
        if (hit := self.cache.get(key)) is not None:
            usage.add(cache_hits=1)
            return hit["content"], True
        self._attempts.retryable = 0
        try:
            response = self._client.chat.completions.create(
                model=config.model, messages=messages, temperature=config.temperature, max_tokens=config.max_tokens
            )
        except openai.APIStatusError as error:
            # The last retryable response was given up on, not retried.
            retried = self._attempts.retryable - _is_retried(error.status_code)
            usage.add(requests=1, retries=max(retried, 0))
            raise
        except openai.APIError:
            usage.add(requests=1, retries=self._attempts.retryable)
            raise
        tokens = response.usage  # some servers leave usage out
        prompt_tokens = tokens.prompt_tokens if tokens else 0
        completion_tokens = tokens.completion_tokens if tokens else 0
        usage.add(
            requests=1,
            retries=self._attempts.retryable,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
        )
        content = response.choices[0].message.content if response.choices else None
        if not (content or "").strip():
            raise EmptyAnswer(f"{config.model} at {config.base_url} gave an empty answer")
        answer = {"content": content, "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens}
        self.cache.put(key, answer)
        return content, False

    def distil(
        self,
        prompts: Sequence[TeacherPrompt],
        validate: Callable[[str], list[str]] | None = None,
        extract: Callable[[str], str] = lambda text: text.strip(),
    ) -> tuple[list[Distilled], DistillationReport]:
        """Validated answers to `prompts`, in their order, asking at most `max_concurrency` at once."""
        usage = Usage()
        with ThreadPoolExecutor(max_workers=self.config.max_concurrency) as pool:
            results = list(pool.map(lambda prompt: self._distil_one(prompt, validate, extract, usage), prompts))
        return results, DistillationReport.of(results, usage, self.config)

    def _distil_one(
        self,
        prompt: TeacherPrompt,
        validate: Callable[[str], list[str]] | None,
        extract: Callable[[str], str],
        usage: Usage,
    ) -> Distilled:
        messages = [{"role": "system", "content": prompt.system}, {"role": "user", "content": prompt.user}]
        all_cached = True
        turns = 1 + self.config.repair_attempts
        for attempt in range(1, turns + 1):
            try:
                content, cached = self.chat(messages, usage)
            except (openai.APIError, EmptyAnswer) as error:
                # One prompt's failure must not cost the batch: it is reported and the others go on.
                return Distilled(prompt.key, None, attempt, [f"request failed: {error}"], cached=False)
            all_cached &= cached
            answer = extract(content)
            errors = (prompt.validate or validate or (lambda _: []))(answer)
            if not errors:
                return Distilled(prompt.key, answer, attempt, [], all_cached)
            if attempt < turns:
                # Each turn is a pure function of the turns before it, so repairs are cached like first answers.
                usage.add(repairs=1)
                feedback = _REPAIR.format(errors="\n".join(f"- {error}" for error in errors))
                messages = [*messages, {"role": "assistant", "content": content}, {"role": "user", "content": feedback}]
        return Distilled(prompt.key, None, turns, errors, all_cached)
