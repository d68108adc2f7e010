"""Discover: user stories ("As a … I want … so that …") and their Given/When/Then acceptance criteria, read from
Markdown requirement documents written in English or Chinese, as records a model can learn to write stories from.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

from flywheel_pipelines.discover.quarantine import Quarantined
from flywheel_pipelines.schemas import validation_errors

STAGE = "user_stories"

# Every keyword the parser knows, for both languages, in one place; "|" separates alternatives and a space stands
# for any run of whitespace. English entries match case-insensitively on word boundaries, Chinese ones literally
# (Chinese has no spaces). Alternatives are tried longest first, so that 我想要 is not read as 我想 + a want "要…".
KEYWORDS: dict[str, dict[str, str]] = {
    # The story narrative. The role keyword swallows the article or measure word: "As a returning customer" has the
    # role "returning customer", 作为一名回头客 the role 回头客.
    "role": {"en": "as an|as a|as the|as", "zh": "作为一名|作为一个|作为一位|作为一家|作为"},
    "want": {
        "en": "I want|I would like|I'd like|I’d like|I need|I wish|we want|we would like|we'd like|we’d like|we need",
        "zh": "我想要|我希望|我需要|我想|我要|我们想要|我们希望|我们需要|我们想|我们要",
    },
    "benefit": {"en": "so that", "zh": "以便于|以便|从而|这样"},
    # Gherkin steps. "and" continues whichever clause came last (Given, When or Then).
    "given": {"en": "given", "zh": "假设|假如|给定|已知"},
    "when": {"en": "when", "zh": "当"},
    "then": {"en": "then", "zh": "那么|于是|则"},
    "and": {"en": "and|but", "zh": "并且|而且|同时|但是|且"},
    # Section and item markers.
    "acceptance": {"en": "acceptance criteria|acceptance criterion|acs|ac", "zh": "验收标准|验收条件|验收准则"},
    "criterion": {"en": "ac", "zh": "验收标准|验收条件"},  # numbered: AC1, AC 2, AC-3, 验收标准1
    "scenario": {"en": "scenario outline|scenario", "zh": "验收场景|场景"},
    "title": {"en": "user story|story|title", "zh": "用户故事|故事|标题"},
    # Headings that name a whole section of stories rather than one story, so they never become a story's title.
    "section": {"en": "user stories|stories|user story|story|requirements", "zh": "用户故事|故事|需求|需求列表"},
}

# Chinese words that a keyword merely starts. Without a separator, 当 also opens everyday words: never a When step.
ZH_WHEN_LOOKALIKES = "当前|当然|当天|当日|当月|当年|当地|当中|当作|当做|当成|当时|当初"
# "当…时" is the Chinese When; its closing 时 is dropped unless it ends a word such as 小时 (hour) or 超时 (timeout).
ZH_WORDS_ENDING_IN_SHI = (
    "小时|超时|同时|及时|按时|准时|定时|实时|随时|暂时|临时|届时|此时|那时|平时|当时|计时|限时|延时|过时|适时|有时|即时"
)

PUNCTUATION = " \t\u3000,，;；:：.。!！?？、"
SENTENCE_END = (".", "。", "!", "！", "?", "？")
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


def _words(alternatives: str) -> tuple[str, ...]:
    return tuple(alternatives.split("|"))


def _alternation(alternatives: str) -> str:
    ordered = sorted(_words(alternatives), key=len, reverse=True)
    return "|".join(re.escape(w).replace(r"\ ", r"\s+") for w in ordered)


def _kw(kind: str, lang: str) -> str:
    return _alternation(KEYWORDS[kind][lang])


_EN = re.IGNORECASE
_WORD_END = r"(?![A-Za-z0-9_'’])"
ROLE_RE = {
    "en": re.compile(rf"^(?:{_kw('role', 'en')}){_WORD_END}\s*[:：,]?\s*", _EN),
    "zh": re.compile(rf"^(?:{_kw('role', 'zh')})\s*[:：,，]?\s*"),
}
WANT_RE = {
    # "I want to pay" keeps "pay": the infinitive marker is part of the keyword, not of the want.
    "en": re.compile(rf"(?<![\w'’])(?:{_kw('want', 'en')})(?:\s+to)?{_WORD_END}", _EN),
    "zh": re.compile(rf"(?:{_kw('want', 'zh')})"),
}
BENEFIT_RE = {
    "en": re.compile(rf"(?<![\w'’])(?:{_kw('benefit', 'en')}){_WORD_END}", _EN),
    # 这样 is too common inside a clause to count unless a separator comes before it.
    "zh": re.compile(r"以便于|以便|从而|(?<=[\s,，;；])这样"),
}
STEP_RE = {
    "en": re.compile(
        rf"^(?P<kw>{'|'.join(_kw(k, 'en') for k in ('given', 'when', 'then', 'and'))}){_WORD_END}"
        r"\s*(?P<sep>[:：,，])?\s*(?P<body>.*)$",
        _EN,
    ),
    "zh": re.compile(
        rf"^(?P<kw>{_alternation('|'.join(KEYWORDS[k]['zh'] for k in ('given', 'when', 'then', 'and')))})"
        r"(?P<sep>[\s:：,，、]+)?(?P<body>.*)$"
    ),
}
STEP_KIND = {
    keyword.lower(): kind
    for kind in ("given", "when", "then", "and")
    for keywords in KEYWORDS[kind].values()
    for keyword in _words(keywords)
}
GENERIC_HEADINGS = frozenset(_words(KEYWORDS["section"]["en"]) + _words(KEYWORDS["section"]["zh"]))
ACCEPTANCE_RE = re.compile(
    rf"^(?:{_kw('acceptance', 'en')}|(?:{_kw('acceptance', 'zh')})(?:如下)?)(?![A-Za-z0-9_])"
    r"\s*(?P<sep>[:：])?\s*(?P<rest>.*)$",
    _EN,
)
CRITERION_RE = re.compile(
    rf"^(?:{_kw('criterion', 'en')}|{_kw('criterion', 'zh')})[\s\-_#]*(?P<num>\d+)(?!\d)"
    r"\s*[:：.)\-–—]?\s*(?P<name>.*)$",
    _EN,
)
SCENARIO_RE = re.compile(
    rf"^(?:{_kw('scenario', 'en')}{_WORD_END}|{_kw('scenario', 'zh')})"
    r"\s*(?P<num>\d+)?\s*(?P<sep>[:：])?\s*(?P<name>.*)$",
    _EN,
)
TITLE_RE = re.compile(
    rf"^(?:{_kw('title', 'en')}|{_kw('title', 'zh')})(?![A-Za-z])\s*(?P<num>#?\d+|[A-Z][A-Z0-9]*-\d+)?"
    r"\s*(?P<sep>[:：\-–—.])?\s*(?P<title>.*)$",
    _EN,
)
# A tracker key opening a heading: "### US-12 Checkout with a saved card".
STORY_KEY_RE = re.compile(r"^\[?(?P<key>[A-Z][A-Z0-9]*-\d+|US\d+)\]?(?![\w-])\s*[:：\-–—.]?\s*(?P<title>.*)$")
HEADING_RE = re.compile(r"#{1,6}(?=\s|$)")
BULLET_RE = re.compile(r"(?:[-*+]|\d{1,9}[.)])\s+(?:\[[ xX]\]\s+)?")
# Single-asterisk emphasis (*As a*), told apart from multiplication (2 * 3, 2*3) by what surrounds it.
EMPHASIS_RE = re.compile(r"(?<![\w*])\*(?=[^\s*])|(?<=[^\s*])\*(?![\w*])")
FENCE_RE = re.compile(r"^ {0,3}(`{3,}|~{3,})")


@dataclass(frozen=True)
class _Line:
    index: int
    text: str  # without Markdown markup (heading hashes, bullets, quotes, emphasis); "" inside code blocks
    heading: int | None  # heading level, None for other lines
    bullet: bool


@dataclass(frozen=True)
class _Narrative:
    start: int  # index of the role line
    end: int  # index of its last line
    language: str
    text: str
    benefit_on_own_line: bool


@dataclass
class _Criterion:
    label: str  # how a reason names it: AC2, the scenario name, or its position
    name: str | None
    given: list[str] = field(default_factory=list)
    when: list[str] = field(default_factory=list)
    then: list[str] = field(default_factory=list)
    last: str | None = None  # the clause an And/But line continues
    problems: list[str] = field(default_factory=list)

    def steps(self, kind: str) -> list[str]:
        return {"given": self.given, "when": self.when, "then": self.then}[kind]

    def check(self) -> list[str]:
        problems = list(self.problems)
        if not (self.given or self.when or self.then):
            problems.append(f"acceptance criterion '{self.label}' has no Given/When/Then steps")
        elif missing := [kw for kw, steps in (("When", self.when), ("Then", self.then)) if not steps]:
            problems.append(f"acceptance criterion '{self.label}' has no {' or '.join(missing)} step")
        return problems

    def as_record(self) -> dict:
        return {"name": self.name, "given": self.given, "when": self.when, "then": self.then}


def _trim(text: str) -> str:
    return text.strip(PUNCTUATION)


def _join(parts: list[str]) -> str:
    """Lines of one paragraph as one string: a space between words, nothing between two Chinese characters."""
    out = ""
    for part in parts:
        if out and not (_CJK.match(out[-1]) and _CJK.match(part[0])):
            out += " "
        out += part
    return out


def _clean(raw: str) -> tuple[str, int | None, bool]:
    text = raw.strip()
    while text.startswith(">"):
        text = text[1:].lstrip()
    heading = None
    bullet = False
    if m := HEADING_RE.match(text):
        heading = len(m.group())
        text = text[m.end() :].strip()
        closed = text.rstrip("#")
        if closed != text and (not closed or closed[-1].isspace()):
            text = closed.rstrip()
    elif m := BULLET_RE.match(text):
        bullet = True
        text = text[m.end() :]
    text = EMPHASIS_RE.sub("", text.replace("**", ""))
    return text.strip(), heading, bullet


def _lines(text: str) -> list[_Line]:
    lines: list[_Line] = []
    fence: str | None = None
    for index, raw in enumerate(text.splitlines()):
        if m := FENCE_RE.match(raw):
            marker = m.group(1)
            if fence is None:
                fence = marker
            elif marker[0] == fence[0] and len(marker) >= len(fence):
                fence = None
            lines.append(_Line(index, "", None, False))
        elif fence is not None:  # an example in a code block is not a requirement
            lines.append(_Line(index, "", None, False))
        else:
            lines.append(_Line(index, *_clean(raw)))
    return lines


def _role(text: str) -> tuple[str, re.Match[str]] | None:
    for language in ("zh", "en"):
        if m := ROLE_RE[language].match(text):
            return language, m
    return None


def _step(text: str, in_criteria: bool) -> tuple[str, str, str] | None:
    """(kind, keyword, body) of a Given/When/Then/And line. Outside acceptance criteria only unmistakable steps count:
    a Chinese keyword must be set off by a separator (or be 当…时), since 当, 则 and 且 also start ordinary words."""
    if m := STEP_RE["en"].match(text):
        return STEP_KIND[m.group("kw").lower()], m.group("kw"), _trim(m.group("body"))
    if m := STEP_RE["zh"].match(text):
        keyword, body = m.group("kw"), _trim(m.group("body"))
        if not m.group("sep"):
            if keyword == "当" and text.startswith(_words(ZH_WHEN_LOOKALIKES)):
                return None
            closes_when = keyword == "当" and body.endswith("时")
            if not (in_criteria or closes_when):
                return None
        if keyword == "当":
            body = _drop_when_suffix(body)
        return STEP_KIND[keyword], keyword, body
    return None


def _drop_when_suffix(body: str) -> str:
    for suffix in ("的时候", "时候", "时"):
        if body.endswith(suffix) and len(body) > len(suffix):
            if suffix == "时" and body[-2:] in _words(ZH_WORDS_ENDING_IN_SHI):
                return body
            return _trim(body[: -len(suffix)])
    return body


def _acceptance_header(line: _Line) -> tuple[bool, str]:
    """Whether the line opens the acceptance criteria, and what follows on it after a colon ("AC: Given …")."""
    m = ACCEPTANCE_RE.match(line.text)
    if not m:
        return False, ""
    rest = m.group("rest")
    if m.group("sep"):
        return True, rest
    return (not rest or line.heading is not None), ""


def _criterion_marker(text: str) -> tuple[str | None, str | None] | None:
    """(number, name) of a criterion's opening line: "AC1: Pay with the default card", "Scenario: …", "场景：…"."""
    if m := CRITERION_RE.match(text):
        return m.group("num"), _trim(m.group("name")) or None
    m = SCENARIO_RE.match(text)
    if m and (m.group("sep") or m.group("num")):
        return None, _trim(m.group("name")) or None
    return None


def _title_marker(line: _Line) -> str | None:
    """The title a line gives a story explicitly ("Story: …", "**Title:** …", "### US-12 …", "用户故事：…"), or None."""
    text = line.text
    if not text or _acceptance_header(line)[0] or _criterion_marker(text) is not None:
        return None
    if m := TITLE_RE.match(text):
        sep, num = m.group("sep"), m.group("num")
        explicit = sep in (":", "：") if line.heading is None else bool(sep in (":", "：") or num)
        if explicit:
            return _trim(m.group("title")) or (_trim(text) if num else None)
    if line.heading is not None and (m := STORY_KEY_RE.match(text)):
        return _trim(m.group("title")) or m.group("key")
    return None


def _clause_at_start(text: str, language: str) -> str | None:
    for kind, patterns in (("want", WANT_RE), ("benefit", BENEFIT_RE)):
        m = patterns[language].match(text.lstrip(PUNCTUATION))
        if m:
            return kind
    return None


def _opens_other_block(line: _Line) -> bool:
    if line.heading is not None or _acceptance_header(line)[0] or _criterion_marker(line.text) is not None:
        return True
    if _title_marker(line) is not None or _role(line.text) is not None:
        return True
    step = _step(line.text, in_criteria=False)
    # A lower-case "when …" continues a wrapped want ("I want an alert\nwhen my flight is late"); "When …" is a step.
    return step is not None and step[0] != "and" and not step[1].islower()


def _narratives(lines: list[_Line]) -> list[_Narrative]:
    """Every paragraph that opens with a role ("As a …", "作为…"), with the lines that continue it."""
    found: list[_Narrative] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        role = _role(line.text) if line.heading is None else None
        if role is None:
            i += 1
            continue
        language = role[0]
        parts = [line.text]
        benefit_on_own_line = False
        j = i + 1
        while j < len(lines) and lines[j].text and not _opens_other_block(lines[j]):
            clause = _clause_at_start(lines[j].text, language)
            if clause is None and (lines[j].bullet or parts[-1].endswith(SENTENCE_END)):
                break
            benefit_on_own_line = benefit_on_own_line or clause == "benefit"
            parts.append(lines[j].text)
            j += 1
        found.append(_Narrative(i, j - 1, language, _join(parts), benefit_on_own_line))
        i = j
    return found


def _split(narrative: _Narrative) -> tuple[str, str | None, str | None]:
    """Role, want and benefit of a narrative; want is None when there is no "I want" clause."""
    language, text = narrative.language, narrative.text
    m = ROLE_RE[language].match(text)
    rest = text[m.end() :] if m else text
    want_m = WANT_RE[language].search(rest)
    after = rest[want_m.end() :] if want_m else rest
    benefit_m = BENEFIT_RE[language].search(after)
    benefit = _trim(after[benefit_m.end() :]) if benefit_m else None
    if want_m is None:
        role = rest[: benefit_m.start()] if benefit_m else rest
        return _trim(role), None, benefit or None
    want = after[: benefit_m.start()] if benefit_m else after
    return _trim(rest[: want_m.start()]), _trim(want), benefit or None


def _next_text(lines: list[_Line], start: int, stop: int) -> _Line | None:
    for index in range(start, min(stop, len(lines))):  # by index: a slice per call would copy the rest of the file
        if lines[index].text:
            return lines[index]
    return None


def _is_story(lines: list[_Line], narratives: list[_Narrative], k: int) -> bool:
    """A role with a want is a story. Without one it is still meant as a story — and quarantined — when a story title,
    a "so that" line or acceptance criteria frame it; otherwise it is prose ("As a result, …") and left alone."""
    narrative = narratives[k]
    role, want, _ = _split(narrative)
    if want is not None:
        return True
    # A real role is a noun phrase; "As a result, we shipped it." has a clause break where the role would end.
    if not role or any(mark in role for mark in ",，;；.。"):
        return False
    if narrative.benefit_on_own_line:
        return True
    lo = narratives[k - 1].end + 1 if k else 0
    if any(_title_marker(line) is not None for line in lines[lo : narrative.start]):
        return True
    nxt = _next_text(lines, narrative.end + 1, len(lines))
    if nxt is None:
        return False
    if _acceptance_header(nxt)[0] or _criterion_marker(nxt.text) is not None:
        return True
    step = _step(nxt.text, in_criteria=False)
    return step is not None and step[0] == "given"


def _title(lines: list[_Line], lo: int, hi: int) -> tuple[str | None, int | None, int | None]:
    """(title, its line index, its heading level) for a story whose role is on line `hi`: the nearest explicit
    title above it, else the nearest heading, looking no further up than `lo` (the end of the previous story)."""
    nearest_heading: _Line | None = None
    for line in reversed(lines[lo:hi]):
        if (title := _title_marker(line)) is not None:
            return title, line.index, line.heading
        is_plain_heading = line.heading is not None and not _acceptance_header(line)[0]
        if is_plain_heading and nearest_heading is None and _criterion_marker(line.text) is None:
            nearest_heading = line
    if nearest_heading is None or not _trim(nearest_heading.text):
        return None, None, None
    if _trim(nearest_heading.text).lower() in GENERIC_HEADINGS:
        return None, None, None
    return _trim(nearest_heading.text), nearest_heading.index, nearest_heading.heading


def _ends_story(line: _Line, story_level: int | None) -> bool:
    if _title_marker(line) is not None:
        return True
    if line.heading is None or _acceptance_header(line)[0] or _criterion_marker(line.text) is not None:
        return False
    return story_level is None or line.heading <= story_level


def _step_follows(lines: list[_Line], start: int, stop: int) -> bool:
    nxt = _next_text(lines, start, stop)
    return nxt is not None and _step(nxt.text, in_criteria=True) is not None


def _criteria(lines: list[_Line], lo: int, hi: int, story_level: int | None) -> tuple[list[_Criterion], int | None]:
    """The acceptance criteria on lines lo..hi-1, and the index of the last line that belongs to them."""
    criteria: list[_Criterion] = []
    current: _Criterion | None = None
    in_criteria = False
    last_index: int | None = None
    continues: str | None = None  # "step": a wrapped step line may follow; "list": bullets under a bare "Then:"

    def begin(number: str | None = None, name: str | None = None) -> _Criterion:
        label = f"AC{number}" if number else name or f"AC{len(criteria) + 1}"
        criteria.append(_Criterion(label, name))
        return criteria[-1]

    for line in lines[lo:hi]:
        if not line.text:
            continues = None
            continue
        if _ends_story(line, story_level):
            break
        text = line.text
        is_header, rest = _acceptance_header(line)
        marker = None if is_header else _criterion_marker(text)
        if is_header:
            in_criteria, last_index, continues = True, line.index, None
            if not rest:
                continue
            text = rest
        elif marker is not None:
            number, name = marker
            in_criteria, last_index, continues = True, line.index, None
            if name and _step(name, in_criteria=True):  # "AC1: Given …" names nothing; the step follows the label
                current = begin(number)
                text = name
            else:
                current = begin(number, name)
                continue
        elif line.heading is not None:
            continues = None
            continue
        step = _step(text, in_criteria)
        # Before any criteria header only a Given with more steps after it opens them: "Given the cost, …" is prose.
        if step is not None and not in_criteria:
            opens_criteria = step[0] == "given" and _step_follows(lines, line.index + 1, hi)
            step = step if opens_criteria else None
        if step is None:
            if current is not None and current.last and continues == "step" and not line.bullet:
                steps = current.steps(current.last)
                steps[-1] = _join([steps[-1], _trim(text)])
                last_index = line.index
            elif current is not None and current.last and continues == "list" and line.bullet:
                current.steps(current.last).append(_trim(text))
                last_index = line.index
            else:
                continues = None
            continue
        kind, keyword, body = step
        in_criteria, last_index = True, line.index
        if kind == "and":
            if current is None or current.last is None:
                current = current or begin()
                current.problems.append(
                    f"acceptance criterion '{current.label}' has '{keyword}' before any Given/When/Then step"
                )
                continues = None
                continue
            kind = current.last
        elif (
            current is None or (kind == "given" and (current.when or current.then)) or (kind == "when" and current.then)
        ):
            current = begin()
        current.last = kind
        if body:
            current.steps(kind).append(body)
            continues = "step"
        else:
            continues = "list"
    return criteria, last_index


def story_id(source: str, path: str, title: str | None, role: str, want: str) -> str:
    key = "\0".join([source, path, title] if title else [source, path, role, want])
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def extract_user_stories(text: str, source: str, path: str) -> tuple[list[dict], list[Quarantined]]:
    """User stories with their acceptance criteria from one Markdown document, and the stories that are quarantined
    (no "I want", a criterion without When or Then, a record the schema refuses) with the reason. Never raises."""
    try:
        return _extract(text or "", source, path)
    except Exception as exc:  # one unreadable document must not stop the files after it
        return [], [Quarantined(source, path, STAGE, f"could not read user stories: {type(exc).__name__}: {exc}")]


def _extract(text: str, source: str, path: str) -> tuple[list[dict], list[Quarantined]]:
    lines = _lines(text)
    candidates = _narratives(lines)
    narratives = [n for k, n in enumerate(candidates) if _is_story(lines, candidates, k)]
    records: list[dict] = []
    quarantined: list[Quarantined] = []
    seen: dict[str, int] = {}
    previous_end = -1
    for k, narrative in enumerate(narratives):
        title, title_index, story_level = _title(lines, previous_end + 1, narrative.start)
        start = title_index if title_index is not None else narrative.start
        stop = narratives[k + 1].start if k + 1 < len(narratives) else len(lines)
        criteria, last_index = _criteria(lines, narrative.end + 1, stop, story_level)
        end = max(narrative.end, last_index if last_index is not None else narrative.end)
        previous_end = end
        item = title or f"line {start + 1}"
        role, want, benefit = _split(narrative)
        if not want:
            quarantined.append(Quarantined(source, path, STAGE, 'story has a role but no "I want" clause', item))
            continue
        if not role:
            quarantined.append(Quarantined(source, path, STAGE, 'story has "As a" but no role after it', item))
            continue
        if problems := [p for c in criteria for p in c.check()]:
            quarantined.append(Quarantined(source, path, STAGE, "; ".join(problems), item))
            continue
        record = {
            "story_id": story_id(source, path, title, role, want),
            "source": source,
            "path": path,
            "language": narrative.language,
            "title": title,
            "role": role,
            "want": want,
            "benefit": benefit,
            "acceptance_criteria": [c.as_record() for c in criteria],
            "start_line": start + 1,
            "end_line": end + 1,
        }
        if errors := validation_errors("user_story", record):
            quarantined.append(Quarantined(source, path, STAGE, "; ".join(errors), item))
        elif (first := seen.get(record["story_id"])) is not None:
            same = "title" if title else "role and want"
            quarantined.append(Quarantined(source, path, STAGE, f"same {same} as the story at line {first}", item))
        else:
            seen[record["story_id"]] = record["start_line"]
            records.append(record)
    return records, quarantined
