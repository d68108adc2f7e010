"""Discover, step 2: the discovered assets "language-modelled" into `curated_assets`, what every dataset is built from.

Every text is desensitised first (secrets and PII become typed placeholders); code units then pass the quality
filters and cross-source deduplication; endpoints are linted against REST conventions and rendered as the API
design table, classes as PlantUML domain models, stories in the canonical user-story form — each rendering checked
by its DSL's validator. Whatever is dropped is quarantined with the reason.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from flywheel_pipelines.discover.dedup import deduplicate
from flywheel_pipelines.discover.dsl import api_table, plantuml, user_story_dsl
from flywheel_pipelines.discover.quality import QualityPolicy, filter_units
from flywheel_pipelines.discover.quarantine import Quarantined
from flywheel_pipelines.discover.redact import RedactionPolicy, redact, redact_python_keeps_syntax
from flywheel_pipelines.discover.rest_lint import lint_endpoints
from flywheel_pipelines.schemas import validation_errors

STAGE = "curated_assets"
# The unit fields that carry code or prose a model would read, and so must not carry secrets.
_UNIT_TEXT_FIELDS = ("signature", "body", "docstring", "class_summary")


@dataclass(frozen=True)
class CurationPolicy:
    quality: QualityPolicy = field(default_factory=QualityPolicy)
    redaction: RedactionPolicy = field(default_factory=RedactionPolicy)
    dedup_threshold: float = 0.8
    drop_rest_errors: bool = True  # the /createPost lesson: endpoints that break REST rules are not examples


@dataclass
class CurationResult:
    records: list[dict]
    quarantined: list[Quarantined] = field(default_factory=list)
    redactions: Counter[str] = field(default_factory=Counter)
    filtered: Counter[str] = field(default_factory=Counter)  # by quality-filter reason kind
    duplicates_removed_share: dict[str, float] = field(default_factory=dict)
    rest_findings: Counter[str] = field(default_factory=Counter)  # by rule id


def _asset_id(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def _record(
    kind: str, source: str, path: str, origin: str, title: str, content: str, payload: dict, redactions: Counter[str]
) -> dict:
    return {
        "asset_id": _asset_id(kind, source, path, origin),
        "kind": kind,
        "source": source,
        "path": path,
        "origin": origin,
        "title": title,
        "content": content,
        "payload": json.dumps(payload, ensure_ascii=False, sort_keys=True),
        "redactions": dict(redactions),
    }


def _redact_unit(unit: dict, policy: RedactionPolicy) -> tuple[dict, Counter[str], str | None]:
    """The unit with every text field desensitised, what was replaced, and why it broke (if it did)."""
    counts: Counter[str] = Counter()
    out = dict(unit)
    for name in _UNIT_TEXT_FIELDS:
        if out.get(name):
            done = redact(out[name], policy)
            out[name] = done.text
            counts.update(done.counts)
    out["decorators"] = [redact(d, policy).text for d in unit.get("decorators", [])]
    broken = None
    if counts and unit["language"] == "python":
        before = "\n".join([unit["signature"], "    " + unit["body"].replace("\n", "\n    ")])
        after = "\n".join([out["signature"], "    " + out["body"].replace("\n", "\n    ")])
        broken = redact_python_keeps_syntax(before, after)
    return out, counts, broken


def curate_code_units(
    units: list[dict], policy: CurationPolicy, count_tokens: Callable[[str], int] | None, result: CurationResult
) -> list[dict]:
    """Redacted, filtered, deduplicated code units (as units), with every drop quarantined."""
    redacted = []
    for unit in units:
        clean, counts, broken = _redact_unit(unit, policy.redaction)
        result.redactions.update(counts)
        if broken:
            result.quarantined.append(Quarantined(unit["source"], unit["path"], STAGE, broken, unit["qualified_name"]))
        else:
            redacted.append(clean)
    quality = filter_units(redacted, policy.quality, count_tokens)
    result.filtered.update(quality.counts_by_reason)
    for unit, reason in quality.rejected:
        result.quarantined.append(Quarantined(unit["source"], unit["path"], STAGE, reason, unit["qualified_name"]))
    dedup = deduplicate(quality.kept, threshold=policy.dedup_threshold)
    result.duplicates_removed_share = dict(dedup.removed_share_by_source)
    for unit, reason in dedup.removed:
        result.quarantined.append(Quarantined(unit["source"], unit["path"], STAGE, reason, unit["qualified_name"]))
    for unit in dedup.kept:
        text = "\n".join([*unit.get("decorators", []), unit["signature"], unit["body"]])
        result.records.append(
            _record(
                "code_unit",
                unit["source"],
                unit["path"],
                unit["unit_id"],
                unit["qualified_name"],
                text,
                unit,
                Counter(),
            )
        )
    return dedup.kept


def _checked(kind: str, source: str, path: str, item: str, text: str, validate, result: CurationResult) -> bool:
    if errors := validate(text):
        reason = f"{kind} rendering fails its validator: " + "; ".join(str(e) for e in errors[:5])
        result.quarantined.append(Quarantined(source, path, STAGE, reason, item))
        return False
    return True


def curate_api_designs(endpoints: list[dict], policy: CurationPolicy, result: CurationResult) -> None:
    """One API design table per spec file, from the endpoints that follow REST conventions."""
    by_spec: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for e in endpoints:
        by_spec[(e["source"], e["path"])].append(e)
    for (source, path), spec_endpoints in sorted(by_spec.items()):
        findings = lint_endpoints(spec_endpoints)
        result.rest_findings.update(f.rule for f in findings)
        errors_by_endpoint: dict[str, list[str]] = defaultdict(list)
        for f in findings:
            if f.severity == "error":
                errors_by_endpoint[f.endpoint].append(f"{f.rule}: {f.message}")
        kept = []
        for e in spec_endpoints:
            name = f"{e['method']} {e['url_path']}"
            if policy.drop_rest_errors and errors_by_endpoint.get(name):
                reason = "breaks REST conventions: " + "; ".join(errors_by_endpoint[name])
                result.quarantined.append(Quarantined(source, path, STAGE, reason, name))
            else:
                kept.append(e)
        if not kept:
            continue
        design = api_table.design_from_endpoints(kept)
        done = redact(api_table.render(design), policy.redaction)
        result.redactions.update(done.counts)
        if _checked("API design", source, path, "", done.text, api_table.validate, result):
            title = design.get("title") or path
            result.records.append(
                _record("api_design", source, path, path, title, done.text, design, Counter(done.counts))
            )


def curate_domain_models(units: list[dict], policy: CurationPolicy, result: CurationResult) -> None:
    """One PlantUML class diagram per source and language, from its (curated) class units."""
    by_group: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for u in units:
        if u["kind"] == "class" and not u.get("is_test"):
            by_group[(u["source"], u["language"])].append(u)
    for (source, language), classes in sorted(by_group.items()):
        model = plantuml.domain_model_from_units(classes)
        if not model.get("classes"):
            continue
        done = redact(plantuml.render(model), policy.redaction)
        result.redactions.update(done.counts)
        if _checked("domain model", source, "", language, done.text, plantuml.validate, result):
            result.records.append(
                _record(
                    "domain_model",
                    source,
                    "",
                    language,
                    f"{source} {language} domain model",
                    done.text,
                    model,
                    Counter(done.counts),
                )
            )


def curate_user_stories(stories: list[dict], policy: CurationPolicy, result: CurationResult) -> None:
    for record in stories:
        story = user_story_dsl.story_from_record(record)
        done = redact(user_story_dsl.render(story), policy.redaction)
        result.redactions.update(done.counts)
        if _checked(
            "user story", record["source"], record["path"], story["title"], done.text, user_story_dsl.validate, result
        ):
            result.records.append(
                _record(
                    "user_story",
                    record["source"],
                    record["path"],
                    record["story_id"],
                    story["title"],
                    done.text,
                    story,
                    Counter(done.counts),
                )
            )


def curate(
    units: list[dict],
    endpoints: list[dict],
    stories: list[dict],
    policy: CurationPolicy = CurationPolicy(),
    count_tokens: Callable[[str], int] | None = None,
) -> CurationResult:
    result = CurationResult(records=[])
    kept_units = curate_code_units(units, policy, count_tokens, result)
    curate_api_designs(endpoints, policy, result)
    curate_domain_models(kept_units, policy, result)
    curate_user_stories(stories, policy, result)
    for record in result.records:
        if errors := validation_errors("curated_asset", record):
            raise ValueError(f"curated record breaks its schema: {errors}")
    return result


def code_units_of(records: list[dict]) -> list[dict]:
    """The curated code units, as code-unit records again (what instruction datasets are built from)."""
    return [json.loads(r["payload"]) for r in records if r["kind"] == "code_unit"]
