"""User-story DSL: one canonical, line-oriented form of a user story and its acceptance criteria that a model reads and
writes reliably, in English or Chinese; `render` writes it, `parse` reads it back, `validate` says precisely what is
wrong with a text.

The canonical English form (`render` writes exactly this; no trailing newline):

    Title: Checkout with a saved card
    As a returning customer,
    I want to pay with a saved card,
    so that I can check out faster.

    AC1: Pay with the default card
    Given I have a saved card
    And the card has not expired
    When I confirm the order
    Then the order is paid with that card
    And I receive a receipt

and the canonical Chinese form (full-width colon and punctuation, no space after a step keyword):

    标题：下单获得积分
    作为会员，
    我想要在每次下单后获得积分，
    以便于以后兑换优惠券。

    AC1：按订单金额累计积分
    假设我是已登录的会员
    并且购物车金额为 100 元
    当我完成支付
    那么我的账户增加 100 积分
    并且我收到积分到账通知

Rules of the form:
- A blank line before each AC; ACs are numbered AC1..ACn in order; an unnamed one is `AC2:` (`AC2：`) alone.
- A story without a benefit has no so-that line, and its want line ends with `.` (`。`) instead of `,` (`，`).
- Given steps are optional; When and Then need one step each; a second step of the same kind is `And …` (`并且…`).
- "As a" becomes "As an" before a vowel sound ("As an admin"), and "I want to" drops the "to" before a determiner or
  pronoun ("I want a monthly report"); parse strips either back off, so the model keeps just the role and the want.

`parse` is tolerant of what a model's answer wraps around the story and of how it decorates it: prose before the
Title line and after the last AC, code fences, Markdown headings, `- `/`1. ` bullets, `**bold**` or `_italic_`
keywords, ASCII vs full-width colons and commas, a one-line narrative ("As a shopper, I want …, so that …"),
"Acceptance criteria:" headers, `But` (`但是`, `而且`, `且`) for And, 假如/给定 for 假设, 则 for 那么, "当…时" for 当,
"Then:" followed by bulleted steps. Whatever the input, it returns the canonical model — plain JSON data matching
`schemas/user_story_dsl.schema.json` — or raises `DslSyntaxError` carrying every problem found.

`validate` lists every problem as a `DslError(location, field, reason)`: a missing Title / As a / I want line
(`story`, `want`), an AC without When or Then (`AC2`, `then`), And before any step, steps out of Given-When-Then
order, keywords of both languages in one story (`line 9`, `language`), duplicate AC numbers, stray lines inside the
story, a second story. AC numbering gaps are warnings (`is_warning`; reason "AC numbers should run 1..n"): `parse`
still returns the story, renumbered by position, unless `strict=True`.

Normal form of the model's texts (the schema enforces it, and `render` refuses a model the schema refuses): one line,
no surrounding whitespace or separator punctuation (`,.;:!?` and their full-width forms, `、`) — the form adds its
own commas and full stops, and the discover extractor trims record fields the same way. So `parse(render(story)) ==
story` for every story the schema accepts, and `render(parse(text)) == text` for every canonical text.

Limits: the language of a story is that of its keywords, not of its text. The schema refuses what the form cannot
carry: a want holding "so that" (以便/从而) in a story without a benefit (a one-line narrative is split there), a
Chinese When step ending in 时 (other than 小时, 同时, …) or 时候 ("当…时" reads as 当), a role starting with 一名/一个/
一位/一家. "As a/an" is chosen by spelling, right for ordinary roles, not for every word. One story per text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from flywheel_pipelines.discover.dsl import DslError, DslSyntaxError
from flywheel_pipelines.discover.user_stories import ZH_WORDS_ENDING_IN_SHI
from flywheel_pipelines.schemas import validation_errors

SCHEMA = "user_story_dsl"
LANGUAGES = ("en", "zh")
STEP_KINDS = ("given", "when", "then")
# The one reason that is only a warning: the criteria are a list, so their numbers carry nothing `parse` could lose.
NUMBERING_WARNING = "AC numbers should run 1..n"

# What `render` writes, per language. Chinese keywords take no space: 假设我是会员, like 作为会员.
CANONICAL: dict[str, dict[str, str]] = {
    "en": {
        "title": "Title: ",
        "want": "I want ",
        "benefit": "so that ",
        "comma": ",",
        "stop": ".",
        "colon": ":",
        "given": "Given ",
        "when": "When ",
        "then": "Then ",
        "and": "And ",
    },
    "zh": {
        "title": "标题：",
        "role": "作为",
        "want": "我想要",
        "benefit": "以便于",
        "comma": "，",
        "stop": "。",
        "colon": "：",
        "given": "假设",
        "when": "当",
        "then": "那么",
        "and": "并且",
    },
}
LANGUAGE_NAMES = {"en": "English", "zh": "Chinese"}

# Every keyword `parse` accepts, "|" between alternatives, a space for any whitespace. The canonical one comes first
# in each list only for the reader: matching tries the longest alternative first, so 我想要 is never read as 我想 + a
# want "要…", and "as an" is tried before "as a" and "as".
KEYWORDS: dict[str, dict[str, str]] = {
    "title": {"en": "title|user story|story", "zh": "标题|用户故事|故事"},
    # The article goes with the keyword: the role of "As a returning customer" is "returning customer".
    "role": {"en": "as a|as an|as the|as", "zh": "作为|作为一名|作为一个|作为一位|作为一家"},
    # "to" is part of the want keyword ("I want to pay": the want is "pay"), tried before the bare form.
    "want": {
        "en": "I want to|I want|I would like to|I would like|I'd like to|I'd like|I’d like to|I’d like|I need to|I need"
        "|we want to|we want|we need to|we need",
        "zh": "我想要|我希望|我需要|我想|我要|我们想要|我们希望|我们需要",
    },
    "benefit": {"en": "so that", "zh": "以便于|以便|从而"},
    "given": {"en": "given", "zh": "假设|假如|给定"},
    "when": {"en": "when", "zh": "当"},
    "then": {"en": "then", "zh": "那么|则"},
    "and": {"en": "and|but", "zh": "并且|而且|但是|且"},
    # A line that only announces the criteria; skipped.
    "criteria": {"en": "acceptance criteria|acceptance criterion|acs", "zh": "验收标准|验收条件"},
}
# Title aliases that a model also puts on a line of its own as a mere header ("**User story:**"): skipped when empty.
TITLE_ALIASES = frozenset({"user story", "story", "用户故事", "故事"})
# Sentence punctuation that never starts or ends a text of the model: the form's own commas and full stops, and what
# the discover extractor trims off record fields (its PUNCTUATION), so DSL models and records agree.
SEPARATORS = ",，;；:：.。!！?？、"
_EDGES = re.compile(rf"^[\s{re.escape(SEPARATORS)}]+|[\s{re.escape(SEPARATORS)}]+$")

# Emphasis around a keyword ("**Given**", "**Title:**", "_When_"); the closing mark must match the opening one, so a
# text that merely starts with "**" after a plain keyword is left alone.
_OPEN = r"(?P<b>\*\*|__|\*(?!\*)|_(?!_))?"
_CLOSE = r"(?(b)\s*(?P=b))"
# An English keyword ends at a word boundary: "Assume" is not "As", "Andrew" is not "And", "A/B" is not "a".
_EN_WORD_END = r"(?![A-Za-z0-9'’/\-])"


def _alternation(alternatives: str) -> str:
    ordered = sorted(alternatives.split("|"), key=len, reverse=True)
    return "|".join(re.escape(w).replace(r"\ ", r"\s+") for w in ordered)


def _keyword_re(alternatives: str, language: str) -> re.Pattern[str]:
    english = language == "en"
    return re.compile(
        rf"^{_OPEN}(?P<kw>{_alternation(alternatives)}){_EN_WORD_END if english else ''}"
        rf"\s*(?P<sep>[:：])?{_CLOSE}\s*(?P<sep2>[:：,，、])?\s*(?P<body>.*)$",
        re.IGNORECASE if english else 0,
    )


PATTERNS: dict[str, dict[str, re.Pattern[str]]] = {
    language: {
        kind: _keyword_re(KEYWORDS[kind][language], language)
        for kind in ("title", "role", "want", "benefit", "given", "when", "then", "and", "criteria")
    }
    for language in LANGUAGES
}
# AC lines are the same in both languages; the number is required, the separator and the name are not.
AC_RE = re.compile(
    rf"^{_OPEN}AC\s*[-#]?\s*(?P<num>\d+)(?!\d)\s*(?P<sep>[:：.)])?{_CLOSE}(?(sep)|\s*[:：.)\-–—]?)\s*(?P<body>.*)$",
    re.IGNORECASE,
)
# Where a one-line narrative ("As a shopper, I want to …, so that …") switches clause; only searched when the clause
# has no line of its own, so a canonical role or want may contain these words.
_EMPHASIS = r"(?:\s*(?:\*\*|__))?"
INLINE: dict[str, dict[str, re.Pattern[str]]] = {
    "en": {
        "want": re.compile(
            rf"(?:\*\*|__)?(?<![\w'’])(?:{_alternation(KEYWORDS['want']['en'])}){_EN_WORD_END}{_EMPHASIS}"
            rf"(?:\s+to{_EN_WORD_END})?{_EMPHASIS}",
            re.IGNORECASE,
        ),
        "benefit": re.compile(
            rf"(?:\*\*|__)?(?<![\w'’])(?:so\s+that){_EN_WORD_END}{_EMPHASIS}",
            re.IGNORECASE,
        ),
    },
    "zh": {
        "want": re.compile(rf"(?:\*\*|__)?(?:{_alternation(KEYWORDS['want']['zh'])}){_EMPHASIS}"),
        "benefit": re.compile(rf"(?:\*\*|__)?(?:{_alternation(KEYWORDS['benefit']['zh'])}){_EMPHASIS}"),
    },
}
STEP_KIND = {
    re.sub(r"\s+", " ", word): kind
    for kind in (*STEP_KINDS, "and")
    for alternatives in KEYWORDS[kind].values()
    for word in alternatives.split("|")
}
STEP_ORDER = {"given": 0, "when": 1, "then": 2}

# "I want to pay" but "I want a monthly report": no "to" before these words. Ambiguous ones ("that", "all", "more")
# keep the "to"; either way parse reads the same want back.
_NO_TO_BEFORE = frozenset(
    {
        *("a", "an", "the", "my", "our", "your", "their", "his", "her", "its", "this", "these", "those", "some"),
        *("every", "each", "it", "them", "him", "me", "us", "another", "something", "everything", "nothing"),
        "anything",
    }
)
# "an" before a vowel sound: by the first letter, with the common exceptions; for an acronym by how its letter sounds.
_A_BEFORE = ("uni", "use", "usa", "usu", "uti", "ura", "uro", "eu", "ewe", "one", "once")
_AN_BEFORE = ("hour", "honest", "honor", "honour", "heir")
_AN_LETTERS = frozenset("AEFHILMNORSX")
_HEADING_RE = re.compile(r"#{1,6}(?=\s|$)")
_BULLET_RE = re.compile(r"(?:[-*+]|\d{1,9}[.)])\s+(?:\[[ xX]\]\s+)?")
_RULE_RE = re.compile(r"(?:-{3,}|\*{3,}|_{3,})")
_FENCE_RE = re.compile(r"(?:`{3,}|~{3,})")
# A clause that ends a sentence is complete: the line after it is not its continuation but other text.
SENTENCE_END = (".", "。", "!", "！", "?", "？")
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


@dataclass(frozen=True)
class _Keyword:
    kind: str  # title, role, want, benefit, given, when, then, and, criteria, header, ac
    language: str | None  # None for AC lines, which read the same in both languages
    word: str  # the keyword as written, for error messages
    body: str  # the text after it, trimmed
    number: int | None = None  # of an AC line


@dataclass(frozen=True)
class _Line:
    number: int  # 1-based, as an error names it
    text: str  # without Markdown decoration; "" for blank, fence and rule lines
    bullet: bool
    keyword: _Keyword | None


@dataclass
class _Clause:
    line: int
    keyword: _Keyword
    parts: list[str]


@dataclass
class _Story:
    clauses: dict[str, _Clause] = field(default_factory=dict)
    keywords: list[tuple[int, _Keyword]] = field(default_factory=list)  # every keyword line, for the language check
    criteria: list[tuple[_Line, dict[str, Any]]] = field(default_factory=list)


def _trim(text: str) -> str:
    return _EDGES.sub("", text)


def _join(parts: list[str]) -> str:
    """Wrapped lines as one text: a space between words, nothing between two Chinese characters."""
    out = ""
    for part in (p for p in parts if p):
        if out and not (_CJK.match(out[-1]) and _CJK.match(part[0])):
            out += " "
        out += part
    return out


def _article(role: str) -> str:
    first = role.split(maxsplit=1)[0]
    letters = re.sub(r"[^A-Za-z]", "", first)
    if letters and letters.isupper() and len(letters) <= 5:  # an SRE, an HR manager, a QA engineer
        return "an" if letters[0] in _AN_LETTERS else "a"
    lower = role.lower()
    if lower.startswith(_AN_BEFORE):
        return "an"
    if lower.startswith(_A_BEFORE):
        return "a"
    return "an" if lower[:1] in ("a", "e", "i", "o", "u") else "a"


def _drop_when_suffix(body: str) -> str:
    """当我完成支付时 is the When "我完成支付"; 小时, 同时 and the like end a word and stay."""
    for suffix in ("的时候", "时候", "时"):
        if body.endswith(suffix) and len(body) > len(suffix):
            if suffix == "时" and body[-2:] in ZH_WORDS_ENDING_IN_SHI.split("|"):
                return body
            return _trim(body[: -len(suffix)])
    return body


def _keyword(text: str) -> _Keyword | None:
    """What kind of line of the form this is, or None for any other text."""
    if m := AC_RE.match(text):
        return _Keyword("ac", None, "AC", _trim(m["body"]), int(m["num"]))
    for language in ("zh", "en"):
        for kind, pattern in PATTERNS[language].items():
            m = pattern.match(text)
            if m is None:
                continue
            word, body = re.sub(r"\s+", " ", m["kw"]), _trim(m["body"])
            colon = (m["sep"] or m["sep2"] or "") in (":", "：")
            if kind == "title":
                if not colon:  # "Story time is over" is prose; a title needs its colon
                    continue
                if word.lower() in TITLE_ALIASES:
                    if not body:
                        return _Keyword("header", language, word, "")
                    # "**User story:** As a shopper, I want …": a label over the narrative, not a title.
                    if (narrative := _keyword(body)) is not None and narrative.kind == "role":
                        return narrative
            elif kind == "criteria" and body:  # "Acceptance criteria are …" is prose
                continue
            elif kind == "role" and word.lower() == "as" and m["b"]:  # "**As** a shopper": the article is outside
                body = re.sub(r"^(?:an|a|the)\s+", "", body, flags=re.IGNORECASE)
            elif kind == "want" and m["b"] and not word.lower().endswith(" to"):  # "**I want** to pay"
                body = re.sub(r"^to\s+", "", body, flags=re.IGNORECASE)
            elif kind == "when" and language == "zh":
                body = _drop_when_suffix(body)
            if kind in STEP_ORDER or kind == "and":
                kind = STEP_KIND[word.lower() if language == "en" else word]
            return _Keyword(kind, language, word, body)
    return None


def _strip_markup(raw: str) -> tuple[str, bool]:
    text = raw.strip()
    while text.startswith(">"):
        text = text[1:].lstrip()
    if _FENCE_RE.match(text) or _RULE_RE.fullmatch(text):  # the story may come fenced or ruled off
        return "", False
    bullet = False
    if m := _HEADING_RE.match(text):
        text = re.sub(r"(?:^|\s+)#+$", "", text[m.end() :].strip())  # "## Title ##" but "Title: C#"
    elif m := _BULLET_RE.match(text):
        bullet, text = True, text[m.end() :]
    for mark in ("**", "__"):  # a whole line in bold: "**AC1: Pay with the default card**"
        if len(text) > 4 and text.startswith(mark) and text.endswith(mark) and mark not in text[2:-2]:
            text = text[2:-2].strip()
    return text.strip(), bullet


def _lines(text: str) -> list[_Line]:
    # split("\n"), not splitlines(): the model's texts may hold \x0c or \u2028, which are not line breaks here.
    lines = []
    for number, raw in enumerate(text.split("\n"), 1):
        clean, bullet = _strip_markup(raw.rstrip("\r"))
        lines.append(_Line(number, clean, bullet, _keyword(clean) if clean else None))
    return lines


def _kind(line: _Line) -> str | None:
    return line.keyword.kind if line.keyword else None


def _keyword_text(field_name: str, language: str) -> str:
    """How an error message quotes the keyword the story is missing, in the story's language."""
    if field_name == "role":
        return "As a …" if language == "en" else "作为…"
    return CANONICAL[language][field_name] + "…"


def _narrative(lines: list[_Line], lo: int, hi: int, last_zone: bool, story: _Story, errors: list[DslError]) -> int:
    """Title, role, want and benefit lines from lines[lo:hi]; returns where the story ends when nothing follows."""
    wrapped: str | None = None  # the clause a wrapped line continues; none after a blank line
    gap = content = False
    for i in range(lo, hi):
        line = lines[i]
        kind, kw = _kind(line), line.keyword
        if not line.text:
            wrapped, gap = None, gap or content
            continue
        if last_zone and gap and kind not in ("title", "role", "want", "benefit"):
            # Past the narrative and no AC follows: the model's closing prose, unless it is a stray step.
            if kind in STEP_ORDER or kind == "and":
                errors.append(DslError(f"line {line.number}", kind, "a step needs an 'AC1:' line above it"))
            return i
        gap = False
        if kind in ("title", "role", "want", "benefit") and kw is not None:
            if (first := story.clauses.get(kind)) is not None:
                what = "Title" if kind == "title" else _keyword_text(kind, kw.language or "en")
                errors.append(
                    DslError(
                        f"line {line.number}",
                        kind,
                        f"a second '{what}' line (the first is line {first.line}): write one story per text",
                    )
                )
            else:
                story.clauses[kind] = _Clause(line.number, kw, [kw.body])
                story.keywords.append((line.number, kw))
            wrapped = None if kind == "title" or line.text.endswith(SENTENCE_END) else kind
            content = content or kind != "title"
        elif kind in ("criteria", "header"):
            wrapped = None
        elif wrapped is not None and (kw is None or kw.word[:1].islower()):
            # "I want an alert\nwhen my flight is late": a lower-case "when" wraps the want, it is no step.
            story.clauses[wrapped].parts.append(_trim(line.text))
            wrapped = None if line.text.endswith(SENTENCE_END) else wrapped
        elif kind in STEP_ORDER or kind == "and":
            errors.append(DslError(f"line {line.number}", kind or "", "a step needs an 'AC1:' line above it"))
        else:
            errors.append(DslError(f"line {line.number}", "text", f"not a line of the user-story form: {line.text!r}"))
    return hi


def _criterion(
    lines: list[_Line], lo: int, hi: int, last_zone: bool, language: str, story: _Story, errors: list[DslError]
) -> int:
    """The AC opened on lines[lo] with its steps from the lines up to hi; returns where the story ends."""
    header = lines[lo]
    assert header.keyword is not None
    label = f"AC{header.keyword.number}"
    criterion: dict[str, Any] = {"name": header.keyword.body or None, "given": [], "when": [], "then": []}
    story.criteria.append((header, criterion))
    last: str | None = None  # the clause an And line continues
    highest = -1
    listing: tuple[str, _Line, list[str]] | None = None  # "Then:" alone, with the bullets under it
    gap = False
    end = hi

    def close_listing() -> None:
        if listing is not None and not listing[2]:
            kind, line, _ = listing
            errors.append(DslError(label, kind, f"line {line.number}: the {kind.capitalize()} step has no text"))

    for i in range(lo + 1, hi):
        line = lines[i]
        if not line.text:
            gap = True
            continue
        kw = line.keyword if _kind(line) in ("given", "when", "then", "and") else None
        complete = bool(criterion["when"] and criterion["then"])
        # After a blank line only a step the AC still needs continues it: in the last AC anything else is the
        # model's closing prose ("When you are ready, …" after a complete AC included).
        if last_zone and gap and (kw is None or complete):
            end = i
            break
        gap = False
        if kw is None:
            if listing is not None and line.bullet:
                listing[2].append(_trim(line.text))
                criterion[listing[0]].append(_trim(line.text))
            else:
                errors.append(
                    DslError(label, "text", f"line {line.number}: not a Given/When/Then/And step: {line.text!r}")
                )
            continue
        close_listing()
        listing = None
        story.keywords.append((line.number, kw))
        kind = kw.kind
        if kind == "and":
            if last is None:
                errors.append(
                    DslError(label, "and", f"line {line.number}: '{kw.word}' before any Given/When/Then step")
                )
                continue
            kind = last
        elif STEP_ORDER[kind] < highest:
            # The model keeps Given, When and Then apart; a Given after a When would come back in another order.
            before = STEP_KINDS[highest].capitalize()
            errors.append(
                DslError(
                    label,
                    kind,
                    f"line {line.number}: {kind.capitalize()} after {before}: steps run Given, When, Then; "
                    "start a new AC for another scenario",
                )
            )
            continue
        else:
            highest, last = STEP_ORDER[kind], kind
        if kw.body:
            criterion[kind].append(kw.body)
        else:
            listing = (kind, line, [])
    close_listing()
    for kind in ("when", "then"):
        if not criterion[kind]:
            keyword = _keyword_text(kind, language)
            errors.append(DslError(label, kind, f"{label} has no {kind.capitalize()} step ('{keyword}')"))
    return end


def _split_inline(story: _Story, language: str, errors: list[DslError]) -> dict[str, str | None]:
    """Role, want and benefit texts, splitting a clause that holds the next one ("As a shopper, I want …")."""
    texts: dict[str, str | None] = {k: _join(c.parts) for k, c in story.clauses.items() if k != "title"}
    for head, tail in (("role", "want"), ("want", "benefit")):
        if tail in texts or texts.get(head) is None:
            continue
        text = texts[head] or ""
        found = [(m.start(), lang, m) for lang in LANGUAGES if (m := INLINE[lang][tail].search(text))]
        if not found:
            continue
        _, found_language, m = min(found, key=lambda f: f[0])
        texts[head], texts[tail] = _trim(text[: m.start()]), _trim(text[m.end() :])
        clause = story.clauses.get(head) or story.clauses["role"]  # a want split off the role line
        if found_language != language:
            errors.append(_language_error(clause.line, m.group().strip("*_ "), found_language, language))
        if tail == "want" and found_language == "en" and not m.group().lower().rstrip("*_ ").endswith(" to"):
            texts["want"] = re.sub(r"^to\s+", "", texts["want"] or "", flags=re.IGNORECASE)
    return texts


def _language_error(line: int, word: str, found: str, language: str) -> DslError:
    return DslError(
        f"line {line}",
        "language",
        f"'{word}' is {LANGUAGE_NAMES[found]} in a story written in {LANGUAGE_NAMES[language]}: "
        "write every keyword in the language of the Title line",
    )


def _numbering(story: _Story) -> list[DslError]:
    errors: list[DslError] = []
    seen: dict[int, int] = {}
    for header, _ in story.criteria:
        number = header.keyword.number if header.keyword else None
        assert number is not None
        if number in seen:
            errors.append(
                DslError(
                    f"AC{number}", "number", f"AC{number} is used twice (lines {seen[number]} and {header.number})"
                )
            )
        else:
            seen[number] = header.number
    if errors:
        return errors
    for position, (header, _) in enumerate(story.criteria, 1):
        number = header.keyword.number if header.keyword else None
        if number != position:
            return [
                DslError(
                    f"AC{number}",
                    "number",
                    f"{NUMBERING_WARNING}: line {header.number} should be AC{position}",
                )
            ]
    return []


def _start(lines: list[_Line]) -> int | None:
    """Where the story begins: its Title line; without one its role line (prose before it is not the story's)."""
    for kinds in (("title",), ("role",), ("want", "benefit", "ac")):
        for i, line in enumerate(lines):
            if _kind(line) in kinds:
                return i
    return None


def _read(text: str) -> tuple[dict[str, Any] | None, list[DslError]]:
    """The model of `text` (None when it has errors other than warnings) and every problem found."""
    lines = _lines(text)
    start = _start(lines)
    if start is None:
        return None, [
            DslError("story", f, f"missing the '{_keyword_text(f, 'en')}' line") for f in ("title", "role", "want")
        ]
    # The story's language is that of its first keyword line, the Title line when there is one.
    language = next(
        (ln.keyword.language for ln in lines[start:] if ln.keyword and ln.keyword.language),
        "en",
    )
    errors: list[DslError] = []
    story = _Story()
    headers = [i for i in range(start, len(lines)) if _kind(lines[i]) == "ac"]
    # A Title line after the criteria opens a second story: the first one ends there, as if the text did.
    stop = (
        next((i for i in range(headers[0], len(lines)) if _kind(lines[i]) == "title"), len(lines))
        if headers
        else len(lines)
    )
    headers = [i for i in headers if i < stop]
    end = _narrative(lines, start, headers[0] if headers else stop, not headers, story, errors)
    for k, lo in enumerate(headers):
        hi = headers[k + 1] if k + 1 < len(headers) else stop
        end = _criterion(lines, lo, hi, k + 1 == len(headers), language, story, errors)
    for line in lines[end:]:  # closing prose, unless a second story hides in it
        if _kind(line) == "title":
            errors.append(DslError(f"line {line.number}", "title", "a second story starts here: write one per text"))
    texts = _split_inline(story, language, errors)
    for number, kw in story.keywords:
        if kw.language is not None and kw.language != language:
            errors.append(_language_error(number, kw.word, kw.language, language))
    title = story.clauses.get("title")
    values = {"title": title.keyword.body if title else None, **texts}
    for name in ("title", "role", "want"):
        if name not in story.clauses and values.get(name) is None:
            errors.insert(0, DslError("story", name, f"missing the '{_keyword_text(name, language)}' line"))
        elif not values.get(name):
            where = story.clauses[name].line if name in story.clauses else story.clauses["role"].line
            errors.append(DslError(f"line {where}", name, f"the {name} is empty"))
    if "benefit" in values and not values["benefit"]:
        where = story.clauses["benefit"].line if "benefit" in story.clauses else story.clauses["want"].line
        errors.append(DslError(f"line {where}", "benefit", "the benefit is empty"))
    errors.extend(_numbering(story))
    if any(not is_warning(e) for e in errors):
        return None, errors
    model = {
        "language": language,
        "title": values["title"],
        "role": values["role"],
        "want": values["want"],
        "benefit": values.get("benefit"),
        "acceptance_criteria": [criterion for _, criterion in story.criteria],
    }
    for problem in validation_errors(SCHEMA, model):  # texts the form can hold but the model cannot, e.g. 一名会员
        where, _, reason = problem.partition(": ")
        errors.append(DslError("story", where, reason))
    return (None if any(not is_warning(e) for e in errors) else model), errors


def is_warning(error: DslError) -> bool:
    """Whether `error` is only a warning (AC numbering): `parse` still returns the story, `parse(strict=True)` not."""
    return error.reason.startswith(NUMBERING_WARNING)


def story_from_record(record: dict[str, Any]) -> dict[str, Any]:
    """The DSL model of a discovered `user_story` record; an untitled story is titled by its want."""
    criteria = record.get("acceptance_criteria") or []
    return {
        "language": record["language"],
        "title": _trim(record.get("title") or record["want"]),
        "role": _trim(record["role"]),
        "want": _trim(record["want"]),
        "benefit": _trim(record["benefit"]) if record.get("benefit") else None,
        "acceptance_criteria": [
            {
                "name": _trim(c["name"]) if c.get("name") else None,
                **{kind: [_trim(step) for step in c.get(kind) or []] for kind in STEP_KINDS},
            }
            for c in criteria
        ],
    }


def render(story: dict[str, Any]) -> str:
    """The canonical text of `story` (see the module docstring); raises ValueError for a model the schema refuses,
    since its text would not parse back to it."""
    if problems := validation_errors(SCHEMA, story):
        raise ValueError("not a user-story DSL model: " + "; ".join(problems))
    language = story["language"]
    form = CANONICAL[language]
    benefit = story["benefit"]
    end = form["comma"] if benefit else form["stop"]
    if language == "en":
        role, want = story["role"], story["want"]
        to = "" if want.split(maxsplit=1)[0].lower() in _NO_TO_BEFORE else "to "
        narrative = [f"As {_article(role)} {role}{form['comma']}", f"{form['want']}{to}{want}{end}"]
    else:
        narrative = [f"{form['role']}{story['role']}{form['comma']}", f"{form['want']}{story['want']}{end}"]
    lines = [f"{form['title']}{story['title']}", *narrative]
    if benefit:
        lines.append(f"{form['benefit']}{benefit}{form['stop']}")
    for number, criterion in enumerate(story["acceptance_criteria"], 1):
        name = criterion["name"]
        lines += ["", f"AC{number}{form['colon']}{(' ' if language == 'en' else '') + name if name else ''}"]
        for kind in STEP_KINDS:
            lines += [f"{form[kind] if k == 0 else form['and']}{step}" for k, step in enumerate(criterion[kind])]
    return "\n".join(lines)


def parse(text: str, *, strict: bool = False) -> dict[str, Any]:
    """The canonical model of the story in `text` (a model's answer, prose and Markdown around it allowed); raises
    `DslSyntaxError` with every problem. AC numbering warnings only raise when `strict`."""
    model, errors = _read(text)
    if model is None or (strict and errors):
        raise DslSyntaxError(errors)
    return model


def validate(text: str) -> list[DslError]:
    """Every problem of `text` as the user-story DSL, warnings (`is_warning`) included; empty when it is clean."""
    return _read(text)[1]
