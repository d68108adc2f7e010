"""Step 2 end to end on the samples: curated assets in every DSL, desensitised, filtered and deduplicated, with
every drop quarantined."""

import json
import shutil
from pathlib import Path

from flywheel_pipelines.discover.api_specs import extract_api_endpoints
from flywheel_pipelines.discover.code_units import extract_code_units
from flywheel_pipelines.discover.crawl import crawl
from flywheel_pipelines.discover.curate import code_units_of, curate
from flywheel_pipelines.discover.dsl import api_table, plantuml, user_story_dsl
from flywheel_pipelines.discover.sources import Snapshot, SourceSpec
from flywheel_pipelines.discover.user_stories import extract_user_stories
from flywheel_pipelines.schemas import validation_errors
from flywheel_pipelines_tests.conftest import SAMPLES

PLANTED = '''
def connect_reports(bucket):
    """Client for the reports bucket."""
    key_id = "AKIAIOSFODNN7EXAMPLE"
    dsn = "postgresql://reports:Sup3rS3cret!@db.acme-corp.com/reports"
    return open_bucket(bucket, key_id, dsn, contact="jane.doe@acme-corp.com")
'''


def discovered(tmp_path: Path):
    root = tmp_path / "repo"
    shutil.copytree(SAMPLES, root)
    (root / "shop" / "reports.py").write_text(PLANTED)
    # The same function in a second place: kept once.
    shutil.copy(root / "shop" / "pricing.py", root / "shop" / "pricing_copy.py")
    spec = SourceSpec(name="samples", path=root)
    files = crawl(Snapshot("samples", root), spec).files
    units = extract_code_units(files).units
    endpoints, _ = extract_api_endpoints([f for f in files if f["language"] in ("yaml", "json")])
    stories = []
    for f in files:
        if f["language"] == "markdown":
            stories.extend(extract_user_stories(f["text"], f["source"], f["path"])[0])
    return units, endpoints, stories


def test_the_samples_curate_into_every_dsl_and_each_rendering_validates(tmp_path: Path):
    units, endpoints, stories = discovered(tmp_path)
    result = curate(units, endpoints, stories)
    by_kind: dict[str, list[dict]] = {}
    for r in result.records:
        by_kind.setdefault(r["kind"], []).append(r)
        assert not validation_errors("curated_asset", r)
    assert set(by_kind) == {"code_unit", "api_design", "domain_model", "user_story"}
    assert all(api_table.validate(r["content"]) == [] for r in by_kind["api_design"])
    assert all(plantuml.validate(r["content"]) == [] for r in by_kind["domain_model"])
    assert all(user_story_dsl.validate(r["content"]) == [] for r in by_kind["user_story"])
    assert len(by_kind["user_story"]) == 5  # 3 English, 2 Chinese
    design = json.loads(by_kind["api_design"][0]["payload"])
    assert api_table.parse(api_table.render(design)) == design


def test_planted_secrets_and_personal_data_never_reach_the_curated_assets(tmp_path: Path):
    units, endpoints, stories = discovered(tmp_path)
    result = curate(units, endpoints, stories)
    everything = "\n".join(r["content"] + r["payload"] for r in result.records)
    for planted in ("AKIAIOSFODNN7EXAMPLE", "Sup3rS3cret!", "jane.doe@acme-corp.com"):
        assert planted not in everything
    (reports,) = [r for r in result.records if r["title"] == "connect_reports"]
    assert "<SECRET:aws_access_key>" in reports["content"] and "<EMAIL>" in reports["content"]
    assert result.redactions["SECRET:aws_access_key"] >= 1


def test_duplicates_and_filtered_units_are_quarantined_with_reasons_and_counted(tmp_path: Path):
    units, endpoints, stories = discovered(tmp_path)
    result = curate(units, endpoints, stories)
    kept = {(u["path"], u["qualified_name"]) for u in code_units_of(result.records)}
    assert ("shop/pricing.py", "round_money") in kept and ("shop/pricing_copy.py", "round_money") not in kept
    reasons = {(q.path, q.item): q.reason for q in result.quarantined}
    assert reasons[("shop/pricing_copy.py", "round_money")].startswith("exact duplicate of")
    assert any(r.startswith("trivial") or r.startswith("too short") for r in reasons.values())
    assert {q.stage for q in result.quarantined} == {"curated_assets"}
    assert sum(result.filtered.values()) > 0 and result.duplicates_removed_share["samples"] > 0


def test_a_unit_holding_every_planted_secret_type_comes_out_with_none_of_them(tmp_path: Path):
    from flywheel_pipelines.discover.curate import CurationPolicy
    from flywheel_pipelines_tests.discover.test_redact import PLANTED_VALUES, SAMPLE_POLICY

    # The planted settings module, as the body of one function, so all of it reaches curation as code.
    planted = (SAMPLES / "secrets" / "planted_config.py").read_text()
    body = "\n".join("    " + line if line.strip() else "" for line in planted.splitlines())
    source = f"def service_settings():\n{body}\n    return locals()\n"
    file = {"source": "s", "path": "settings.py", "language": "python", "text": source, "sha256": "0" * 64}
    units = extract_code_units([file]).units
    result = curate(units, [], [], CurationPolicy(redaction=SAMPLE_POLICY))
    (record,) = [r for r in result.records if r["title"] == "service_settings"]
    text = record["content"] + record["payload"]
    leaked = [v for values in PLANTED_VALUES.values() for v in values if v in text]
    assert leaked == []
    assert {kind for kind in result.redactions} >= {"SECRET:aws_access_key", "SECRET:private_key", "EMAIL", "PHONE"}
