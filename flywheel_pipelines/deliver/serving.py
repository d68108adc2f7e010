"""Deliver, step 5: the model the server answers with — the MLflow `champion` adapter on the base model it was
trained on, swapped for a new one when the alias moves — and how a request becomes a prompt and a completion.

Prompts are built by the same functions training uses (`define/chat.py`), so a request that names a task of the
catalogue asks the adapter exactly what it learnt; the web layer is in `api.py`.
"""

from __future__ import annotations

import gc
import logging
import string
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flywheel_pipelines.define.chat import prompt_text
from flywheel_pipelines.define.tasks import LANGUAGE_NAMES, TASKS, load_template
from flywheel_pipelines.define.tasks.design_tasks import language_of
from flywheel_pipelines.define.tracking import (
    MIX,
    AdapterVersion,
    Tracking,
    current_champion,
    ensure_local_adapter,
)
from flywheel_pipelines.settings import Settings

log = logging.getLogger(__name__)


class RequestError(ValueError):
    """A request the server cannot answer as asked: the status, the request field at fault and why — answered in
    OpenAI's error shape (`body`)."""

    def __init__(
        self,
        message: str,
        param: str | None = None,
        status: int = 400,
        code: str = "invalid_request",
        errors: list[dict] | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.param = param
        self.status = status
        self.code = code
        self.errors = errors  # every problem found, when there were several

    def body(self) -> dict:
        kind = "invalid_request_error" if self.status < 500 else "server_error"
        error = {"message": self.message, "type": kind, "param": self.param, "code": self.code}
        if self.errors:
            error["errors"] = self.errors
        return {"error": error}


class ModelUnavailable(RuntimeError):
    """A champion version that cannot be served here (its base model is missing, its adapter cannot be fetched)."""


# --- prompts --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Prompt:
    """What the model is given, and the instruction example it stands for (what feedback on it trains)."""

    text: str
    instruction: str
    input: str = ""
    task: str | None = None
    templated: bool = True  # False: raw text to continue (a /v1/completions prompt without a task)
    param: str = "messages"  # the request field it came from, named when it is too long


def _placeholders(template: str) -> list[str]:
    return [name for _, name, _, _ in string.Formatter().parse(template) if name]


def task_question(task: str, fields: dict[str, Any] | None, text: str, param: str) -> tuple[str, str]:
    """(instruction, input) of `task` rendered from its catalogue template. `fields` fill the placeholders; the
    request's text (the last user message, or the prompt) fills the template's input field — the last placeholder
    of its input layout (`topic`, `feature`, `design`, `context`, `code`) — unless `fields` gives it. `language_name`
    follows from `language`; a topic with Chinese characters gets the Chinese instruction where there is one."""
    if task not in TASKS:
        raise RequestError(f"unknown task {task!r}: the catalogue has {', '.join(TASKS)}", "task")
    if fields is not None and not isinstance(fields, dict):
        raise RequestError("task_fields must be an object of template fields", "task_fields")
    template = load_template(task)
    values = {str(k): str(v) for k, v in (fields or {}).items()}
    input_fields = _placeholders(template.input)
    if input_fields and input_fields[-1] not in values:
        if not text.strip():
            raise RequestError(f"task {task} needs its input, {input_fields[-1]}: send it as the message", param)
        values[input_fields[-1]] = text
    if "language" in values and "language_name" not in values:
        values["language_name"] = LANGUAGE_NAMES.get(values["language"], values["language"])
    language = language_of(" ".join(values.values()))
    instruction_template = template.instruction.get(language, template.instruction["en"])
    missing = [n for n in _placeholders(instruction_template) + input_fields if n not in values]
    if missing:
        raise RequestError(
            f"task {task} needs the template field {missing[0]!r} in task_fields", f"task_fields.{missing[0]}"
        )
    return instruction_template.format_map(values), template.input.format_map(values)


def _content(message: dict, index: int) -> str:
    content = message.get("content")
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list):  # content parts: only text is understood
        texts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text":
                raise RequestError("only text content parts are supported", f"messages.{index}.content")
            texts.append(str(part.get("text", "")))
        return "".join(texts)
    raise RequestError("content must be a string or a list of text parts", f"messages.{index}.content")


def chat_prompt(tokenizer: Any, messages: Sequence[dict], task: str | None, task_fields: dict | None) -> Prompt:
    """A chat request as a prompt. With a task: the task's instruction and input, as one user turn (the rest of
    the conversation is not sent: the adapter learnt the task from single turns). Without: the conversation through
    the chat template; the last user message is the instruction."""
    if not messages:
        raise RequestError("messages must hold at least one message", "messages")
    conversation = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise RequestError("every message needs a role", f"messages.{i}.role")
        role = "system" if message["role"] == "developer" else message["role"]
        conversation.append({"role": role, "content": _content(message, i)})
    users = [m["content"] for m in conversation if m["role"] == "user"]
    if not users:
        raise RequestError("messages must hold a user message", "messages")
    if task is not None:
        instruction, input_text = task_question(task, task_fields, users[-1], "messages")
        return Prompt(prompt_text(tokenizer, instruction, input_text), instruction, input_text, task)
    single_turn = len(conversation) == 1
    if single_turn or not getattr(tokenizer, "chat_template", None):
        return Prompt(prompt_text(tokenizer, users[-1], ""), users[-1])
    text = tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
    return Prompt(text, users[-1])


def completion_prompt(tokenizer: Any, prompt: Any, task: str | None, task_fields: dict | None) -> Prompt:
    """A /v1/completions prompt: continued as raw text, as OpenAI's endpoint does — unless it names a task, which
    makes it the task's input, asked through the chat template like training asks it."""
    if isinstance(prompt, list):
        if len(prompt) != 1 or not isinstance(prompt[0], str):
            raise RequestError("one prompt (a string) per request", "prompt")
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise RequestError("prompt must be a string", "prompt")
    if task is not None:
        instruction, input_text = task_question(task, task_fields, prompt, "prompt")
        return Prompt(prompt_text(tokenizer, instruction, input_text), instruction, input_text, task, param="prompt")
    return Prompt(prompt, prompt, templated=False, param="prompt")


# --- generation -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sampling:
    """How to pick tokens: OpenAI's parameters. temperature 0 is greedy."""

    max_new_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    logit_bias: dict[int, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Generation:
    text: str
    finish_reason: str  # stop | length
    prompt_tokens: int
    completion_tokens: int


class TextDeltas:
    """The text of a growing answer as pieces safe to send: never past a stop string (an answer ends before it)
    nor the end of a character still being decoded; what could be the start of a stop string waits for the next
    token. Every piece sent, joined, is the final answer."""

    def __init__(self, stop: Sequence[str]):
        self.stop = [s for s in stop if s]
        self.hold = max((len(s) for s in self.stop), default=1) - 1
        self.sent = 0
        self.stopped = False

    def cut(self, text: str) -> str:
        """`text` up to the first stop string."""
        ends = [i for i in (text.find(s) for s in self.stop) if i >= 0]
        if ends:
            self.stopped = True
            return text[: min(ends)]
        return text

    def update(self, text: str) -> str:
        text = self.cut(text)
        end = len(text) if self.stopped else len(text) - self.hold
        while end > self.sent and text[end - 1] == "\ufffd":  # a character split across tokens
            end -= 1
        delta = text[self.sent : end] if end > self.sent else ""
        self.sent += len(delta)
        return delta

    def finish(self, text: str) -> str:
        delta = text[self.sent :]
        self.sent = len(text)
        return delta


class _Stops:
    """Stops generation at a stop string, or when the client went away."""

    def __init__(self, deltas: TextDeltas, decode: Callable[[Any], str], width: int, cancelled: threading.Event):
        self.deltas, self.decode, self.width, self.cancelled = deltas, decode, width, cancelled

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        done = self.cancelled.is_set() or (
            bool(self.deltas.stop) and any(s in self.decode(input_ids[0, self.width :]) for s in self.deltas.stop)
        )
        return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)


class _LogitBias:
    def __init__(self, bias: dict[int, float]):
        self.ids = list(bias)
        self.values = [float("-inf") if v <= -100 else v for v in bias.values()]

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        scores[:, self.ids] += torch.tensor(self.values, dtype=scores.dtype, device=scores.device)
        return scores


class _TokenFeed:
    """A transformers streamer: hands the growing answer's text to `on_text` after every new token."""

    def __init__(self, decode: Callable[[list[int]], str], on_text: Callable[[str], None]):
        self.decode, self.on_text = decode, on_text
        self.ids: list[int] = []
        self.prompt_seen = False

    def put(self, value: Any) -> None:
        if not self.prompt_seen:  # generate() first puts the prompt
            self.prompt_seen = True
            return
        self.ids.extend(value.reshape(-1).tolist())
        self.on_text(self.decode(self.ids))

    def end(self) -> None:
        pass


# --- the served model -----------------------------------------------------------------------------------------------


@dataclass
class ServedModel:
    """One loaded model: the champion adapter on its base model, or the base model alone while there is none."""

    name: str  # what answers report as their model: `<registered model>:v<version>`, or `base:<folder>`
    version: str | None  # the registry version; None: the base model alone
    registered_model: str
    base_model: Path
    adapter_path: Path | None
    model: Any
    tokenizer: Any
    loaded_at: float = field(default_factory=time.time)
    lock: threading.Lock = field(default_factory=threading.Lock)  # one generation at a time on this model

    @property
    def context_length(self) -> int | None:
        return getattr(self.model.config, "max_position_embeddings", None)

    def _encode(self, prompt: Prompt) -> list[int]:
        # A templated prompt carries its special tokens already; raw text gets what the tokenizer adds to a text.
        return self.tokenizer(prompt.text, add_special_tokens=not prompt.templated)["input_ids"]

    def _decode(self, ids: Any) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def _prepared(self, prompt: Prompt, sampling: Sampling) -> tuple[list[int], int]:
        """The prompt's token ids and how many tokens may follow; a RequestError when it cannot be answered."""
        vocabulary = len(self.tokenizer)
        unknown = [t for t in sampling.logit_bias if not 0 <= t < vocabulary]
        if unknown:
            raise RequestError(f"token {unknown[0]} is not in the vocabulary (0..{vocabulary - 1})", "logit_bias")
        ids = self._encode(prompt)
        context = self.context_length
        if context is None:
            return ids, sampling.max_new_tokens
        if len(ids) >= context:
            raise RequestError(
                f"the prompt is {len(ids)} tokens; this model reads at most {context}",
                prompt.param,
                code="context_length_exceeded",
            )
        return ids, min(sampling.max_new_tokens, context - len(ids))

    def check(self, prompt: Prompt, sampling: Sampling) -> None:
        """Raise the RequestError `generate` would, without generating: a stream checks before it answers 200."""
        with self.lock:  # the lock covers the tokenizer too: a fast tokenizer is not for two threads at once
            self._prepared(prompt, sampling)

    def generate(
        self,
        prompt: Prompt,
        sampling: Sampling,
        on_delta: Callable[[str], None] | None = None,
        cancelled: threading.Event | None = None,
    ) -> Generation:
        """Answer `prompt` (blocking; call it off the event loop). `on_delta` receives the answer piece by piece as
        it grows, the pieces joined being the returned text; setting `cancelled` stops the generation."""
        import torch
        from transformers import LogitsProcessorList, StoppingCriteriaList

        deltas = TextDeltas(sampling.stop)
        cancelled = cancelled or threading.Event()
        options: dict[str, Any] = {"do_sample": False}
        if sampling.temperature > 0:
            options = {"do_sample": True, "temperature": sampling.temperature, "top_p": sampling.top_p}
        feed = None
        if on_delta is not None:

            def send(text: str) -> None:
                if delta := deltas.update(text):
                    on_delta(delta)

            feed = _TokenFeed(self._decode, send)
        with self.lock, torch.inference_mode():
            ids, max_new = self._prepared(prompt, sampling)
            input_ids = torch.tensor([ids], device=self.model.device)
            if sampling.seed is not None:
                torch.manual_seed(sampling.seed)
            out = self.model.generate(
                input_ids=input_ids,
                attention_mask=torch.ones_like(input_ids),
                max_new_tokens=max_new,
                pad_token_id=self.tokenizer.pad_token_id,
                stopping_criteria=StoppingCriteriaList([_Stops(deltas, self._decode, len(ids), cancelled)]),
                logits_processor=LogitsProcessorList([_LogitBias(sampling.logit_bias)] if sampling.logit_bias else []),
                streamer=feed,
                **options,
            )
            new_ids = out[0, len(ids) :].tolist()
            text = deltas.cut(self._decode(new_ids))
        if on_delta is not None and (rest := deltas.finish(text)):
            on_delta(rest)
        ended = deltas.stopped or (new_ids and new_ids[-1] == self.tokenizer.eos_token_id)
        finish = "stop" if ended or len(new_ids) < max_new else "length"
        return Generation(text, finish, len(ids), len(new_ids))


def served_tracking(settings: Settings) -> Tracking:
    """The registry entry whose champion is served: the task mix's adapter, or with per-task adapters the primary
    task's (the one the promotion gate judges)."""
    tracking = Tracking(
        settings.mlflow_tracking_uri,
        settings.mlflow_artifact_location,
        settings.tracking.experiment,
        settings.tracking.registered_model,
    )
    hp = settings.training
    return tracking if hp.adapters == MIX else tracking.for_adapter(hp.primary_task)


class ModelLoader:
    """Loads what the registry says to serve, on the base model each version was trained on."""

    def __init__(self, settings: Settings, tracking: Tracking | None = None):
        self.settings = settings
        self.tracking = tracking or served_tracking(settings)
        self.cache_dir = settings.data_path / "serving" / "adapters"

    def champion(self) -> AdapterVersion | None:
        return current_champion(self.tracking)

    def configured_base_model(self) -> Path:
        from flywheel_pipelines.define.base_model import resolve_base_model

        s = self.settings
        return resolve_base_model(s.base_model_reference, s.data_path / "models", s.base_model.revision).path

    def trained_base_model(self, version: AdapterVersion, adapter: Path) -> Path:
        """The base model the version was trained on: the run's `base_model` parameter (else the adapter's own
        record of it) when that folder is here; the configured base model when it is the same one (a GGUF converts
        into a folder named by its content, a hub snapshot by its commit)."""
        import json

        recorded = None
        if version.run_id:
            recorded = self.tracking.client().get_run(version.run_id).data.params.get("base_model")
        if not recorded and (adapter / "adapter_config.json").exists():
            recorded = json.loads((adapter / "adapter_config.json").read_text()).get("base_model_name_or_path")
        if recorded and Path(recorded).is_dir():
            return Path(recorded)
        configured = self.configured_base_model()
        if not recorded or Path(recorded).name == configured.name:
            return configured
        raise ModelUnavailable(
            f"version {version.version} was trained on {recorded}, which is not on this machine, and the configured "
            f"base model ({configured}) is another one"
        )

    def load(self, version: AdapterVersion | None) -> ServedModel:
        from flywheel_pipelines.define.evaluate.generate import load_for_generation

        dtype = self.settings.base_model.dtype
        registered = self.tracking.registered_model
        if version is None:
            base = self.configured_base_model()
            model, tokenizer = load_for_generation(base, None, dtype)
            return ServedModel(f"base:{base.name}", None, registered, base, None, model, tokenizer)
        try:
            adapter = ensure_local_adapter(self.tracking, version, self.cache_dir)
        except Exception as err:
            raise ModelUnavailable(f"version {version.version}: its adapter cannot be fetched: {err}") from err
        base = self.trained_base_model(version, adapter)
        model, tokenizer = load_for_generation(base, adapter, dtype)
        return ServedModel(
            f"{registered}:v{version.version}", version.version, registered, base, adapter, model, tokenizer
        )


class ModelServer:
    """The model answers come from, and the thread that swaps in a new champion.

    Every request takes `current` once and keeps it, so a swap never changes the model under a running generation;
    the new model is loaded beside the old one, off the request path, and replaces it in one assignment."""

    def __init__(self, loader: ModelLoader):
        self.loader = loader
        self.current: ServedModel | None = None
        self.last_error: str | None = None
        self.checked_at: float | None = None
        self._failed_version: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._swap = threading.Lock()

    def load(self) -> ServedModel:
        """The champion, or the base model when there is none yet (serving starts anyway, and says so)."""
        champion = self.loader.champion()
        self.current = self.loader.load(champion)
        self.checked_at = time.time()
        return self.current

    def refresh(self) -> bool:
        """One look at the registry: load and swap in the champion when the alias moved. True when it swapped. A
        version that fails to load is reported (and tried again at the next look); the old model keeps serving."""
        with self._swap:
            champion = self.loader.champion()
            self.checked_at = time.time()
            if champion is None or (self.current is not None and champion.version == self.current.version):
                return False  # an alias taken away leaves the last champion serving
            try:
                loaded = self.loader.load(champion)
            except Exception as err:
                self.last_error = f"version {champion.version} could not be loaded: {err}"
                if self._failed_version != champion.version:
                    log.exception(
                        "champion version %s could not be loaded; still serving %s",
                        champion.version,
                        self.current.name if self.current else "nothing",
                    )
                self._failed_version = champion.version
                return False
            previous = self.current
            self.current = loaded
            self.last_error = None
            log.info("now serving %s (was %s)", loaded.name, previous.name if previous else "nothing")
            # The old model's objects were frozen at start-up (api.create_app): let a collection see them again,
            # then freeze what is left, the new model included.
            del previous
            gc.unfreeze()
            gc.collect()
            gc.freeze()
            return True

    def start_polling(self, interval_s: float) -> None:
        def poll() -> None:
            while not self._stop.wait(interval_s):
                try:
                    self.refresh()
                except Exception as err:  # the registry unreachable: keep serving, look again later
                    self.last_error = f"registry: {err}"
                    log.warning("could not ask the registry for the champion: %s", err)

        self._thread = threading.Thread(target=poll, name="champion-reload", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
