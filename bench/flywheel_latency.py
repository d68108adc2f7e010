"""Flywheel latency: from a batch of users' edits posted to the API to the newly promoted champion being served,
on the default model (SmolLM2-135M-Instruct) and this machine's cores. Goal: under 10 minutes. Prints the breakdown
per stage: posting the edits, the feedback sensor's tick, every step of the `retrain` run (the day's feedback,
examples, preference data, dataset, training, evaluation, the promotion gate, the champion), and the server picking
up the new version.

    .venv/bin/python bench/flywheel_latency.py [--edits 20] [--reload-interval 5]

It works in a throw-away project (flywheel.yaml's sources and base model, data under a temporary folder): a first,
untimed turn makes version 1 the champion and starts the server on it; then the timed part begins. The promotion
gate's tolerances are widened for the run (`--strict-gate` keeps flywheel.yaml's): what is measured is how long a
turn takes, and a turn that ends in a refusal serves nothing new.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import openai
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
TOKEN = "bench-token"
GOAL_S = 600
RETRAIN_STEPS = (
    "feedback_events",
    "feedback_examples",
    "preference_data",
    "instruction_dataset",
    "lora_adapter",
    "eval_scores",
    "eval_scores_promotion_gate",
    "champion_adapter",
)


def _project(root: Path, reload_interval: float, strict_gate: bool) -> Path:
    """flywheel.yaml with absolute paths and data under `root`."""
    config = yaml.safe_load((REPO_ROOT / "flywheel.yaml").read_text())
    for source in config["sources"]:
        if "path" in source:
            source["path"] = str((REPO_ROOT / source["path"]).resolve())
    config["base_model"]["name_or_path"] = str((REPO_ROOT / config["base_model"]["name_or_path"]).resolve())
    config["data_dir"] = str(root / "data")
    config["discover"]["quarantine_database_url"] = f"sqlite:///{root}/data/catalog.db"
    config["feedback"]["database_url"] = f"sqlite:///{root}/data/feedback.db"
    config["feedback"]["retrain_min_new_events"] = 1
    config["tracking"]["artifact_location"] = str(root / "data" / "mlflow" / "artifacts")
    config["serving"]["reload_interval_seconds"] = reload_interval
    if not strict_gate:
        config["promotion"]["tolerances"] = {"humaneval/pass@1": 1.0}
        config["promotion"]["memorisation_ceiling"] = 1.0
    path = root / "flywheel.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(
        url.removesuffix("/v1") + "/v1/feedback",
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json", "authorization": f"Bearer {TOKEN}"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def _step_seconds(instance, run_id: str) -> dict[str, float]:
    """Seconds each step of a run took, from the instance's event log."""
    started: dict[str, float] = {}
    took: dict[str, float] = {}
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None or event.step_key is None:
            continue
        if event.event_type_value == "STEP_START":
            started[event.step_key] = entry.timestamp
        elif event.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE") and event.step_key in started:
            took[event.step_key] = entry.timestamp - started[event.step_key]
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edits", type=int, default=20, help="edits posted (each to its own served completion)")
    parser.add_argument("--reload-interval", type=float, default=5.0, help="serving.reload_interval_seconds")
    parser.add_argument("--strict-gate", action="store_true", help="keep flywheel.yaml's promotion tolerances")
    args = parser.parse_args()

    import dagster as dg

    from flywheel_pipelines.definitions import build_definitions
    from flywheel_pipelines.deliver.api import create_app, serve_in_thread
    from flywheel_pipelines.orchestration.resources import build_resources
    from flywheel_pipelines.orchestration.turn import run_turn
    from flywheel_pipelines.settings import load_settings

    with tempfile.TemporaryDirectory(prefix="flywheel-latency-") as tmp:
        settings = load_settings(_project(Path(tmp), args.reload_interval, args.strict_gate))
        defs = build_definitions(settings)
        with dg.instance_for_test() as instance:
            print("untimed: a first turn makes version 1 the champion ...", flush=True)
            setup_started = time.monotonic()
            assert run_turn(settings, instance, log=lambda line: print(f"  {line}", flush=True))
            print(f"  ({time.monotonic() - setup_started:.0f} s)")
            app = create_app(settings, token=TOKEN)
            with serve_in_thread(app) as url:
                client = openai.OpenAI(api_key=TOKEN, base_url=url, max_retries=0, timeout=300)
                before = client.models.list().data[0].model_extra["version"]
                completions = []
                for i in range(args.edits):
                    chat = client.chat.completions.create(
                        model="flywheel",
                        messages=[{"role": "user", "content": f"def total_{i}(prices):"}],
                        max_tokens=24,
                        temperature=0,
                        extra_body={
                            "task": "code_generation",
                            "task_fields": {"kind": "function", "name": f"total_{i}", "language": "python"},
                        },
                    )
                    completions.append(chat.id)

                stages: list[tuple[str, float]] = []
                t0 = time.monotonic()
                for i, completion_id in enumerate(completions):
                    body = {"completion_id": completion_id, "verdict": "edited", "edited_text": f"return {i} * 2"}
                    assert _post(url, body)["status"] == "stored"
                stages.append((f"post {args.edits} edits", time.monotonic() - t0))

                mark = time.monotonic()
                sensor = defs.resolve_sensor_def("feedback_sensor")
                with dg.build_sensor_context(
                    instance=instance, resources=build_resources(settings), definitions=defs
                ) as context:
                    requests = sensor.evaluate_tick(context).run_requests
                (request,) = [r for r in requests if r.job_name == "retrain"]
                stages.append(("feedback sensor tick", time.monotonic() - mark))

                mark = time.monotonic()
                result = defs.resolve_job_def("retrain").execute_in_process(
                    instance=instance, partition_key=request.partition_key, tags=request.tags, raise_on_error=False
                )
                run_s = time.monotonic() - mark
                steps = _step_seconds(instance, result.run_id)
                for step in RETRAIN_STEPS:
                    if step in steps:
                        stages.append((f"  retrain: {step}", steps[step]))
                stages.append(("retrain run (whole, incl. Dagster overhead)", run_s))
                if not result.success:
                    print(f"retrain did not promote (run {result.run_id}); see its failed steps")
                    for name, seconds in stages:
                        print(f"{name:48s} {seconds:8.1f} s")
                    raise SystemExit(1)

                mark = time.monotonic()
                while (version := client.models.list().data[0].model_extra["version"]) == before:
                    time.sleep(0.2)
                stages.append(
                    (f"server picks up v{version} (poll every {args.reload_interval:g} s)", time.monotonic() - mark)
                )
                total = time.monotonic() - t0

    print(f"\nflywheel latency on {datetime.now(UTC):%Y-%m-%d}, default model, {args.edits} edits")
    for name, seconds in stages:
        print(f"{name:48s} {seconds:8.1f} s")
    print(f"{'total: first edit posted -> new champion served':48s} {total:8.1f} s")
    verdict = "PASS" if total < GOAL_S else "FAIL"
    print(f"goal < {GOAL_S // 60} min: {verdict} ({total / 60:.1f} min, ratio to goal {total / GOAL_S:.2f})")


if __name__ == "__main__":
    main()
