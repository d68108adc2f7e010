"""The user-story DSL as a data engineer and a teacher model use it: discovered stories are written in one canonical
form (English or Chinese), a model's answer in that form — however it decorates it — reads back as the same story,
and a broken answer is refused with errors precise enough to ask the model to fix exactly that."""

import random
import re
from pathlib import Path

import pytest

from flywheel_pipelines.discover.dsl import DslError, DslSyntaxError
from flywheel_pipelines.discover.dsl.user_story_dsl import (
    KEYWORDS,
    NUMBERING_WARNING,
    is_warning,
    parse,
    render,
    story_from_record,
    validate,
)
from flywheel_pipelines.discover.user_stories import ZH_WORDS_ENDING_IN_SHI, extract_user_stories
from flywheel_pipelines.schemas import validation_errors

EDGES = re.compile(r"^[\s,，;；:：.。!！?？、]+|[\s,，;；:：.。!！?？、]+$")
REQUIREMENTS = Path(__file__).resolve().parents[3] / "data" / "samples" / "requirements"

CANONICAL_EN = """Title: Checkout with a saved card
As a returning customer,
I want to pay with a saved card,
so that I can check out faster.

AC1: Pay with the default card
Given I have a saved card
And the card has not expired
When I confirm the order
Then the order is paid with that card
And I receive a receipt"""

SAVED_CARD = {
    "language": "en",
    "title": "Checkout with a saved card",
    "role": "returning customer",
    "want": "pay with a saved card",
    "benefit": "I can check out faster",
    "acceptance_criteria": [
        {
            "name": "Pay with the default card",
            "given": ["I have a saved card", "the card has not expired"],
            "when": ["I confirm the order"],
            "then": ["the order is paid with that card", "I receive a receipt"],
        }
    ],
}

CANONICAL_ZH = """标题：下单获得积分
作为会员，
我想要在每次下单后获得积分，
以便于以后兑换优惠券。

AC1：按订单金额累计积分
假设我是已登录的会员
并且购物车金额为 100 元
当我完成支付
那么我的账户增加 100 积分
并且我收到积分到账通知"""

POINTS = {
    "language": "zh",
    "title": "下单获得积分",
    "role": "会员",
    "want": "在每次下单后获得积分",
    "benefit": "以后兑换优惠券",
    "acceptance_criteria": [
        {
            "name": "按订单金额累计积分",
            "given": ["我是已登录的会员", "购物车金额为 100 元"],
            "when": ["我完成支付"],
            "then": ["我的账户增加 100 积分", "我收到积分到账通知"],
        }
    ],
}


def sample_stories() -> list[dict]:
    stories = []
    for path in sorted(REQUIREMENTS.glob("*.md")):
        records, _ = extract_user_stories(path.read_text(encoding="utf-8"), "docs", path.name)
        stories += [story_from_record(r) for r in records]
    return stories


def parsed(text: str) -> dict:
    """The story in `text`, checked against the DSL's schema as every parsed model must be."""
    story = parse(text)
    assert validation_errors("user_story_dsl", story) == []
    return story


def story(**changes) -> dict:
    return {**SAVED_CARD, **changes}


def criterion(name=None, given=(), when=("I confirm the order",), then=("the order is paid",)) -> dict:
    return {"name": name, "given": list(given), "when": list(when), "then": list(then)}


# Writing stories: one canonical form, and it reads back unchanged.


def test_every_sample_story_round_trips_in_its_own_language():
    stories = sample_stories()
    assert sorted(s["language"] for s in stories) == ["en", "en", "en", "zh", "zh"]
    for s in stories:
        assert validation_errors("user_story_dsl", s) == []
        text = render(s)
        assert text.startswith("Title: " if s["language"] == "en" else "标题：")
        assert parsed(text) == s
        assert render(parse(text)) == text


def test_the_canonical_english_text_reads_as_the_story_and_is_written_back_exactly():
    assert parsed(CANONICAL_EN) == SAVED_CARD
    assert render(SAVED_CARD) == CANONICAL_EN


def test_the_canonical_chinese_text_reads_as_the_story_and_is_written_back_exactly():
    assert parsed(CANONICAL_ZH) == POINTS
    assert render(POINTS) == CANONICAL_ZH


def test_a_sample_story_with_two_criteria_and_a_but_step_is_written_with_blank_lines_and_and():
    (saved_card,) = [s for s in sample_stories() if s["title"] == "Checkout with a saved card"]
    text = render(saved_card)
    assert "\n\nAC1: Pay with the default card\n" in text
    assert "\n\nAC2: Expired card is refused\nGiven my only saved card has expired\n" in text
    assert text.endswith(
        "Then the payment is refused\nAnd I am asked for a new card\nAnd the order is kept in my basket"
    )


def test_a_story_without_a_benefit_ends_its_want_line_with_a_full_stop():
    (guest,) = [s for s in sample_stories() if s["title"] == "Guest checkout"]
    assert guest["benefit"] is None
    text = render(guest)
    assert text.splitlines()[:3] == [
        "Title: Guest checkout",
        "As a first-time visitor,",
        "I want to check out without creating an account.",
    ]
    assert "so that" not in text
    chinese = render({**POINTS, "benefit": None})
    assert chinese.splitlines()[2] == "我想要在每次下单后获得积分。"
    assert "以便于" not in chinese
    assert parsed(chinese)["benefit"] is None


def test_an_unnamed_criterion_is_written_as_its_number_alone():
    two = story(acceptance_criteria=[criterion("Pay"), criterion()])
    assert "\n\nAC2:\nWhen I confirm the order\n" in render(two)
    assert parsed(render(two))["acceptance_criteria"][1]["name"] is None
    chinese = {**POINTS, "acceptance_criteria": [criterion(when=["我完成支付"], then=["积分到账"])]}
    assert "\n\nAC1：\n当我完成支付\n那么积分到账" in render(chinese)


def test_an_untitled_discovered_story_is_titled_by_its_want():
    records, _ = extract_user_stories("As a shopper, I want to apply a discount code.\n", "docs", "notes.md")
    (record,) = records
    assert record["title"] is None
    s = story_from_record(record)
    assert s["title"] == "apply a discount code"
    assert render(s).splitlines()[0] == "Title: apply a discount code"
    assert "story_id" not in s and "start_line" not in s


@pytest.mark.parametrize(
    ("changes", "line"),
    [
        ({"role": "admin"}, "As an admin,"),
        ({"role": "SRE on call"}, "As an SRE on call,"),
        ({"role": "user of the app"}, "As a user of the app,"),
        ({"role": "hourly worker"}, "As an hourly worker,"),
        ({"want": "a monthly report of refunds"}, "I want a monthly report of refunds,"),
        ({"want": "to-do list view"}, "I want to to-do list view,"),
        ({"want": "tomorrow's orders first"}, "I want to tomorrow's orders first,"),
        ({"role": "customer who said I want more"}, "As a customer who said I want more,"),
        ({"title": "C# client: retry", "benefit": "calls survive a blip"}, "Title: C# client: retry"),
        ({"acceptance_criteria": [criterion("When the card has expired")]}, "AC1: When the card has expired"),
        ({"acceptance_criteria": [criterion("-5 EUR off")]}, "AC1: -5 EUR off"),
        (
            {"acceptance_criteria": [criterion(then=['I see "**Paid**" and `200 OK`'])]},
            'Then I see "**Paid**" and `200 OK`',
        ),
        ({"acceptance_criteria": []}, "so that I can check out faster."),
    ],
)
def test_a_hand_written_english_story_round_trips(changes, line):
    s = story(**changes)
    text = render(s)
    assert line in text.splitlines()
    assert parsed(text) == s
    assert render(parse(text)) == text


@pytest.mark.parametrize(
    ("changes", "line"),
    [
        ({"role": "一线客服"}, "作为一线客服，"),
        ({"want": "要求退款"}, "我想要要求退款，"),
        ({"benefit": "于是节省时间"}, "以便于于是节省时间。"),
        ({"acceptance_criteria": [criterion(when=["前端发送请求"], then=["么么哒"])]}, "当前端发送请求"),
        ({"acceptance_criteria": [criterion(when=["我等待一小时"], then=["订单关闭"])]}, "当我等待一小时"),
        ({"acceptance_criteria": [criterion(given=["a", "且慢"], then=["订单关闭"])]}, "并且且慢"),
        ({"acceptance_criteria": [criterion(name="2 张卡", then=["则成功"])]}, "那么则成功"),
    ],
)
def test_a_hand_written_chinese_story_round_trips(changes, line):
    s = {**POINTS, **changes}
    text = render(s)
    assert line in text.splitlines()
    assert parsed(text) == s
    assert render(parse(text)) == text


def test_every_word_that_ends_in_shi_stays_in_a_chinese_when_step():
    for word in ZH_WORDS_ENDING_IN_SHI.split("|"):
        s = {**POINTS, "acceptance_criteria": [criterion(when=[f"我检查{word}"], then=["通过"])]}
        assert validation_errors("user_story_dsl", s) == []
        assert parsed(render(s)) == s


def test_any_story_the_schema_accepts_round_trips():
    # Texts built from the form's own keywords, markup and punctuation, in both languages: whatever the schema
    # accepts must come back unchanged, whatever it refuses render must refuse too.
    keywords = [word for forms in KEYWORDS.values() for words in forms.values() for word in words.split("|")]
    markup = ("AC1:", "AC2", "**", "*", "__", "`x`", ":", ",", ".", "，", "。", "：", "!", "?", "、", ";", "#", "- ")
    others = ("1.", "> ", "```", "---", "(", ")", "-5", "一名", "一线", "时", "时候", "小时", "前端", "会员", "支付")
    pieces = [*keywords, *markup, *others, "a", "the", "to", "my", "user", "admin", "SRE", "hour", "tomorrow", "x"]
    rng = random.Random(20240501)

    def text() -> str:
        raw = "".join(rng.choice(pieces) + rng.choice(("", " ")) for _ in range(rng.randint(1, 5)))
        # Mostly in normal form, so that most stories get checked; now and then as is, for render to refuse.
        return raw.strip() if rng.random() < 0.1 else EDGES.sub("", raw) or "x"

    checked = refused = 0
    for _ in range(800):
        s = {
            "language": rng.choice(("en", "zh")),
            "title": text(),
            "role": text(),
            "want": text(),
            "benefit": rng.choice((None, text())),
            "acceptance_criteria": [
                {
                    "name": rng.choice((None, text())),
                    "given": [text() for _ in range(rng.randint(0, 2))],
                    "when": [text() for _ in range(rng.randint(1, 2))],
                    "then": [text() for _ in range(rng.randint(1, 2))],
                }
                for _ in range(rng.randint(0, 2))
            ],
        }
        if validation_errors("user_story_dsl", s):
            refused += 1
            if refused <= 50:  # explaining a refusal is slow; a few suffice
                with pytest.raises(ValueError):
                    render(s)
            continue
        checked += 1
        assert parse(render(s)) == s, render(s)
    assert checked > 500 and refused > 50


def test_render_refuses_a_model_whose_text_would_read_back_differently():
    with pytest.raises(ValueError, match="role"):
        render({**POINTS, "role": "一名会员"})  # 作为一名会员 reads as the role 会员
    with pytest.raises(ValueError, match="title"):
        render(story(title="Checkout."))
    with pytest.raises(ValueError, match="want"):
        render(story(want="arrange it so that it works", benefit=None))
    with pytest.raises(ValueError, match="when"):
        render(story(acceptance_criteria=[criterion(when=[])]))


# Reading a model's answer: decorations fall away, the canonical story remains.


def test_a_models_answer_in_bold_bullet_style_parses_to_the_canonical_story():
    answer = """Sure! Here is the user story in the requested format:

```markdown
## **Title:** Checkout with a saved card

- **As a** returning customer,
- **I want** to pay with a saved card,
- **So that** I can check out faster.

### Acceptance criteria

**AC1: Pay with the default card**
- **Given** I have a saved card
- **And** the card has not expired
- **When** I confirm the order
- **Then** the order is paid with that card
- **And** I receive a receipt
```

When you are ready, I can add more acceptance criteria.
"""
    assert validate(answer) == []
    assert parsed(answer) == SAVED_CARD
    assert render(parse(answer)) == CANONICAL_EN


def test_a_one_line_narrative_is_split_into_role_want_and_benefit():
    english = (
        "**User story:** As a returning customer, I want to pay with a saved card, so that I can check out faster.\n"
    )
    assert parse("Title: Checkout with a saved card\n" + english + "\n" + CANONICAL_EN.split("\n\n")[1]) == SAVED_CARD
    chinese = "标题：下单获得积分\n作为一名会员，我想要在每次下单后获得积分，以便于以后兑换优惠券。\n\n"
    assert parsed(chinese + CANONICAL_ZH.split("\n\n")[1]) == POINTS


@pytest.mark.parametrize(
    "variant",
    [
        CANONICAL_ZH,
        CANONICAL_ZH.replace("：", ":").replace("，", ",").replace("。", "."),
        CANONICAL_ZH.replace("假设", "假设 ").replace("并且", "并且 ").replace("当", "当 ").replace("那么", "那么 "),
        CANONICAL_ZH.replace("假设", "假设：").replace("当", "当：").replace("那么", "那么："),
        CANONICAL_ZH.replace("当我完成支付", "当我完成支付时").replace("积分通知", "积分通知。"),
        CANONICAL_ZH.replace("作为会员，\n我想要", "作为一名会员，我想要").replace("，\n以便于", "，以便于"),
        CANONICAL_ZH.replace("假设", "假如").replace("那么", "则").replace("并且我收到", "而且我收到"),
        "```\n" + CANONICAL_ZH.replace("标题：", "**标题：**").replace("AC1：", "- AC1：") + "\n```\n",
    ],
)
def test_chinese_punctuation_variants_parse_the_same(variant):
    assert parsed(variant) == POINTS
    assert render(parse(variant)) == CANONICAL_ZH


@pytest.mark.parametrize(
    "variant",
    [
        CANONICAL_EN.replace("Title:", "Title：").replace("AC1:", "AC1："),
        CANONICAL_EN.replace("\nGiven", "\ngiven").replace("\nWhen", "\nwhen").replace("\nThen", "\nthen"),
        CANONICAL_EN.replace("Given ", "Given: ").replace("When ", "When: ").replace("Then ", "Then: "),
        CANONICAL_EN.replace("customer,", "customer").replace("card,", "card").replace("faster.", "faster"),
        CANONICAL_EN.replace("AC1:", "### AC 1 -").replace("And I receive", "But I receive"),
        "> " + CANONICAL_EN.replace("\n", "\n> "),
    ],
)
def test_english_spelling_variants_parse_the_same(variant):
    assert parsed(variant) == SAVED_CARD


def test_a_bare_then_with_bulleted_steps_under_it_gives_those_steps():
    text = CANONICAL_EN.replace(
        "Then the order is paid with that card\nAnd I receive a receipt",
        "Then:\n  - the order is paid with that card\n  - I receive a receipt",
    )
    assert parsed(text) == SAVED_CARD


def test_blank_lines_inside_a_criterion_are_tolerated_until_it_has_when_and_then():
    text = CANONICAL_EN.replace("\nWhen", "\n\nWhen").replace("\nThen", "\n\nThen") + "\n\nAnd that is all."
    assert parsed(text) == SAVED_CARD


def test_closing_prose_after_the_last_criterion_is_not_read_as_a_step():
    s = parsed(CANONICAL_EN + "\n\nThen let me know if the wording works.\nWhen you are happy, I will add AC2.")
    assert s["acceptance_criteria"][0]["then"] == ["the order is paid with that card", "I receive a receipt"]


# Refusing a broken answer: every problem, each with where, which field and why.


def test_an_ac_without_then_is_reported_as_ac2_then():
    text = CANONICAL_EN + "\n\nAC2: Expired card is refused\nGiven my card has expired\nWhen I confirm the order"
    errors = validate(text)
    assert errors == [DslError("AC2", "then", "AC2 has no Then step ('Then …')")]
    with pytest.raises(DslSyntaxError) as raised:
        parse(text)
    assert raised.value.errors == errors
    assert "AC2, then: AC2 has no Then step" in str(raised.value)


def test_an_ac_without_when_is_reported_in_the_storys_language():
    text = CANONICAL_ZH.replace("当我完成支付\n", "")
    assert validate(text) == [DslError("AC1", "when", "AC1 has no When step ('当…')")]


def test_a_story_missing_i_want_is_rejected_with_a_precise_error():
    text = CANONICAL_EN.replace("I want to pay with a saved card,\n", "")
    assert validate(text) == [DslError("story", "want", "missing the 'I want …' line")]
    with pytest.raises(DslSyntaxError, match="story, want: missing the 'I want …' line"):
        parse(text)
    chinese = CANONICAL_ZH.replace("我想要在每次下单后获得积分，\n", "")
    assert validate(chinese) == [DslError("story", "want", "missing the '我想要…' line")]


def test_a_story_missing_its_title_and_role_names_both():
    text = CANONICAL_EN.replace("Title: Checkout with a saved card\n", "").replace("As a returning customer,\n", "")
    fields = [(e.location, e.field) for e in validate(text)]
    assert fields == [("story", "role"), ("story", "title")]


def test_an_answer_without_any_story_is_refused_with_the_three_missing_lines():
    errors = validate("I am sorry, I cannot write that story.")
    assert [(e.location, e.field) for e in errors] == [("story", "title"), ("story", "role"), ("story", "want")]
    with pytest.raises(DslSyntaxError):
        parse("")


def test_and_before_any_step_is_reported_on_its_criterion():
    text = CANONICAL_EN + "\n\nAC2:\nAnd the card is blocked\nWhen I confirm the order\nThen the payment is refused"
    assert validate(text) == [DslError("AC2", "and", "line 14: 'And' before any Given/When/Then step")]


def test_steps_out_of_order_are_refused_rather_than_reordered():
    text = CANONICAL_EN + "\nGiven the shop is open"
    (error,) = validate(text)
    assert (error.location, error.field) == ("AC1", "given")
    assert error.reason.startswith("line 12: Given after Then")


def test_mixed_languages_in_one_story_are_reported_on_their_lines():
    text = CANONICAL_ZH.replace("当我完成支付", "When I pay").replace("我想要", "I want to ")
    errors = validate(text)
    assert [(e.location, e.field) for e in errors] == [("line 3", "language"), ("line 9", "language")]
    assert "'When' is English in a story written in Chinese" in errors[1].reason
    with pytest.raises(DslSyntaxError):
        parse(text)


def test_duplicate_ac_numbers_are_an_error():
    text = CANONICAL_EN + "\n\nAC1: Again\nWhen I confirm the order\nThen the order is paid"
    errors = validate(text)
    assert errors == [DslError("AC1", "number", "AC1 is used twice (lines 6 and 13)")]
    assert not is_warning(errors[0])
    with pytest.raises(DslSyntaxError):
        parse(text)


def test_an_ac_numbering_gap_is_only_a_warning_and_the_story_is_renumbered():
    text = CANONICAL_EN + "\n\nAC3: Refund\nWhen I return the order\nThen the card is refunded"
    (warning,) = validate(text)
    assert (warning.location, warning.field) == ("AC3", "number")
    assert warning.reason.startswith(NUMBERING_WARNING) and "AC numbers should run 1..n" in warning.reason
    assert is_warning(warning)
    s = parsed(text)
    assert [c["name"] for c in s["acceptance_criteria"]] == ["Pay with the default card", "Refund"]
    assert "\n\nAC2: Refund\n" in render(s)
    with pytest.raises(DslSyntaxError, match=re.escape(NUMBERING_WARNING)):
        parse(text, strict=True)


def test_stray_lines_inside_the_story_are_reported_not_dropped():
    text = CANONICAL_EN.replace("so that I can check out faster.\n", "so that I can check out faster.\nNote: v2.\n")
    text = text.replace("When I confirm", "Afterwards\nWhen I confirm")
    errors = validate(text)
    assert [(e.location, e.field) for e in errors] == [("line 5", "text"), ("AC1", "text")]
    assert "'Afterwards'" in errors[1].reason


def test_steps_without_an_ac_line_are_reported():
    text = CANONICAL_EN.replace("AC1: Pay with the default card\n", "")
    errors = validate(text)
    assert errors and all(e.reason == "a step needs an 'AC1:' line above it" for e in errors)
    assert errors[0] == DslError("line 6", "given", "a step needs an 'AC1:' line above it")


def test_two_stories_in_one_answer_are_refused():
    errors = validate(CANONICAL_EN + "\n\n" + CANONICAL_EN)
    assert DslError("line 13", "title", "a second story starts here: write one per text") in errors
    with pytest.raises(DslSyntaxError):
        parse(CANONICAL_EN + "\n\n" + CANONICAL_ZH)


def test_an_empty_title_and_empty_step_are_named():
    text = CANONICAL_EN.replace("Title: Checkout with a saved card", "Title:").replace(
        "Then the order is paid with that card", "Then:"
    )
    errors = validate(text)
    assert DslError("line 1", "title", "the title is empty") in errors
    assert DslError("AC1", "then", "line 10: the Then step has no text") in errors
