"""Self-Instruct expansion of topics: the teacher proposes new topics from a sample of known ones, near-duplicates out.

As in Self-Instruct (Wang et al., 2022), a proposal is kept only if no known topic is too similar to it (ROUGE-L);
here similarity is over words, or over character bigrams for CJK text, so Chinese user-story topics dedup too.
"""

from __future__ import annotations

import random
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from flywheel_pipelines.define.distil.teacher import DistillationReport, Teacher, TeacherPrompt

_MAX_TOPIC_CHARS = 200  # longer lines are explanations, not topics
_EXAMPLES_SHOWN = 8  # Self-Instruct shows 8 examples per prompt
_LIST_MARKER = re.compile(r"^\s*(?:\(?\d+[.):、]|[-*•])\s*")
_QUOTES = "\"'`“”‘’「」『』*"
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af"
_TOKEN = re.compile(rf"[{_CJK}]+|[^\W{_CJK}]+")
_SYSTEM = (
    "You propose new topics for a training dataset. Reply with a numbered list, one topic per line, "
    "in the language of the examples, and nothing else."
)


@dataclass
class TopicExpansion:
    proposed: int
    """Topics parsed from the teacher's lists."""
    accepted: int
    rejected_as_duplicate: int
    """Too similar to a seed, an existing topic, or a topic accepted earlier."""
    teacher: DistillationReport

    def as_metadata(self) -> dict[str, int | float]:
        return {
            "proposed": self.proposed,
            "accepted": self.accepted,
            "rejected_as_duplicate": self.rejected_as_duplicate,
            **{f"teacher_{name}": value for name, value in self.teacher.as_metadata().items()},
        }


def parse_topics(text: str) -> list[str]:
    """Topics in a numbered or bulleted list; when some lines are marked, unmarked ones are preamble and dropped."""
    lines = [line for line in text.splitlines() if line.strip()]
    if any(_LIST_MARKER.match(line) for line in lines):
        lines = [line for line in lines if _LIST_MARKER.match(line)]
    topics = [_LIST_MARKER.sub("", line, count=1).strip().strip(_QUOTES).strip() for line in lines]
    return [topic for topic in topics if topic and len(topic) <= _MAX_TOPIC_CHARS and not topic.endswith((":", "："))]


def normalise(text: str) -> str:
    """Casefolded, punctuation stripped, whitespace collapsed."""
    kept = "".join(" " if unicodedata.category(char).startswith("P") else char for char in text.casefold())
    return " ".join(kept.split())


def tokens(text: str) -> list[str]:
    """Words; a run of CJK characters, which has no spaces between words, becomes its character bigrams."""
    found: list[str] = []
    for run in _TOKEN.findall(normalise(text)):
        if re.match(rf"[{_CJK}]", run):
            found += [run[i : i + 2] for i in range(len(run) - 1)] or [run]
        else:
            found.append(run)
    return found


def rouge_l(a: Sequence[str], b: Sequence[str]) -> float:
    """ROUGE-L F1: with L the longest common subsequence, P = L/|a|, R = L/|b|, F = 2PR/(P+R)."""
    if not a or not b:
        return 0.0
    previous = [0] * (len(b) + 1)
    for token in a:
        current = [0]
        for j, other in enumerate(b):
            current.append(previous[j] + 1 if token == other else max(previous[j + 1], current[j]))
        previous = current
    common = previous[-1]
    return 0.0 if common == 0 else 2 * common / (len(a) + len(b))


def is_near_duplicate(topic: str, known: Sequence[str], similarity: float) -> bool:
    normal, words = normalise(topic), tokens(topic)
    return any(normal == normalise(other) or rouge_l(words, tokens(other)) >= similarity for other in known)


def expand_topics(
    teacher: Teacher,
    seeds: Sequence[str],
    existing: Sequence[str] = (),
    *,
    domain: str = "",
    rounds: int = 1,
    per_round: int = 10,
    similarity: float = 0.7,
) -> tuple[list[str], TopicExpansion]:
    """New topics (never the seeds) in the order accepted, and what happened to the teacher's proposals."""
    accepted: list[str] = []
    proposed = 0
    report = DistillationReport()
    for round_number in range(1, rounds + 1):
        known = [*seeds, *accepted]
        # A seeded sample keeps each round's prompt, and so the cache key, the same on a re-run.
        examples = random.Random(f"self-instruct/{round_number}").sample(known, min(len(known), _EXAMPLES_SHOWN))
        listed = "\n".join(f"{i}. {example}" for i, example in enumerate(examples, 1))
        about = f" about {domain}" if domain else ""
        prompt = TeacherPrompt(
            key=f"self_instruct / round {round_number}",
            system=_SYSTEM,
            user=f"Examples of topics{about}:\n{listed}\n\nPropose {per_round} new topics{about}, "
            "each different from the examples and from each other.",
        )
        (result,), round_report = teacher.distil(
            [prompt], lambda text: [] if parse_topics(text) else ["No topics found: reply with a numbered list."]
        )
        report += round_report
        for topic in parse_topics(result.output or "")[:per_round]:
            proposed += 1
            if not is_near_duplicate(topic, [*seeds, *existing, *accepted], similarity):
                accepted.append(topic)
    expansion = TopicExpansion(proposed, len(accepted), proposed - len(accepted), report)
    return accepted, expansion
