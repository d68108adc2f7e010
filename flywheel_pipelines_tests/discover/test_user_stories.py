"""Requirement documents become user stories — role, want, benefit and Given/When/Then acceptance criteria — in
English and Chinese; a story that is half-written is quarantined with the reason, and prose yields nothing."""

import hashlib
from pathlib import Path

import pytest

from flywheel_pipelines.discover.quarantine import Quarantined
from flywheel_pipelines.discover.user_stories import extract_user_stories
from flywheel_pipelines.schemas import validation_errors

REQUIREMENTS = Path(__file__).resolve().parents[2] / "data" / "samples" / "requirements"


def sample(name: str) -> tuple[dict[str, dict], list[Quarantined]]:
    stories, quarantined = extract_user_stories((REQUIREMENTS / name).read_text(encoding="utf-8"), "docs", name)
    return {s["title"]: s for s in stories}, quarantined


def only_story(text: str) -> dict:
    stories, quarantined = extract_user_stories(text, "docs", "stories.md")
    assert quarantined == []
    assert len(stories) == 1
    return stories[0]


def test_an_english_story_with_two_acceptance_criteria_keeps_every_and_step_in_its_clause():
    stories, quarantined = sample("checkout-stories.md")
    assert quarantined == []
    story = stories["Checkout with a saved card"]
    assert (story["language"], story["role"], story["want"], story["benefit"]) == (
        "en",
        "returning customer",
        "pay with a saved card",
        "I can check out faster",
    )
    first, second = story["acceptance_criteria"]
    assert first == {
        "name": "Pay with the default card",
        "given": ["I have a saved card", "the card has not expired"],
        "when": ["I confirm the order"],
        "then": ["the order is paid with that card", "I receive a receipt"],
    }
    assert second["name"] == "Expired card is refused"
    assert second["then"] == ["the payment is refused", "I am asked for a new card", "the order is kept in my basket"]


def test_a_story_spans_from_its_heading_through_its_last_acceptance_line():
    stories, _ = sample("checkout-stories.md")
    lines = (REQUIREMENTS / "checkout-stories.md").read_text(encoding="utf-8").splitlines()
    for story in stories.values():
        assert lines[story["start_line"] - 1].startswith("#")
    saved_card = stories["Checkout with a saved card"]
    assert lines[saved_card["start_line"] - 1] == "## Story: Checkout with a saved card"
    assert lines[saved_card["end_line"] - 1] == "But the order is kept in my basket"


def test_a_tracker_key_heading_titles_a_one_line_story_written_with_bold_keywords_and_bulleted_steps():
    stories, _ = sample("checkout-stories.md")
    story = stories["Apply a discount code"]
    assert (story["role"], story["want"], story["benefit"]) == (
        "shopper",
        "apply a discount code at checkout",
        "I pay the promotional price",
    )
    assert story["acceptance_criteria"] == [
        {
            "name": "Valid code",
            "given": ["my basket totals 50 EUR"],
            "when": ["I apply the code `SPRING10`"],
            "then": ["the total becomes 45 EUR"],
        }
    ]


def test_a_story_under_a_plain_heading_needs_neither_a_benefit_nor_a_given_step():
    stories, _ = sample("checkout-stories.md")
    story = stories["Guest checkout"]
    assert story["want"] == "check out without creating an account"
    assert story["benefit"] is None
    (criterion,) = story["acceptance_criteria"]
    assert criterion["name"] == "Pay as a guest"
    assert criterion["given"] == []
    assert criterion["when"] == ['I choose "Continue as guest"']


def test_a_one_line_story_is_split_into_role_want_and_benefit():
    story = only_story("As a returning customer, I want to pay with a saved card, so that I can check out faster.\n")
    assert (story["title"], story["role"], story["want"], story["benefit"]) == (
        None,
        "returning customer",
        "pay with a saved card",
        "I can check out faster",
    )
    assert (story["start_line"], story["end_line"]) == (1, 1)


def test_a_story_wrapped_over_lines_of_one_paragraph_is_read_whole_and_stops_at_the_sentence_end():
    story = only_story(
        "As an admin I want to export all refunds of a\nmonth as CSV so that I can hand them\nto accounting.\n"
        "This paragraph goes on about something else.\n"
    )
    assert story["role"] == "admin"
    assert story["want"] == "export all refunds of a month as CSV"
    assert story["benefit"] == "I can hand them to accounting"
    assert story["end_line"] == 3


def test_title_lines_criteria_headings_and_inline_ac_labels_are_all_recognised():
    text = """**Title:** Reset a forgotten password

* As a registered user
* I want to reset my password by e-mail

AC:
- Given I requested a reset link
- When I open the link after 24 hours
- Then I am told the link has expired

#### AC2 Link works once
When I open the link a second time
Then I am told it was already used

Scenario: Strong password
When I choose "1234"
Then:
- the password is refused
- I see the password rules
"""
    story = only_story(text)
    assert story["title"] == "Reset a forgotten password"
    assert (story["role"], story["want"]) == ("registered user", "reset my password by e-mail")
    names = [c["name"] for c in story["acceptance_criteria"]]
    assert names == [None, "Link works once", "Strong password"]
    assert story["acceptance_criteria"][0]["given"] == ["I requested a reset link"]
    assert story["acceptance_criteria"][2]["then"] == ["the password is refused", "I see the password rules"]
    assert (story["start_line"], story["end_line"]) == (1, 19)


def test_a_chinese_story_is_recognised_with_full_width_punctuation():
    stories, quarantined = sample("会员积分.md")
    assert quarantined == []
    story = stories["下单获得积分"]
    assert (story["language"], story["role"], story["want"], story["benefit"]) == (
        "zh",
        "会员",
        "在每次下单后获得积分",
        "以后兑换优惠券",
    )
    assert story["acceptance_criteria"] == [
        {
            "name": "按订单金额累计积分",
            "given": ["我是已登录的会员", "购物车金额为 100 元"],
            "when": ["我完成支付"],
            "then": ["我的账户增加 100 积分", "我收到积分到账通知"],
        }
    ]


def test_a_chinese_story_over_three_lines_reads_numbered_steps_and_the_when_clause_closed_by_shi():
    stories, _ = sample("会员积分.md")
    story = stories["使用积分抵扣"]
    assert (story["role"], story["want"], story["benefit"]) == ("会员", "使用积分抵扣订单金额", "节省开支")
    (criterion,) = story["acceptance_criteria"]
    assert criterion == {
        "name": "积分足够时抵扣",
        "given": ["我的账户有 500 积分"],
        "when": ["我在结算页选择使用积分"],
        "then": ["订单金额减少 5 元"],
    }


def test_chinese_keywords_work_with_a_colon_a_comma_or_nothing_after_them():
    text = """## 用户故事：积分兑换
作为：回头客，我想要：用积分兑换优惠券，这样我可以少花钱。

验收标准如下：
- 假如：我有 1000 积分
- 而且 积分未过期
- 当前版本只支持整百兑换
- 当我兑换一张优惠券时
- 于是，积分减少 1000
- 且优惠券出现在我的账户里
"""
    story = only_story(text)
    assert (story["role"], story["want"], story["benefit"]) == ("回头客", "用积分兑换优惠券", "我可以少花钱")
    assert story["acceptance_criteria"] == [
        {
            "name": None,
            "given": ["我有 1000 积分", "积分未过期"],
            "when": ["我兑换一张优惠券"],
            "then": ["积分减少 1000", "优惠券出现在我的账户里"],
        }
    ]


def test_a_story_without_i_want_is_quarantined_and_the_next_story_still_yields():
    text = """## Story: Refunds
As a customer
so that I get my money back

## Story: Audit refunds
As an auditor, I want to list refunds, so that I can check them.

## 用户故事：退款
作为会员
以便拿回货款
"""
    stories, quarantined = extract_user_stories(text, "docs", "refunds.md")
    assert [s["title"] for s in stories] == ["Audit refunds"]
    assert [(q.item, q.reason) for q in quarantined] == [
        ("Refunds", 'story has a role but no "I want" clause'),
        ("退款", 'story has a role but no "I want" clause'),
    ]
    assert all((q.source, q.path, q.stage) == ("docs", "refunds.md", "user_stories") for q in quarantined)


def test_a_criterion_without_then_quarantines_its_story_with_the_reason_and_keeps_the_others():
    text = """## Story: Saved card
As a customer, I want to pay with a saved card.

### Acceptance criteria
AC1: Default card
Given I have a saved card
When I confirm the order
Then the order is paid

AC2: Expired card
Given my card has expired
When I confirm the order

## Story: Guest
As a visitor, I want to check out as a guest.

AC1: Guest checkout
When I choose guest checkout
Then I only enter an e-mail address
"""
    stories, quarantined = extract_user_stories(text, "docs", "cards.md")
    assert [s["title"] for s in stories] == ["Guest"]
    assert quarantined == [
        Quarantined("docs", "cards.md", "user_stories", "acceptance criterion 'AC2' has no Then step", "Saved card")
    ]


@pytest.mark.parametrize(
    ("criteria", "reason"),
    [
        ("AC3: Card declined\nThe customer sees an error\n", "acceptance criterion 'AC3' has no Given/When/Then steps"),
        (
            "Acceptance criteria\n- Given a saved card\n- And it is valid\n",
            "acceptance criterion 'AC1' has no When or Then step",
        ),
        (
            "Acceptance criteria:\nAnd it is valid\nWhen I pay\nThen it works\n",
            "acceptance criterion 'AC1' has 'And' before any Given/When/Then step",
        ),
        ("Scenario: Declined\nGiven a card\nThen it is refused\n", "acceptance criterion 'Declined' has no When step"),
    ],
)
def test_a_half_written_criterion_is_named_in_the_reason(criteria: str, reason: str):
    stories, quarantined = extract_user_stories(f"As a customer I want to pay\n\n{criteria}", "docs", "pay.md")
    assert stories == []
    assert [(q.item, q.reason) for q in quarantined] == [("line 1", reason)]


def test_a_story_whose_as_a_names_nobody_is_quarantined_with_that_reason():
    stories, quarantined = extract_user_stories("## Story: Anonymous\nAs a, I want to pay.\n", "docs", "anon.md")
    assert stories == []
    assert [(q.item, q.reason) for q in quarantined] == [("Anonymous", 'story has "As a" but no role after it')]


def test_prose_without_stories_yields_nothing():
    assert extract_user_stories((REQUIREMENTS / "README.md").read_text(encoding="utf-8"), "docs", "README.md") == (
        [],
        [],
    )
    prose = "As a result, we shipped it.\nGiven the complexity, we wait.\nWhen ready, then go.\n当前版本不支持退款。\n"
    assert extract_user_stories(prose, "docs", "notes.md") == ([], [])


def test_a_story_inside_a_code_block_is_an_example_not_a_requirement():
    text = "# How to write stories\n\n```markdown\nAs a customer, I want to pay, so that I can leave.\n```\n"
    assert extract_user_stories(text, "docs", "howto.md") == ([], [])


def test_every_record_matches_the_schema_and_its_id_is_the_hash_of_source_path_and_title():
    for name in ("checkout-stories.md", "会员积分.md"):
        stories, _ = sample(name)
        for title, story in stories.items():
            assert validation_errors("user_story", story) == []
            assert story["story_id"] == hashlib.sha256(f"docs\0{name}\0{title}".encode()).hexdigest()[:16]
    untitled = only_story("As a customer, I want to pay.\n")
    assert untitled["story_id"] == hashlib.sha256(b"docs\0stories.md\0customer\0pay").hexdigest()[:16]


def test_a_second_story_with_the_same_title_is_quarantined_as_a_duplicate():
    text = "## Story: Pay\nAs a customer, I want to pay.\n\n## Story: Pay\nAs a guest, I want to pay too.\n"
    stories, quarantined = extract_user_stories(text, "docs", "dup.md")
    assert [s["role"] for s in stories] == ["customer"]
    assert [(q.item, q.reason) for q in quarantined] == [("Pay", "same title as the story at line 1")]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "\n\n   \n",
        "#\n###\n- \n* \n**\n>\n> As\nAS A\nAC\nAC1\nScenario:\nGiven\nWhen\nThen\n作为\n我想\n当\n\x00\r\n",
        "As a " + "very " * 200_000 + "long role",
        "#" * 50 + " " * 200_000 + "x",
        "As a user I want to pay\nAC1: x\n" + "Given a\n" * 5_000 + "When b\n",
        "| Given | When | Then |\n|---|---|---|\n~~~\nAs a user, I want x\n",
    ],
)
def test_odd_or_huge_input_never_raises(text: str):
    stories, quarantined = extract_user_stories(text, "docs", "odd.md")
    assert all(validation_errors("user_story", s) == [] for s in stories)
    assert all(q.stage == "user_stories" and q.reason for q in quarantined)
    assert not any(q.reason.startswith("could not read user stories") for q in quarantined)
