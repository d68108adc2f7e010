"""Drafts of the design tasks (user_story, api_design, api_to_user_story) from curated stories and API designs.

Reverse generation: a curated story's title is its topic; an API design is split into endpoint groups (one
resource each), whose summaries become the design prompt; a story is paired with the endpoint group it talks about
most (content-word overlap), as unit-minions paired Swagger groups with stories. Topics without a story and endpoint
groups without one are prompts for the teacher.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from flywheel_pipelines.define.tasks import Draft, text_hash
from flywheel_pipelines.discover.dsl import api_table

_CJK = re.compile(r"[\u3400-\u9fff]")
_CJK_RUN = re.compile(r"[\u3400-\u9fff]+")
_WORD = re.compile(r"[a-z]{3,}")
_STOP = frozenset(
    [
        "the",
        "and",
        "for",
        "with",
        "that",
        "this",
        "from",
        "into",
        "when",
        "then",
        "given",
        "have",
        "has",
        "are",
        "was",
        "will",
        "can",
        "not",
        "all",
        "any",
        "its",
        "their",
        "your",
        "our",
        "you",
        "they",
        "them",
        "which",
        "what",
        "who",
        "how",
        "one",
        "two",
        "new",
        "get",
        "set",
        "want",
        "able",
        "also",
        "only",
        "more",
        "most",
        "been",
        "being",
        "each",
    ]
)


@dataclass(frozen=True)
class EndpointGroup:
    """The operations of one API design that work on one resource collection."""

    asset_id: str
    source: str
    spec: str  # the spec file
    resource: str
    design: dict  # a design (title + operations) of just this group

    @property
    def group(self) -> str:
        return f"endpoints:{self.asset_id}:{self.resource}"


def language_of(text: str) -> str:
    return "zh" if _CJK.search(text) else "en"


def _topic_draft(task: str, topic: str, field: str) -> Draft:
    key = text_hash(topic)
    return Draft(task, {field: topic}, None, f"topic:{key}", "teacher", f"topic:{key}", language_of(topic))


def user_story(records: Iterable[dict], topics: Sequence[str] = ()) -> list[Draft]:
    """Curated stories (their title is the topic), then topics with no story yet as teacher prompts."""
    drafts, titles = [], set()
    for record in records:
        if record["kind"] != "user_story":
            continue
        story = json.loads(record["payload"])
        titles.add(story["title"].casefold())
        drafts.append(
            Draft(
                "user_story",
                {"topic": story["title"]},
                record["content"],
                f"curated_asset:{record['asset_id']}",
                record["source"],
                f"story:{record['asset_id']}",
                story["language"],
            )
        )
    drafts += [_topic_draft("user_story", t, "topic") for t in topics if t.casefold() not in titles]
    return drafts


def _resource(api: str) -> str:
    """The collection an operation works on: its static path segments (`/baskets/{id}/payments` -> baskets/payments),
    so `/orders` and `/orders/{id}` are one group."""
    static = [s for s in api.strip("/").split("/") if s and not s.startswith(("{", ":"))]
    return "/".join(static) or "/"


def endpoint_groups(records: Iterable[dict]) -> list[EndpointGroup]:
    groups = []
    for record in records:
        if record["kind"] != "api_design":
            continue
        design = json.loads(record["payload"])
        by_resource: dict[str, list[dict]] = {}
        for op in design["operations"]:
            by_resource.setdefault(_resource(op["api"]), []).append(op)
        for resource, ops in sorted(by_resource.items()):
            sub = {"title": design["title"], "operations": ops}
            groups.append(EndpointGroup(record["asset_id"], record["source"], record["path"], resource, sub))
    return groups


def feature_text(group: EndpointGroup) -> str:
    """The design prompt of an endpoint group: what it is for, from its title and its operations' summaries."""
    words = re.sub(r"[-_/]+", " ", group.resource)
    title = f" ({group.design['title']})" if group.design.get("title") else ""
    lines = [f"Feature: {words}{title}", "It lets clients:"]
    lines += [f"- {op['description'] or op['method'] + ' ' + op['api']}" for op in group.design["operations"]]
    return "\n".join(lines)


def api_design(records: Iterable[dict], topics: Sequence[str] = (), min_link_score: float = 0.3) -> list[Draft]:
    records = list(records)
    groups = endpoint_groups(records)
    links = story_links(records, groups, min_link_score)
    drafts = [
        Draft(
            "api_design",
            {"feature": feature_text(g)},
            api_table.render(g.design).strip(),
            f"curated_asset:{g.asset_id}",
            g.source,
            links[i]["group"] if i in links else g.group,
        )
        for i, g in enumerate(groups)
    ]
    return drafts + [_topic_draft("api_design", t, "feature") for t in topics]


def _stem(word: str) -> str:
    for suffix in ("ing", "ies", "es", "ed", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)] + ("y" if suffix == "ies" else "")
    return word


def content_words(text: str) -> set[str]:
    """Stemmed English content words, and Chinese character bigrams (Chinese has no spaces between words)."""
    spaced = re.sub(r"([a-z])([A-Z])", r"\1 \2", text)  # discountCode -> discount Code
    english = {_stem(w) for w in _WORD.findall(spaced.lower()) if w not in _STOP}
    chinese = {run[i : i + 2] for run in _CJK_RUN.findall(text) for i in range(max(1, len(run) - 1))}
    return english | chinese


def _story_words(story: dict) -> set[str]:
    parts = [story["title"], story["role"], story["want"], story.get("benefit") or ""]
    for ac in story["acceptance_criteria"]:
        parts += [ac.get("name") or "", *ac["given"], *ac["when"], *ac["then"]]
    return content_words(" ".join(parts))


def link_score(story_words: set[str], api_words: set[str]) -> float:
    """Share of the story's content words that the endpoint group also uses."""
    return len(story_words & api_words) / len(story_words) if story_words else 0.0


def story_links(records: Sequence[dict], groups: Sequence[EndpointGroup], min_link_score: float) -> dict[int, dict]:
    """Endpoint group index -> the curated story record it serves best, each story paired at most once."""
    stories = sorted((r for r in records if r["kind"] == "user_story"), key=lambda r: r["asset_id"])
    story_words = [_story_words(json.loads(r["payload"])) for r in stories]
    candidates = []
    for gi, group in enumerate(groups):
        api_words = content_words(api_table.render(group.design) + " " + group.resource)
        for si, words in enumerate(story_words):
            score = link_score(words, api_words)
            if score >= min_link_score:
                candidates.append((score, gi, si))
    links: dict[int, dict] = {}
    used: set[int] = set()
    for _, gi, si in sorted(candidates, key=lambda c: (-c[0], c[1], c[2])):
        if gi not in links and si not in used:
            links[gi] = {"record": stories[si], "group": f"story:{stories[si]['asset_id']}"}
            used.add(si)
    return links


def api_to_user_story(records: Iterable[dict], min_link_score: float = 0.3) -> list[Draft]:
    """Each endpoint group with the story it serves best, or as a teacher prompt. A paired group takes the story's
    group, so the story, its endpoints' design and the pairing land in one split."""
    records = list(records)
    groups = endpoint_groups(records)
    links = story_links(records, groups, min_link_score)
    drafts = []
    for gi, group in enumerate(groups):
        link = links.get(gi)
        fields = {"design": api_table.render(group.design).strip()}
        output = link["record"]["content"] if link else None
        split_group = link["group"] if link else group.group
        drafts.append(
            Draft("api_to_user_story", fields, output, f"curated_asset:{group.asset_id}", group.source, split_group)
        )
    return drafts
