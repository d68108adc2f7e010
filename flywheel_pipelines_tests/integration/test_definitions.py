"""The Dagster definitions: a snapshot of the asset graph a data engineer sees, and Dagster's own validation."""

import os
import subprocess
import sys

import dagster as dg

from flywheel_pipelines.definitions import build_definitions
from flywheel_pipelines.settings import load_settings
from flywheel_pipelines_tests.conftest import REPO_ROOT

# group -> asset -> upstream assets. A change here is a change to the lineage every user sees: make it on purpose.
EXPECTED_GRAPH = {
    "discover": {
        "crawled_code": set(),
        "code_units": {"crawled_code"},
        "api_endpoints": {"crawled_code"},
        "user_stories": {"crawled_code"},
        "curated_assets": {"code_units", "api_endpoints", "user_stories", "base_model"},
    },
    "define": {
        "instruction_dataset": {"curated_assets", "feedback_examples", "base_model"},
        "base_model": set(),
        "lora_adapter": {"instruction_dataset", "base_model"},
        "eval_scores": {
            "lora_adapter",
            "base_model",
            "instruction_dataset",
            "curated_assets",
            "code_units",
            "crawled_code",
        },
        "champion_adapter": {"eval_scores", "lora_adapter"},
    },
    "deliver": {
        "feedback_events": set(),
        "feedback_examples": {"feedback_events"},
        "preference_data": {"feedback_events"},
    },
}


def test_the_asset_graph_matches_its_snapshot():
    defs = build_definitions(load_settings(REPO_ROOT / "flywheel.yaml"))
    graph = defs.resolve_asset_graph()
    actual: dict[str, dict[str, set[str]]] = {}
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        actual.setdefault(node.group_name, {})[key.to_user_string()] = {p.to_user_string() for p in node.parent_keys}
    assert actual == EXPECTED_GRAPH


def test_jobs_sensor_and_schedule_are_wired_from_the_config():
    settings = load_settings(REPO_ROOT / "flywheel.yaml")
    defs = build_definitions(settings)
    retrain = defs.resolve_job_def("retrain")
    assert {n.name for n in retrain.graph.node_defs} == {
        "feedback_events",
        "feedback_examples",
        "preference_data",
        "instruction_dataset",
        "lora_adapter",
        "eval_scores",
        "champion_adapter",
        "eval_scores_promotion_gate",
    }
    gate = defs.resolve_asset_graph().get_check_spec(dg.AssetCheckKey(dg.AssetKey("eval_scores"), "promotion_gate"))
    assert gate.blocking
    schedule = defs.resolve_schedule_def("nightly_retrain")
    assert schedule.cron_schedule == settings.feedback.nightly_cron and schedule.job_name == "discover"
    assert {j.name for j in defs.resolve_sensor_def("feedback_sensor").jobs} == {"retrain", "collect_feedback"}
    assert retrain.partitions_def.get_partition_keys()[0] == "2026-01-01"
    assert defs.resolve_schedule_def("daily_feedback").job_name == "collect_feedback"
    assert "feedback_events" not in {n.name for n in defs.resolve_job_def("train").graph.node_defs}
    assert defs.resolve_sensor_def("discovery_sensor").job_name == "train"
    assert defs.resolve_sensor_def("sources_sensor").job_name == "discover"
    discover = defs.resolve_job_def("discover")
    assert discover.partitions_def.name == "sources"
    assert {n.name for n in discover.graph.node_defs} == {"crawled_code", "code_units", "api_endpoints", "user_stories"}


def test_dagster_validates_the_workspace(tmp_path):
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    env.pop("FLYWHEEL_CONFIG", None)
    dagster = os.path.join(os.path.dirname(sys.executable), "dagster")
    result = subprocess.run(
        [dagster, "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Validation successful" in result.stdout + result.stderr
