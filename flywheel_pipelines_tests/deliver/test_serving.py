"""Step 5: the champion adapter answers OpenAI's own client over real HTTP, every answer is logged with the id the
client got, a new champion is served without a restart, and nobody without the token gets an answer."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import openai
import pytest

from flywheel_pipelines.cli import main
from flywheel_pipelines.define.tasks import load_template
from flywheel_pipelines.define.tracking import AdapterVersion, promote, register_adapter
from flywheel_pipelines.deliver.api import create_app, serve_in_thread
from flywheel_pipelines.deliver.feedback_store import FeedbackStore
from flywheel_pipelines.deliver.serving import ModelLoader, ModelUnavailable, TextDeltas, served_tracking
from flywheel_pipelines.settings import Settings, load_settings
from flywheel_pipelines_tests.conftest import project_config, write_project

TOKEN = "test-token"


def make_project(root: Path, base_model: Path, **overrides: dict) -> Settings:
    serving = {"reload_interval_seconds": 0.1, "max_new_tokens": 8}
    return load_settings(write_project(root, project_config(root, str(base_model), serving=serving, **overrides)))


def register_champion(settings: Settings, base_model: Path, name: str) -> str:
    """A LoRA adapter (random, not trained: serving does not care) logged as an MLflow run that records its base
    model, registered and promoted to champion, as `lora_adapter` and `champion_adapter` would."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = settings.data_path / "adapters" / name
    lora = LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj"], task_type="CAUSAL_LM", init_lora_weights=False)
    get_peft_model(AutoModelForCausalLM.from_pretrained(base_model), lora).save_pretrained(path)
    AutoTokenizer.from_pretrained(base_model).save_pretrained(path)
    tracking = served_tracking(settings)
    client = tracking.client()
    run_id = client.create_run(tracking.experiment_id()).info.run_id
    client.log_param(run_id, "base_model", str(base_model))
    client.log_artifacts(run_id, str(path), "adapter")
    client.set_terminated(run_id)
    version = register_adapter(tracking, run_id, path).version
    promote(tracking, version, "test")
    return version


def http(url: str, body: dict | None = None, token: str | None = TOKEN) -> tuple[int, str]:
    headers = {"content-type": "application/json"} | ({"authorization": f"Bearer {token}"} if token else {})
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers=headers, method="POST" if body is not None else "GET")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path):
    """One server for the module: the project's champion is version 1."""
    settings = make_project(tmp_path_factory.mktemp("serving"), tiny_model_dir)
    register_champion(settings, tiny_model_dir, "mix-v1")
    app = create_app(settings, token=TOKEN)
    with serve_in_thread(app) as url:
        yield url, openai.OpenAI(api_key=TOKEN, base_url=url, max_retries=0, timeout=60), settings
    app.state.store.dispose()


def logged(settings: Settings, completion_id: str) -> dict | None:
    store = FeedbackStore(settings.feedback_database_url)
    try:
        return store.completion(completion_id)
    finally:
        store.dispose()


def eos_banned(client: openai.OpenAI) -> dict:
    """A logit bias that bans the end of turn, so the random tiny model always writes max_tokens tokens."""
    from transformers import AutoTokenizer

    card = client.models.list().data[0]
    return {str(AutoTokenizer.from_pretrained(card.base_model).eos_token_id): -100}


def test_the_openai_client_lists_the_champion_and_its_answers_are_logged_under_the_id_it_got(served):
    _, client, settings = served
    (card,) = client.models.list().data
    assert (card.id, card.version, card.champion) == ("flywheel", "1", True)
    assert client.models.retrieve("flywheel").served == "flywheel-code-lora:v1"

    chat = client.chat.completions.create(
        model="flywheel", messages=[{"role": "user", "content": "Say hello"}], temperature=0, user="carol"
    )
    assert chat.id.startswith("chatcmpl-") and chat.model == "flywheel-code-lora:v1"
    assert chat.choices[0].finish_reason in ("stop", "length") and chat.usage.completion_tokens <= 8
    text = client.completions.create(model="flywheel", prompt="def add(a, b):", max_tokens=5, temperature=0)
    assert text.id.startswith("cmpl-") and text.usage.completion_tokens <= 5

    row = logged(settings, chat.id)
    assert row["output"] == chat.choices[0].message.content
    assert (row["adapter_version"], row["model"], row["endpoint"]) == ("1", "flywheel-code-lora:v1", "chat.completions")
    assert (row["instruction"], row["task"], row["user"]) == ("Say hello", None, "carol")
    assert row["latency_ms"] > 0 and row["prompt_tokens"] == chat.usage.prompt_tokens
    assert "<|im_start|>user\nSay hello" in row["prompt"]  # through the chat template, as training asks
    raw = logged(settings, text.id)
    assert (raw["prompt"], raw["output"], raw["endpoint"]) == ("def add(a, b):", text.choices[0].text, "completions")


def test_a_streamed_chat_arrives_in_pieces_that_join_into_the_logged_answer(served):
    url, client, settings = served
    stream = client.chat.completions.create(
        model="flywheel",
        messages=[{"role": "user", "content": "Count"}],
        max_tokens=6,
        temperature=0,
        logit_bias=eos_banned(client),
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    deltas = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert deltas and all(deltas)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].usage.completion_tokens == 6
    assert logged(settings, chunks[0].id)["output"] == "".join(deltas)

    status, body = http(f"{url}/completions", {"model": "flywheel", "prompt": "x", "max_tokens": 2, "stream": True})
    events = [line.removeprefix("data: ") for line in body.splitlines() if line.startswith("data: ")]
    assert status == 200 and events[-1] == "[DONE]"
    assert json.loads(events[0])["object"] == "text_completion"


def test_a_request_that_names_a_task_is_asked_through_the_task_template_and_logged_as_that_task(served):
    _, client, settings = served
    fields = {"kind": "function", "name": "add", "language": "python"}
    chat = client.chat.completions.create(
        model="flywheel",
        messages=[{"role": "user", "content": "def add(a, b):"}],
        temperature=0,
        extra_body={"task": "code_generation", "task_fields": fields},
    )
    row = logged(settings, chat.id)
    template = load_template("code_generation")
    assert row["task"] == "code_generation"
    assert row["instruction"] == template.instruction["en"].format(language_name="Python", **fields)
    assert row["input"] == "```python\ndef add(a, b):\n```"  # the message is the template's input

    story = client.completions.create(
        model="flywheel", prompt="礼品卡结账", max_tokens=3, temperature=0, extra_body={"task": "user_story"}
    )
    assert logged(settings, story.id)["instruction"] == load_template("user_story").instruction["zh"]

    with pytest.raises(openai.BadRequestError) as missing:
        client.chat.completions.create(
            model="flywheel",
            messages=[{"role": "user", "content": "def f():"}],
            extra_body={"task": "code_generation"},
        )
    assert missing.value.body["param"] == "task_fields.kind"
    with pytest.raises(openai.BadRequestError) as unknown:
        client.completions.create(model="flywheel", prompt="x", extra_body={"task": "poetry"})
    assert unknown.value.body["param"] == "task" and "code_generation" in unknown.value.body["message"]


def test_stop_sequences_end_a_streamed_answer_before_them():
    deltas = TextDeltas(["END"])
    pieces = [deltas.update(t) for t in ("ab", "abcE", "abcEN", "abcENDxyz")]
    assert "".join(pieces) == "abc" and deltas.stopped
    assert deltas.finish(deltas.cut("abcENDxyz")) == ""
    plain = TextDeltas([])
    assert [plain.update(t) for t in ("a", "a\ufffd", "aé")] == ["a", "", "é"]  # half a character waits


def test_no_token_or_a_wrong_one_gets_401_and_health_needs_none(served):
    url, _, _ = served
    wrong = openai.OpenAI(api_key="not-the-token", base_url=url, max_retries=0)
    with pytest.raises(openai.AuthenticationError) as err:
        wrong.models.list()
    assert err.value.body["code"] == "invalid_api_key"
    for path, body in (("/models", None), ("/chat/completions", {"model": "flywheel"}), ("/feedback", {})):
        status, text = http(url + path, body, token=None)
        assert status == 401 and json.loads(text)["error"]["type"] == "invalid_request_error", path
    status, text = http(url.removesuffix("/v1") + "/health", token=None)
    assert status == 200 and json.loads(text)["version"] == "1"


def test_unknown_models_and_bad_requests_are_answered_in_openai_error_shape(served):
    url, client, _ = served
    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    assert err.value.body["param"] == "model"
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="flywheel", messages=[{"role": "user", "content": "x"}], n=2)
    assert err.value.body["param"] == "n"
    status, text = http(f"{url}/chat/completions", {"model": "flywheel", "messages": "hi"})
    assert status == 400 and json.loads(text)["error"]["param"] == "messages"


def test_a_new_champion_is_served_without_a_restart_while_a_running_request_finishes_on_the_old_one(
    tmp_path: Path, tiny_model_dir: Path
):
    settings = make_project(tmp_path, tiny_model_dir)
    register_champion(settings, tiny_model_dir, "mix-v1")
    app = create_app(settings, token=TOKEN)
    with serve_in_thread(app) as url:
        client = openai.OpenAI(api_key=TOKEN, base_url=url, max_retries=0, timeout=60)
        # Hold the version-1 model in the middle of an answer until version 2 has taken over.
        inner = app.state.server.current.model.get_base_model()
        forward, calls, started, release = inner.forward, [], threading.Event(), threading.Event()

        def held_forward(*args, **kwargs):
            calls.append(1)
            if len(calls) == 2:
                started.set()
                release.wait(30)
            return forward(*args, **kwargs)

        inner.forward = held_forward
        answers: list = []
        running = threading.Thread(
            target=lambda: answers.append(
                client.chat.completions.create(
                    model="flywheel",
                    messages=[{"role": "user", "content": "slow"}],
                    max_tokens=4,
                    temperature=0,
                    logit_bias=eos_banned(client),
                )
            )
        )
        running.start()
        assert started.wait(30)
        register_champion(settings, tiny_model_dir, "mix-v2")
        deadline = time.monotonic() + 30
        while client.models.list().data[0].version != "2":
            assert time.monotonic() < deadline, "version 2 was never served"
            time.sleep(0.05)
        fresh = client.completions.create(model="flywheel", prompt="x", max_tokens=2, temperature=0)
        assert fresh.model == "flywheel-code-lora:v2"  # served while the old model is still busy
        release.set()
        running.join(30)
        (old,) = answers
        assert old.model == "flywheel-code-lora:v1" and old.usage.completion_tokens == 4
        assert logged(settings, old.id)["adapter_version"] == "1"
        assert logged(settings, fresh.id)["adapter_version"] == "2"
        assert json.loads(http(url.removesuffix("/v1") + "/health")[1])["last_reload_error"] is None
    app.state.store.dispose()


def test_without_a_champion_the_base_model_answers_and_says_so(tmp_path: Path, tiny_model_dir: Path):
    settings = make_project(tmp_path, tiny_model_dir)
    app = create_app(settings, token=TOKEN, poll_registry=False)
    with serve_in_thread(app) as url:
        client = openai.OpenAI(api_key=TOKEN, base_url=url, max_retries=0)
        (card,) = client.models.list().data
        assert (card.version, card.champion, card.served) == (None, False, f"base:{tiny_model_dir.name}")
        answer = client.completions.create(model="flywheel", prompt="x", max_tokens=2)
        assert logged(settings, answer.id)["adapter_version"] is None
    app.state.store.dispose()


def test_an_adapter_is_applied_on_the_base_model_it_was_trained_on(tmp_path: Path, tiny_model_dir: Path):
    settings = make_project(tmp_path, tiny_model_dir)
    loader = ModelLoader(settings)
    adapter = tmp_path / "adapter"
    adapter.mkdir()

    def trained_on(base: str) -> Path:
        (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": base}))
        return loader.trained_base_model(AdapterVersion("3", "", adapter, {}), adapter)

    other = tmp_path / "another-model"
    (other / "sub").mkdir(parents=True)
    assert trained_on(str(other)) == other  # the recorded base model, not the configured one
    assert trained_on(f"/elsewhere/{tiny_model_dir.name}") == tiny_model_dir  # the same model, moved
    with pytest.raises(ModelUnavailable, match="trained on /elsewhere/unknown"):
        trained_on("/elsewhere/unknown")


def test_flywheel_serve_refuses_to_start_without_a_token(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    settings = make_project(tmp_path, tiny_model_dir)
    monkeypatch.delenv("FLYWHEEL_API_TOKEN", raising=False)
    assert main(["--config", str(settings.source), "serve"]) == 2
    assert "FLYWHEEL_API_TOKEN" in capsys.readouterr().err


def test_flywheel_serve_starts_from_flywheel_yaml_and_stops_cleanly_on_sigterm(tmp_path: Path, tiny_model_dir: Path):
    settings = make_project(tmp_path, tiny_model_dir)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "flywheel_pipelines.cli", "--config", str(settings.source), "serve"]
    server = subprocess.Popen(
        [*command, "--port", str(port), "--log-level", "warning"],
        env={**os.environ, "FLYWHEEL_API_TOKEN": "from-the-environment"},
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if http(f"http://127.0.0.1:{port}/health", token=None)[0] == 200:
                    break
            except urllib.error.URLError:  # not listening yet
                pass
            assert server.poll() is None and time.monotonic() < deadline, "flywheel serve did not come up"
            time.sleep(0.2)
        status, body = http(f"http://127.0.0.1:{port}/v1/models", token="from-the-environment")
        assert status == 200 and json.loads(body)["data"][0]["id"] == "flywheel"
        assert http(f"http://127.0.0.1:{port}/v1/models", token=TOKEN)[0] == 401
    finally:
        server.send_signal(signal.SIGTERM)
        # uvicorn shuts down (lifespan included), then re-raises the signal it caught: the exit says SIGTERM.
        assert server.wait(30) in (0, -signal.SIGTERM)
