"""Asset values on object storage: `assets_dir: s3://bucket/flywheel/assets` (or gs://) replaces the local folder,
because the IO manager reads and writes through fsspec. `memory://` (an object store without real folders or
renames) and `file://` are real fsspec filesystems that need no network, so they stand in for S3 and GCS here."""

import uuid
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from upath import UPath

from flywheel_pipelines.orchestration.assets_deliver import ALL_DAYS
from flywheel_pipelines.orchestration.resources import AssetFiles, FlywheelIOManager, build_resources
from flywheel_pipelines.settings import parse_settings

SOURCES = dg.StaticPartitionsDefinition(["shop", "web.v2"])  # a dotted source name keeps its whole name
DAYS = dg.StaticPartitionsDefinition(["2026-11-20", "2026-11-21"])


@pytest.fixture(params=["memory", "file"])
def assets_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "file":
        yield (tmp_path / "bucket" / "flywheel" / "assets").as_uri()
        return
    url = f"memory://flywheel-{uuid.uuid4().hex[:8]}/assets"
    yield url
    root = UPath(url)
    if root.exists():
        root.fs.rm(root.path, recursive=True)


@dg.asset(partitions_def=SOURCES)
def code_units(context: dg.AssetExecutionContext) -> pd.DataFrame:
    source = context.partition_key
    return pd.DataFrame({"source": [source, source], "name": ["f", "g"], "imports": [["os"], []]})


@dg.asset
def curated_assets(code_units: pd.DataFrame) -> pd.DataFrame:
    return code_units.assign(kept=True)


@dg.asset(partitions_def=DAYS)
def feedback_events(context: dg.AssetExecutionContext) -> pd.DataFrame:
    return pd.DataFrame({"day": [context.partition_key], "kind": ["edit"]})


@dg.asset(ins={"feedback_events": ALL_DAYS})
def feedback_examples(feedback_events: pd.DataFrame) -> dict:
    return {"events": len(feedback_events), "days": sorted(set(feedback_events.get("day", [])))}


GRAPH = [code_units, curated_assets, feedback_events, feedback_examples]


def materialize(url: str, selection: str, partition_key: str | None = None, **kwargs) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        GRAPH,
        selection=[selection],
        partition_key=partition_key,
        resources={"io_manager": FlywheelIOManager(base_dir=url)},
        **kwargs,
    )


def test_partitioned_tables_and_records_round_trip_through_an_object_store_url(assets_url: str):
    shop = materialize(assets_url, "code_units", "shop")
    assert shop.success
    stored_at = shop.asset_materializations_for_node("code_units")[0].metadata["stored_at"].value
    assert stored_at == f"{assets_url}/code_units/shop.parquet"

    # A partition not materialised yet is skipped with a warning; the others are read.
    instance = dg.DagsterInstance.ephemeral()
    curated = materialize(assets_url, "curated_assets", instance=instance)
    assert curated.success
    logged = [entry.user_message for entry in instance.all_logs(curated.run_id)]
    assert "code_units: 1 source partition(s) not materialised yet; reading the others" in logged
    assert len(AssetFiles(assets_url).read("curated_assets")) == 2
    assert materialize(assets_url, "code_units", "web.v2").success
    assert materialize(assets_url, "curated_assets").success

    files = AssetFiles(assets_url)
    both = files.read("curated_assets")
    assert sorted(both["source"].unique()) == ["shop", "web.v2"] and both["kept"].all()
    assert files.records("code_units", "web.v2") == [
        {"source": "web.v2", "name": "f", "imports": ["os"]},
        {"source": "web.v2", "name": "g", "imports": []},
    ]
    # Plain Parquet at a predictable URL: readable with pandas, no Dagster needed.
    assert len(pd.read_parquet(f"{assets_url}/code_units/web.v2.parquet")) == 2
    assert not [p for p in UPath(assets_url).rglob("*") if p.name.endswith(".partial")]


def test_days_without_feedback_read_as_no_events_and_a_missing_asset_names_the_store(assets_url: str):
    nothing_yet = materialize(assets_url, "feedback_examples")
    assert nothing_yet.success
    assert AssetFiles(assets_url).read("feedback_examples") == {"events": 0, "days": []}

    assert materialize(assets_url, "feedback_events", "2026-11-21").success
    assert materialize(assets_url, "feedback_examples").success
    assert AssetFiles(assets_url).read("feedback_examples") == {"events": 1, "days": ["2026-11-21"]}

    never = materialize(assets_url, "curated_assets", raise_on_error=False)
    assert not never.success
    (failure,) = [e for e in never.all_events if e.is_step_failure]
    assert f"code_units has no materialised source partition under {assets_url}" in str(failure.step_failure_data.error)


def test_a_retired_source_is_forgotten_and_rewrites_replace_whole_objects(assets_url: str):
    files = AssetFiles(assets_url)
    for source in ("shop", "web.v2"):
        files.write("code_units", source, pd.DataFrame({"source": [source]}))
        files.write("api_endpoints", source, [{"path": "/orders", "source": source}])
    files.write("code_units", "shop", pd.DataFrame({"source": ["shop", "shop"]}))
    assert len(files.read("code_units", "shop")) == 2

    removed = files.forget_partition("web.v2")
    assert sorted(str(p) for p in removed) == [
        f"{assets_url}/api_endpoints/web.v2.json",
        f"{assets_url}/code_units/web.v2.parquet",
    ]
    assert files.read("code_units", "web.v2") is None and files.read("api_endpoints", "web.v2") is None
    assert files.read("api_endpoints", "shop") == [{"path": "/orders", "source": "shop"}]
    with pytest.raises(TypeError, match="cannot store a str"):
        files.write("base_model", None, "not a table")


def test_assets_dir_takes_a_url_and_local_folders_stay_as_they_were(tmp_path: Path):
    base = {"sources": [{"name": "shop", "path": "code"}], "base_model": {"name_or_path": "m"}}

    default = parse_settings(base, tmp_path)
    assert default.assets_path == tmp_path / "data" / "assets"
    assert isinstance(default.assets_path, Path)
    assert build_resources(default)["io_manager"].base_dir == str(tmp_path / "data" / "assets")

    relative = parse_settings({**base, "assets_dir": "store/assets"}, tmp_path)
    assert relative.assets_path == tmp_path / "store" / "assets"

    remote = parse_settings({**base, "assets_dir": "s3://flywheel-bucket/prod/assets"}, tmp_path)
    assert isinstance(remote.assets_path, UPath) and remote.assets_path.protocol == "s3"
    assert build_resources(remote)["io_manager"].base_dir == "s3://flywheel-bucket/prod/assets"
    assert remote.data_path == tmp_path / "data"  # clones, models, adapters and SQLite files stay on the disk


def test_a_local_folder_is_written_atomically_as_before(tmp_path: Path):
    files = AssetFiles(tmp_path / "assets")
    path = files.write("eval_scores", None, pd.DataFrame({"metric": ["pass@1"], "value": [0.5]}))
    assert path == tmp_path / "assets" / "eval_scores.parquet" and isinstance(path, Path)
    assert files.write("champion_adapter", None, {"version": "3"}) == tmp_path / "assets" / "champion_adapter.json"
    assert sorted(p.name for p in (tmp_path / "assets").iterdir()) == ["champion_adapter.json", "eval_scores.parquet"]
