"""Discover as a data engineer runs it: every source a partition, every malformed input a quarantine row with a
reason, an unreachable repository failing only its own partition, and partitions following flywheel.yaml."""

import json
from pathlib import Path

import dagster as dg
import pandas as pd
import yaml

from flywheel_pipelines.definitions import build_definitions
from flywheel_pipelines.discover.quarantine import QuarantineStore
from flywheel_pipelines.orchestration.resources import build_resources
from flywheel_pipelines.orchestration.source_sync import sync_source_partitions
from flywheel_pipelines.settings import load_settings
from flywheel_pipelines_tests.conftest import project_config, write_project

MALFORMED = {
    "broken/binary.py": b"\x00\x01\x02 not text",
    "broken/latin1.py": "name = 'Jos\xe9'\n".encode("latin-1"),
    "broken/syntax.py": b"def broken(:\n    pass\n",
    "broken/Broken.java": b"public class Broken { void f( { } }\n",
    "broken/openapi.yaml": b"openapi: 3.0.0\npaths:\n  /x: [unclosed\n",
    "broken/dangling-openapi.yaml": (
        b"openapi: 3.0.0\ninfo: {title: t, version: '1'}\npaths:\n  /pets:\n    get:\n      responses:\n"
        b"        '200':\n          description: ok\n          content:\n            application/json:\n"
        b"              schema: {$ref: '#/components/schemas/Missing'}\n"
    ),
    "broken/stories.md": (
        b"## Story: Refund\nAs a customer\nI want a refund\n\nAC1: refund\nGiven a paid order\nWhen I ask\n"
    ),
}


def test_every_malformed_input_is_a_quarantine_row_and_a_bad_repository_fails_only_its_partition(
    tmp_path: Path, tiny_model_dir: Path
):
    config = project_config(tmp_path, str(tiny_model_dir), discover={"max_file_bytes": 200_000})
    config["sources"].append({"name": "unreachable", "git": f"file://{tmp_path / 'no-such-repo'}"})
    settings = load_settings(write_project(tmp_path, config))
    for rel, data in MALFORMED.items():
        (tmp_path / "code" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "code" / rel).write_bytes(data)
    (tmp_path / "code" / "broken" / "huge.py").write_text("x = 1\n" * 50_000)
    defs = build_definitions(settings)
    discover = defs.resolve_job_def("discover")

    with dg.instance_for_test() as instance:
        assert sync_source_partitions(settings, instance) == (["shop", "unreachable"], [])
        good = discover.execute_in_process(instance=instance, partition_key="shop")
        bad = discover.execute_in_process(instance=instance, partition_key="unreachable", raise_on_error=False)

        assert good.success
        assert not bad.success
        (failure,) = [e for e in bad.all_events if e.is_step_failure]
        assert "git source 'unreachable'" in failure.step_failure_data.error.message
        assert "`git fetch` failed" in failure.step_failure_data.error.message

        rows = QuarantineStore(settings.quarantine_database_url).rows(source="shop")
        reasons = {(r["stage"], r["path"]): r["reason"] for r in rows}
        assert reasons[("crawl", "broken/binary.py")].startswith("binary content")
        assert reasons[("crawl", "broken/latin1.py")].startswith("not UTF-8")
        assert reasons[("crawl", "broken/huge.py")].startswith("larger than the 200000-byte limit")
        assert reasons[("code_units", "broken/syntax.py")].startswith("syntax error line 1")
        assert "syntax error" in reasons[("code_units", "broken/Broken.java")]
        assert reasons[("api_endpoints", "broken/openapi.yaml")].startswith("malformed YAML")
        assert (
            "dangling $ref '#/components/schemas/Missing'" in reasons[("api_endpoints", "broken/dangling-openapi.yaml")]
        )
        assert "has no Then step" in reasons[("user_stories", "broken/stories.md")]

        # The quarantine_rate check reads those rows against the configured limit.
        evaluations = {(e.asset_key.to_user_string(), e.check_name): e for e in good.get_asset_check_evaluations()}
        crawl_rate = evaluations[("crawled_code", "quarantine_rate")]
        assert crawl_rate.metadata["quarantined"].value == 3
        assert all(
            evaluations[(a, "schema_valid")].passed
            for a in ("crawled_code", "code_units", "api_endpoints", "user_stories")
        )
        stored = pd.read_parquet(settings.assets_path / "api_endpoints" / "shop.parquet")
        assert len(stored) > 0 and isinstance(json.loads(stored["responses"].iloc[0]), list)


def test_the_sources_sensor_follows_flywheel_yaml(tmp_path: Path, tiny_model_dir: Path):
    config = project_config(tmp_path, str(tiny_model_dir))
    settings = load_settings(write_project(tmp_path, config))
    defs = build_definitions(settings)
    sensor = defs.resolve_sensor_def("sources_sensor")

    def tick(current, instance):
        # Called directly: the daemon adds the partitions a result requests before it launches that result's runs,
        # while `evaluate_tick` would check the runs against the partitions that exist before the tick.
        with dg.build_sensor_context(instance=instance, resources=build_resources(current)) as context:
            result = sensor(context)
        return result if isinstance(result, dg.SensorResult) else dg.SensorResult(skip_reason=result)

    with dg.instance_for_test() as instance:
        added = tick(settings, instance)
        assert [r.partition_key for r in added.run_requests] == ["shop"]
        assert added.dynamic_partitions_requests[0].partition_keys == ["shop"]
        instance.add_dynamic_partitions("sources", ["shop", "retired"])
        (settings.assets_path / "crawled_code").mkdir(parents=True)
        (settings.assets_path / "crawled_code" / "retired.parquet").write_bytes(b"stale")
        removed = tick(settings, instance)
        assert not removed.run_requests
        assert removed.dynamic_partitions_requests[0].partition_keys == ["retired"]
        assert not (settings.assets_path / "crawled_code" / "retired.parquet").exists()

        config["sources"].append({"name": "more", "path": "code/web"})
        settings.source.write_text(yaml.safe_dump(config))
        grown = load_settings(settings.source)
        instance.delete_dynamic_partition("sources", "retired")
        assert [r.partition_key for r in tick(grown, instance).run_requests] == ["more"]
