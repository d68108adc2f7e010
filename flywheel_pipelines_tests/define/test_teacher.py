"""Step 3 (data): a teacher behind an OpenAI-compatible endpoint distils validated examples, cached, within limits."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from flywheel_pipelines.define.distil.self_instruct import expand_topics
from flywheel_pipelines.define.distil.teacher import Teacher, TeacherCache, TeacherConfig, TeacherPrompt
from flywheel_pipelines_tests.openai_wire import OpenAIWireServer, WireError

MakeTeacher = Callable[..., Teacher]


@pytest.fixture
def make_teacher(tmp_path: Path) -> Iterator[MakeTeacher]:
    """A Teacher on `server` with a cache under tmp_path; config fields can be overridden."""
    made: list[Teacher] = []

    def make(server: OpenAIWireServer, cache: str = "teacher.sqlite", **config: object) -> Teacher:
        settings = {"base_url": server.base_url, "model": "teacher-7b", "max_retries": 0, "timeout_s": 5.0} | config
        teacher = Teacher(TeacherConfig(**settings), TeacherCache(tmp_path / cache))
        made.append(teacher)
        return teacher

    yield make
    for teacher in made:
        teacher.close()


def last_user_message(request: dict) -> str:
    return request["messages"][-1]["content"]


def words(text: str) -> int:
    return len(text.split())


def docstring_prompts(*names: str) -> list[TeacherPrompt]:
    system = "Reply with one line: DOC: followed by a docstring."
    return [TeacherPrompt(f"curated_asset:{name} / docstring_generation", system, f"Document {name}") for name in names]


def strip_doc(text: str) -> str:
    return text.strip().removeprefix("DOC:").strip()


def needs_a_sentence(answer: str) -> list[str]:
    return [] if answer.endswith(".") else ["The docstring must be a sentence ending with a period."]


def test_distillation_through_a_local_server_returns_validated_answers_in_prompt_order_with_tokens_and_cost(
    make_teacher: MakeTeacher,
):
    def respond(request: dict) -> str:
        name = last_user_message(request).split()[-1]
        time.sleep({"cart_total": 0.15, "add_item": 0.05}.get(name, 0.0))  # the first prompt answers last
        return f"DOC: Compute {name}."

    with OpenAIWireServer(respond) as server:
        teacher = make_teacher(server, input_cost_per_million=2.0, output_cost_per_million=10.0)
        prompts = docstring_prompts("cart_total", "add_item", "remove_item")
        results, report = teacher.distil(prompts, needs_a_sentence, strip_doc)

    assert [r.key for r in results] == [p.key for p in prompts]
    assert [r.output for r in results] == ["Compute cart_total.", "Compute add_item.", "Compute remove_item."]
    assert all(r.attempts == 1 and not r.cached and not r.errors for r in results)
    prompt_tokens = sum(words(p.system) + words(p.user) for p in prompts)
    completion_tokens = 3 * words("DOC: Compute x.")
    assert (report.prompts, report.succeeded, report.failed) == (3, 3, 0)
    assert (report.requests, report.cache_hits, report.retries, report.repairs) == (3, 0, 0, 0)
    assert (report.prompt_tokens, report.completion_tokens) == (prompt_tokens, completion_tokens)
    assert report.cost_usd == pytest.approx((prompt_tokens * 2.0 + completion_tokens * 10.0) / 1e6)
    assert report.as_metadata()["succeeded"] == 3 and server.requests[0]["model"] == "teacher-7b"


def test_a_rerun_of_the_same_prompts_is_served_from_the_persistent_cache_without_a_request(make_teacher: MakeTeacher):
    def respond(request: dict) -> str:
        repairing = "does not pass validation" in last_user_message(request)
        return "DOC: Compute it." if repairing or "add_item" in last_user_message(request) else "DOC: Compute it"

    prompts = docstring_prompts("cart_total", "add_item")
    with OpenAIWireServer(respond) as server:
        first, first_report = make_teacher(server).distil(prompts, needs_a_sentence, strip_doc)
        turns = len(server.requests)
        # A new process: a new Teacher and cache object on the same file.
        again, report = make_teacher(server).distil(prompts, needs_a_sentence, strip_doc)

    assert turns == 3 and first_report.requests == 3 and first_report.repairs == 1
    assert len(server.requests) == turns, "the re-run must not reach the endpoint"
    assert [r.output for r in again] == [r.output for r in first] == ["Compute it.", "Compute it."]
    assert all(r.cached for r in again) and not any(r.cached for r in first)
    assert (report.requests, report.cache_hits, report.repairs) == (0, turns, 1)
    assert (report.prompt_tokens, report.completion_tokens, report.cost_usd) == (0, 0, 0.0)


def test_an_invalid_answer_is_repaired_with_the_validators_errors_and_one_that_never_validates_fails(
    make_teacher: MakeTeacher,
):
    def respond(request: dict) -> str:
        stubborn = "stubborn" in request["messages"][1]["content"]
        repairing = "does not pass validation" in last_user_message(request)
        return "DOC: Compute the total." if repairing and not stubborn else "DOC: compute the total"

    with OpenAIWireServer(respond) as server:
        teacher = make_teacher(server, repair_attempts=2)
        (repaired,), report = teacher.distil(docstring_prompts("cart_total"), needs_a_sentence, strip_doc)
        first_turns = list(server.requests)
        (failed,), failed_report = teacher.distil(docstring_prompts("stubborn"), needs_a_sentence, strip_doc)

    assert repaired.output == "Compute the total." and repaired.attempts == 2
    assert (report.repairs, report.requests, report.succeeded) == (1, 2, 1)
    repair_turn = first_turns[1]["messages"]
    assert [m["role"] for m in repair_turn] == ["system", "user", "assistant", "user"]
    assert repair_turn[2]["content"] == "DOC: compute the total"
    assert "- The docstring must be a sentence ending with a period." in repair_turn[3]["content"]

    assert failed.output is None and failed.attempts == 3
    assert failed.errors == ["The docstring must be a sentence ending with a period."]
    assert (failed_report.failed, failed_report.repairs, failed_report.requests) == (1, 2, 3)


@pytest.mark.parametrize("status", [429, 500, 503])
def test_throttled_and_failing_responses_are_retried_with_back_off_and_counted(make_teacher: MakeTeacher, status: int):
    with OpenAIWireServer(lambda request: "DOC: Compute it.") as server:
        server.fail_next(2, status=status)
        started = time.monotonic()
        (result,), report = make_teacher(server, max_retries=3).distil(
            docstring_prompts("a"), needs_a_sentence, strip_doc
        )

    assert result.output == "Compute it." and result.attempts == 1
    assert (report.requests, report.retries, len(server.requests)) == (1, 2, 3)
    assert time.monotonic() - started < 2.0, "the server's retry-after must override the SDK's default back-off"


def test_requests_in_flight_never_exceed_max_concurrency(make_teacher: MakeTeacher):
    def respond(request: dict) -> str:
        time.sleep(0.1)  # long enough that every worker's request overlaps the others
        return "DOC: Compute it."

    with OpenAIWireServer(respond) as server:
        names = [f"unit_{i}" for i in range(8)]
        results, _ = make_teacher(server, max_concurrency=3).distil(docstring_prompts(*names), needs_a_sentence)

    assert len(results) == 8 and len(server.requests) == 8
    assert server.max_in_flight == 3, "requests must run concurrently, but no more than max_concurrency at once"


def test_the_key_comes_from_the_configured_variable_and_a_failing_request_does_not_stop_the_others(
    make_teacher: MakeTeacher, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    monkeypatch.setenv("FLYWHEEL_TEACHER_KEY", "sk-test-secret")

    def respond(request: dict) -> str:
        if "broken" in last_user_message(request):
            raise WireError(500, "the teacher crashed")
        return "DOC: Compute it."

    with OpenAIWireServer(respond, expected_api_key="sk-test-secret") as server:
        teacher = make_teacher(server, api_key_env="FLYWHEEL_TEACHER_KEY", max_retries=1)
        results, report = teacher.distil(docstring_prompts("cart_total", "broken", "add_item"), needs_a_sentence)
        monkeypatch.delenv("FLYWHEEL_TEACHER_KEY")
        (unauthorised,), _ = make_teacher(server, "other.sqlite", api_key_env="FLYWHEEL_TEACHER_KEY").distil(
            docstring_prompts("cart_total"), needs_a_sentence
        )

    assert [r.output for r in results] == ["DOC: Compute it.", None, "DOC: Compute it."]
    broken = results[1]
    assert broken.attempts == 1 and "500" in broken.errors[0] and "the teacher crashed" in broken.errors[0]
    assert (report.succeeded, report.failed, report.retries) == (2, 1, 1)
    assert sum("broken" in last_user_message(r) for r in server.requests) == 2, "one try and one retry"
    assert unauthorised.output is None and "401" in unauthorised.errors[0]
    assert b"sk-test-secret" not in (tmp_path / "teacher.sqlite").read_bytes(), "the key is never stored"


def test_self_instruct_proposes_new_topics_and_rejects_duplicates_of_seeds_existing_titles_and_each_other(
    make_teacher: MakeTeacher,
):
    seeds = ["User registers an account with an email", "用户登录系统"]
    existing = ["Shopper adds an item to the cart"]
    answer = "\n".join(
        [
            "Here are 6 new topics:",
            "1. user registers an account with an e-mail!",  # a seed, differently written
            "2. A shopper adds an item to their cart",  # an existing title, rephrased
            "3. 用户登录到系统",  # the Chinese seed, rephrased
            '4. "Admin exports monthly sales as CSV"',
            "5. Admin exports the monthly sales as a CSV",  # the previous proposal again
            "6. 管理员重置用户密码",
            "I hope these help!",
        ]
    )
    with OpenAIWireServer(lambda request: answer) as server:
        topics, expansion = expand_topics(
            make_teacher(server), seeds, existing, domain="an online shop", rounds=2, per_round=6
        )

    assert topics == ["Admin exports monthly sales as CSV", "管理员重置用户密码"]
    # Round two hears the same list again: everything is now known.
    assert (expansion.proposed, expansion.accepted, expansion.rejected_as_duplicate) == (12, 2, 10)
    first_prompt = last_user_message(server.requests[0])
    assert all(seed in first_prompt for seed in seeds) and "an online shop" in first_prompt
    assert "Admin exports monthly sales as CSV" in last_user_message(server.requests[1])
    assert expansion.teacher.requests == 2 and expansion.as_metadata()["accepted"] == 2


def test_a_blank_answer_is_a_failure_that_is_not_cached_so_a_rerun_asks_again(make_teacher: MakeTeacher):
    with OpenAIWireServer(lambda request: "   ") as server:
        (first,), report = make_teacher(server).distil(docstring_prompts("total"), validate=lambda _: [])
        (again,), _ = make_teacher(server).distil(docstring_prompts("total"), validate=lambda _: [])
    assert first.output is None and "empty answer" in first.errors[0] and report.failed == 1
    assert again.output is None and len(server.requests) == 2  # asked twice: nothing was cached
