"""The whole flywheel, closed: the champion is served through the OpenAI wire format, tools take completions with
the official `openai` client and post what users did with them, the feedback sensor ticks, `retrain` folds the
feedback in, evaluates, gates and promotes a new version, and the running server picks it up without a restart."""

import json
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import openai
import pandas as pd

from flywheel_pipelines.definitions import build_definitions
from flywheel_pipelines.deliver.api import create_app, serve_in_thread
from flywheel_pipelines.deliver.feedback_store import FeedbackStore
from flywheel_pipelines.orchestration.resources import build_resources
from flywheel_pipelines.orchestration.turn import run_turn
from flywheel_pipelines.settings import load_settings
from flywheel_pipelines_tests.conftest import project_config, write_project

TOKEN = "loop-test-token"
FUNCTIONS = [("add", "def add(a, b):"), ("scale", "def scale(x, k):"), ("neg", "def neg(x):")]


def _post(url: str, path: str, body: dict) -> dict:
    request = urllib.request.Request(
        url.removesuffix("/v1") + path,
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json", "authorization": f"Bearer {TOKEN}"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def _served_version(client: openai.OpenAI) -> str | None:
    return client.models.list().data[0].model_extra["version"]


def test_served_completions_and_their_feedback_retrain_a_champion_that_the_server_then_serves(
    tmp_path: Path, pretrained_tiny_model_dir: Path
):
    # The pretrained tiny model answers with code-like text (a random one only with whitespace, which is no
    # preference data); the gate is not what this test is about.
    config = project_config(
        tmp_path,
        str(pretrained_tiny_model_dir),
        feedback={"retrain_min_new_events": 3},
        serving={"reload_interval_seconds": 0.5},
        promotion={"tolerances": {"humaneval/pass@1": 1.0}, "memorisation_ceiling": 1.0},
    )
    settings = load_settings(write_project(tmp_path, config))
    defs = build_definitions(settings)
    with dg.instance_for_test() as instance:
        assert run_turn(settings, instance, log=lambda _: None)  # version 1 becomes champion
        app = create_app(settings, token=TOKEN)
        with serve_in_thread(app) as url:
            client = openai.OpenAI(api_key=TOKEN, base_url=url, max_retries=0, timeout=60)
            assert _served_version(client) == "1"
            ids = []
            for name, signature in FUNCTIONS:
                chat = client.chat.completions.create(
                    model="flywheel",
                    messages=[{"role": "user", "content": signature}],
                    max_tokens=8,
                    temperature=0,
                    extra_body={
                        "task": "code_generation",
                        "task_fields": {"kind": "function", "name": name, "language": "python"},
                    },
                )
                ids.append(chat.id)
            verdicts = [
                {"completion_id": ids[0], "verdict": "edited", "edited_text": "return a + b", "user": "carol"},
                {"completion_id": ids[1], "verdict": "accepted", "user": "dan"},
                {"completion_id": ids[2], "verdict": "rejected", "client_id": "ide-plugin"},
            ]
            posted = [_post(url, "/v1/feedback", v) for v in verdicts]
            assert [p["status"] for p in posted] == ["stored"] * 3
            assert _post(url, "/v1/feedback", verdicts[0])["status"] == "duplicate"  # a retry is stored once

            # The sensor sees three new events: one retrain, for today's feedback.
            sensor = defs.resolve_sensor_def("feedback_sensor")
            with dg.build_sensor_context(
                instance=instance, resources=build_resources(settings), definitions=defs
            ) as context:
                (request,) = sensor.evaluate_tick(context).run_requests
            assert request.partition_key == datetime.now(UTC).date().isoformat()
            retrain = defs.resolve_job_def("retrain").execute_in_process(
                instance=instance, partition_key=request.partition_key, tags=request.tags
            )
            assert retrain.success

            day = pd.read_parquet(settings.assets_path / "feedback_events" / f"{request.partition_key}.parquet")
            assert sorted(day["kind"]) == ["accept", "edit", "reject"]
            assert set(day["adapter_version"]) == {"1"}  # joined with the completion log
            dataset = pd.read_parquet(settings.assets_path / "instruction_dataset.parquet")
            edit = dataset[dataset["origin"] == f"feedback:{posted[0]['event_id']}"]
            assert list(edit["output"]) == ["return a + b"] and list(edit["split"]) == ["train"]
            preferences = retrain.asset_materializations_for_node("preference_data")[0].metadata
            # The edit is a pair (its text over the answer) and two judgements, the reject one more (the accept too,
            # unless the tiny model's answer was blank: nothing to learn to say).
            assert preferences["dpo_pairs"].value >= 1 and preferences["kto_examples"].value >= 3
            champion = retrain.asset_materializations_for_node("champion_adapter")[0].metadata
            assert champion["version"].value == "2"

            # The running server notices the alias moved and answers with version 2.
            deadline = time.monotonic() + 30
            while _served_version(client) != "2":
                assert time.monotonic() < deadline, "the server did not pick up the new champion"
                time.sleep(0.2)
            answer = client.chat.completions.create(
                model="flywheel", messages=[{"role": "user", "content": "hello"}], max_tokens=4
            )
        store = FeedbackStore(settings.feedback_database_url)
        try:
            assert store.completion(answer.id)["adapter_version"] == "2"
        finally:
            store.dispose()
