"""Step 3 (data): the task catalogue turns the sample sources into validated instruction datasets — in reverse mode
with no model at all, and through a teacher behind a local OpenAI-compatible server, cached and repaired."""

from __future__ import annotations

import json
import textwrap
from collections import Counter
from pathlib import Path

import pytest

from flywheel_pipelines.define.code_answers import body_parses, extract_code
from flywheel_pipelines.define.datasets import benchmark_texts, decontaminate
from flywheel_pipelines.define.distil.dataset import build_dataset, quarantine_rows
from flywheel_pipelines.define.distil.examples import build_task_examples
from flywheel_pipelines.define.distil.teacher import Teacher, TeacherCache, TeacherConfig
from flywheel_pipelines.define.evaluate.humaneval import humaneval_problems
from flywheel_pipelines.define.tasks import TASKS, load_template, template_versions, text_hash
from flywheel_pipelines.define.tasks.validators import VALIDATORS
from flywheel_pipelines.deliver.training_data import examples_from_feedback
from flywheel_pipelines.discover.api_specs import extract_api_endpoints
from flywheel_pipelines.discover.code_units import extract_code_units
from flywheel_pipelines.discover.crawl import crawl
from flywheel_pipelines.discover.curate import curate
from flywheel_pipelines.discover.sources import Snapshot, SourceSpec
from flywheel_pipelines.discover.user_stories import extract_user_stories
from flywheel_pipelines.schemas import validation_errors
from flywheel_pipelines.settings import TaskSettings
from flywheel_pipelines_tests.conftest import SAMPLES
from flywheel_pipelines_tests.openai_wire import OpenAIWireServer

STORY = """Title: Reorder a past purchase
As a returning customer,
I want to reorder a past purchase,
so that I save time.

AC1: Reorder from the order history
Given I have a delivered order
When I choose reorder
Then its items are added to my basket"""


def only(*enabled: str, **options: dict) -> TaskSettings:
    """Settings with just these tasks enabled."""
    return TaskSettings.model_validate({t: {**options.get(t, {}), "enabled": t in enabled} for t in TASKS})


@pytest.fixture(scope="module")
def curated() -> list[dict]:
    files = crawl(Snapshot("samples", SAMPLES), SourceSpec(name="samples", path=SAMPLES)).files
    units = extract_code_units(files).units
    endpoints, _ = extract_api_endpoints([f for f in files if f["language"] in ("yaml", "json")])
    stories = []
    for f in files:
        if f["language"] == "markdown":
            stories.extend(extract_user_stories(f["text"], f["source"], f["path"])[0])
    return curate(units, endpoints, stories).records


def test_every_task_of_the_catalogue_is_a_versioned_template_file_with_a_validator():
    for task in TASKS:
        template = load_template(task)
        assert template.name == task and template.version >= 1
        assert template.validator in VALIDATORS and template.output_format.strip()
    assert set(template_versions()) == set(TASKS)


def test_all_six_tasks_produce_validated_examples_from_the_samples_in_reverse_mode(curated: list[dict]):
    tasks = TaskSettings()
    for task in TASKS:
        built = build_task_examples(task, curated, tasks)
        assert built.examples, f"{task} produced no examples"
        assert built.rejected == [], f"{task}: {built.rejected[:3]}"
        for example in built.examples:
            assert not validation_errors("instruction", example)
            assert example["generation"] == "reverse" and example["template_version"] == 1
            context = json.loads(example["meta"])
            assert VALIDATORS[load_template(task).validator](example["output"], context) == []
    languages = Counter(
        json.loads(e["meta"])["language"] for e in build_task_examples("code_generation", curated, tasks).examples
    )
    assert set(languages) == {"python", "java", "kotlin", "typescript", "javascript", "go"}


def test_examples_read_like_the_work_they_teach(curated: list[dict]):
    tasks = TaskSettings()
    by_task = {t: build_task_examples(t, curated, tasks).examples for t in TASKS}
    (place_order,) = [e for e in by_task["code_generation"] if "`OrderService.place_order`" in e["instruction"]]
    assert "def place_order(self, order_id: str, today: date) -> Decimal:" in place_order["input"]
    assert "# Enclosing class" in place_order["input"] and place_order["output"].startswith("order = self.find_order")
    under_test = {e["input"].split("// Under test")[-1]: e for e in by_task["test_generation"]}
    (tests_for_go,) = [e for code, e in under_test.items() if "func (s *Store) Reserve" in code]
    assert "func TestReserve(t *testing.T)" in tests_for_go["output"]
    docs = by_task["docstring_generation"]
    (java_doc,) = [e for e in docs if e["input"].startswith("```java\npublic Order placeOrder(")]
    assert java_doc["output"].startswith("Creates an order for the customer") and "/**" not in java_doc["input"]
    chinese = [e for e in by_task["user_story"] if e["output"].startswith("标题：")]
    assert chinese and all(e["instruction"].startswith("为以下主题编写") for e in chinese)
    assert any(e["input"].startswith("Feature: pets") for e in by_task["api_design"])
    paired = {
        e["input"].splitlines()[4].split("|")[1].strip(): e["output"].splitlines()[0]
        for e in by_task["api_to_user_story"]
    }
    assert paired["/baskets/{basketId}/payments"] == "Title: Checkout with a saved card"
    assert paired["/guest-checkouts"] == "Title: Guest checkout"


def test_validators_refuse_what_a_model_gets_wrong():
    python = {"language": "python", "signature": "def total(self) -> int:", "kind": "method"}
    assert VALIDATORS["code_body"]("return (", python)
    assert VALIDATORS["code_body"]("```python\nreturn 1\n```", python) == []
    java = {"language": "java", "signature": "public int total()", "kind": "method"}
    assert VALIDATORS["code_body"]("return items.size();", java) == []
    assert VALIDATORS["code_body"]("return items.size(", java)
    assert VALIDATORS["tests"]("def helper():\n    return 1", {"language": "python"})  # no test, no assertion
    assert VALIDATORS["docstring"]('"""Returns the total."""', {})  # quotes kept
    assert VALIDATORS["user_story"]("Title: x\nAs a user,\nI want to pay.", {})  # no acceptance criteria
    verb_path = (
        "| API | Method | Description | Request | Response | Error response |\n| --- | --- | --- | --- | --- | --- |\n"
        "| /createPost | POST | Create a post | body: {title: string} | 201: {id: string} | 400: {message: string} |"
    )
    assert any("verb-in-path" in e for e in VALIDATORS["api_design"](verb_path, {}))


def test_a_users_edit_replaces_the_generated_answer_and_takes_its_group_to_train(curated: list[dict]):
    tasks = TaskSettings(eval_fraction=0.99)  # nearly everything would be eval
    generated = build_task_examples("code_generation", curated, tasks).examples
    target = next(e for e in generated if "`round_money`" in e["instruction"])
    edit = {
        "event_id": "e1",
        "kind": "edit",
        "task": "implement_method",  # the task's old name, as events stored before the rename carry it
        "instruction": target["instruction"],
        "input": target["input"],
        "completion": "return 0",
        "edited_completion": "return amount.quantize(Decimal('0.01'))\n",
    }
    broken = {**edit, "event_id": "e2", "input": target["input"] + " ", "edited_completion": "return ("}
    feedback = examples_from_feedback([edit, broken, {**edit, "event_id": "e3", "kind": "accept"}])
    build = build_dataset(curated, feedback, tasks, benchmarks={}, rebuild=["code_generation"])
    (mine,) = [e for e in build.examples if e["example_id"] == target["example_id"]]
    assert mine["origin"] == "feedback:e1" and mine["output"].startswith("return amount.quantize")
    assert mine["split"] == "train" and mine["group"] == target["group"]
    (rejected,) = build.built["code_generation"].rejected
    assert rejected.origin == "feedback:e2" and "fails validation" in rejected.reason


def test_rebuilding_one_task_keeps_the_others_as_stored(curated: list[dict]):
    tasks = TaskSettings()
    first = build_dataset(curated, [], tasks, benchmarks={})
    stored = [dict(e, output=e["output"] + "\n") if e["task"] == "api_design" else e for e in first.examples]
    again = build_dataset(curated, [], tasks, benchmarks={}, rebuild=["user_story"], stored=stored)
    assert sorted(again.built) == ["user_story"] and again.kept["api_design"] > 0
    kept = [e for e in again.examples if e["task"] == "api_design"]
    assert kept and all(e["output"].endswith("\n") for e in kept)
    with pytest.raises(ValueError, match="cannot rebuild"):
        build_dataset(curated, [], tasks, benchmarks={}, rebuild=["no_such_task"])


def test_a_train_example_that_leaks_a_humaneval_solution_is_removed_and_quarantined(curated: list[dict]):
    benchmarks = benchmark_texts()
    leak = {
        "kind": "code_unit",
        "source": "samples",
        "path": "shop/leak.py",
        "asset_id": "f" * 16,
        "payload": json.dumps(
            {
                "unit_id": "e" * 16,
                "language": "python",
                "kind": "function",
                "qualified_name": "has_close_elements",
                "signature": "def has_close_elements(numbers, threshold):",
                "decorators": [],
                "docstring": None,
                "class_summary": None,
                "body": textwrap.dedent(humaneval_problems(1)[0]["canonical_solution"]).strip("\n"),
                "is_test": False,
                "tested_units": [],
                "source": "samples",
                "path": "shop/leak.py",
                "start_line": 1,
            }
        ),
    }
    tasks = TaskSettings(eval_fraction=0.01)
    build = build_dataset([*curated, leak], [], tasks, benchmarks=benchmarks, rebuild=["code_generation"])
    assert not any("has_close_elements" in e["instruction"] for e in build.examples)
    rows = [q for q in quarantine_rows(build) if "has_close_elements" in q.path or "HumanEval/0" in q.reason]
    assert rows and rows[0].reason.startswith("decontaminated:") and "HumanEval/0" in rows[0].reason


def _teacher_answer(request: dict) -> str:
    """A scripted teacher: a first answer that breaks the validator, then a valid one once it sees the errors."""
    user = request["messages"][-1]["content"]
    if "does not pass validation" in user:
        if "user story" in request["messages"][1]["content"].lower():
            return f"Sure! Here it is:\n\n{STORY}"
        return "Computes the value the name promises."
    if "documentation comment" in user:
        return '"""Computes the value."""'  # quotes: refused, then repaired
    if "Propose" in user or "new topics" in user.lower():
        return "1. Reorder a past purchase\n2. Track a parcel\n3. Track a parcel online"
    return "Title: only a title"  # a story without its narrative: refused, then repaired


def test_the_teacher_answers_what_the_assets_do_not_and_a_rerun_is_a_cache_hit(curated: list[dict], tmp_path: Path):
    tasks = only("user_story", "docstring_generation", user_story={"topics": ["Reorder a past purchase"]})
    with OpenAIWireServer(_teacher_answer) as server:
        config = TeacherConfig(base_url=server.base_url, model="teacher", max_concurrency=2, repair_attempts=1)

        def run() -> tuple:
            teacher = Teacher(config, TeacherCache(tmp_path / "teacher.db"))
            try:
                return build_dataset(
                    curated, [], tasks, benchmarks={}, teacher=teacher, rebuild=["user_story", "docstring_generation"]
                )
            finally:
                teacher.close()

        first = run()
        requests_after_first = len(server.requests)
        second = run()
    taught = [e for e in first.examples if e["generation"] == "teacher"]
    assert {e["task"] for e in taught} == {"user_story", "docstring_generation"}
    (story,) = [e for e in taught if e["task"] == "user_story"]
    assert story["output"] == STORY and story["input"] == "Reorder a past purchase"  # normalised: prose dropped
    report = first.built["user_story"].teacher
    assert report.repairs == 1 and report.succeeded == 1 and report.prompt_tokens > 0
    assert requests_after_first > 0 and len(server.requests) == requests_after_first  # the re-run asked nothing
    assert second.built["user_story"].teacher.cache_hits == 2 and second.built["user_story"].teacher.requests == 0
    assert [e["example_id"] for e in second.examples] == [e["example_id"] for e in first.examples]


def test_self_instruct_topics_become_stories_without_duplicates(curated: list[dict], tmp_path: Path):
    tasks = only("user_story", user_story={"topics": ["Reorder a past purchase"], "expand_rounds": 1})
    with OpenAIWireServer(_teacher_answer) as server:
        teacher = Teacher(TeacherConfig(base_url=server.base_url, model="t"), TeacherCache(tmp_path / "t.db"))
        try:
            build = build_dataset(curated, [], tasks, benchmarks={}, teacher=teacher, rebuild=["user_story"])
        finally:
            teacher.close()
    assert build.new_topics["user_story"] == ["Track a parcel"]  # the seed and a near-duplicate are refused
    taught = [e for e in build.built["user_story"].examples if e["generation"] == "teacher"]
    assert sorted(e["input"] for e in taught) == ["Reorder a past purchase", "Track a parcel"]
    # The scripted teacher wrote the same story twice: the train copy of an eval answer does not survive.
    assert len([e for e in build.examples if e["generation"] == "teacher"]) == 1 and build.contamination


def test_generated_bodies_are_checked_for_syntax_in_or_out_of_a_code_fence():
    sig = "def total(self, tax: float=0.0) -> float:"
    assert body_parses(sig, "return 1")
    assert body_parses(sig, extract_code("Sure!\n```python\nx = 1\nreturn x\n```\nThis adds."))
    assert body_parses(sig, "def total(self, tax=0.0):\n    return 2")  # a whole function is fine too
    assert not body_parses(sig, "return (")
    assert not body_parses(sig, "   ")


def _python_unit_record(path: str, name: str, body: str, docstring: str | None = None) -> dict:
    unit = {
        "unit_id": text_hash(path + name),
        "source": "samples",
        "path": path,
        "language": "python",
        "kind": "function",
        "qualified_name": name,
        "signature": f"def {name}() -> None:",
        "decorators": [],
        "docstring": docstring,
        "class_summary": None,
        "body": body,
        "is_test": False,
        "tested_units": [],
        "start_line": 1,
    }
    record = {"kind": "code_unit", "source": "samples", "path": path, "asset_id": text_hash(path), "title": name}
    return {**record, "payload": json.dumps(unit)}


def test_two_files_with_the_same_prompt_keep_one_answer_whatever_the_order_and_quarantine_the_other():
    a = _python_unit_record("scripts/a.py", "main", "print('a')\nreturn None")
    b = _python_unit_record("scripts/b.py", "main", "print('b')\nreturn None")
    tasks = TaskSettings()
    first = build_task_examples("code_generation", [a, b], tasks)
    second = build_task_examples("code_generation", [b, a], tasks)
    assert first.examples == second.examples and len(first.examples) == 1
    (kept,) = first.examples
    assert kept["group"] == "file:samples/scripts/a.py" and kept["output"].startswith("print('a')")
    (dropped,) = first.rejected
    assert dropped.origin == f"curated_asset:{b['asset_id']}" and dropped.reason.startswith("same prompt as")


def test_edits_with_a_short_fence_tag_a_wrapped_signature_or_an_older_wording_are_learnt(curated: list[dict]):
    generated = build_task_examples("code_generation", curated, TaskSettings()).examples
    target = next(e for e in generated if "`round_money`" in e["instruction"])
    wrapped = "```py\ndef add(\n    a: int,\n    b: int,\n) -> int:\n```"
    events = [
        {
            "event_id": "w",
            "kind": "edit",
            "task": "code_generation",
            "instruction": "Implement `add`.",
            "input": wrapped,
            "completion": "",
            "edited_completion": "return a + b",
        },
        {
            "event_id": "old",
            "kind": "edit",
            "task": "implement_method",
            "instruction": "Implement round_money.",
            "input": target["input"],
            "completion": "",
            "edited_completion": "return round(amount, 2)",
        },
        {
            "event_id": "t",
            "kind": "edit",
            "task": "test_generation",
            "instruction": "Write tests.",
            "input": "```rs\nfn f() {}\n```",
            "completion": "",
            "edited_completion": "#[test]\nfn t() {}",
        },
    ]
    build = build_dataset(curated, examples_from_feedback(events), TaskSettings(), benchmarks={})
    learnt = {e["origin"]: e for e in build.examples if e["generation"] == "feedback"}
    assert set(learnt) == {"feedback:w", "feedback:old"}
    assert not any(e["example_id"] == target["example_id"] for e in build.examples)  # replaced by the older wording
    assert learnt["feedback:old"]["group"] == target["group"]
    (rust,) = build.built["test_generation"].rejected
    assert rust.origin == "feedback:t" and "cannot check 'rs' code" in rust.reason


def test_feedback_for_a_task_that_is_not_enabled_is_quarantined_not_lost(curated: list[dict]):
    tasks = TaskSettings.model_validate({"user_story": {"enabled": False}})
    event = {
        "event_id": "s",
        "kind": "edit",
        "task": "user_story",
        "instruction": "Story?",
        "input": "Pay",
        "completion": "",
        "edited_completion": STORY,
    }
    build = build_dataset(curated, examples_from_feedback([event]), tasks, benchmarks={})
    (row,) = [q for q in quarantine_rows(build) if q.source == "feedback"]
    assert row.path == "feedback:s" and "not an enabled task" in row.reason
    assert not validation_errors("quarantined_asset", row.as_record())


def test_a_partial_rebuild_keeps_the_quarantine_rows_of_the_tasks_it_keeps(curated: list[dict]):
    tasks = TaskSettings()
    full = build_dataset(curated, [], tasks, benchmarks={})
    earlier = [
        {"source": "samples", "path": "curated_asset:x", "reason": "reverse answer fails validation: odd", "item": t}
        for t in ("docstring_generation", "user_story")
    ]
    partial = build_dataset(curated, [], tasks, benchmarks={}, rebuild=["user_story"], stored=full.examples)
    rows = quarantine_rows(partial, earlier)
    assert [r.item for r in rows if r.path == "curated_asset:x"] == ["docstring_generation"]
    nothing_stored = build_dataset(curated, [], tasks, benchmarks={}, rebuild=["user_story"], stored=None)
    assert sorted(nothing_stored.built) == sorted(tasks.enabled()) and nothing_stored.kept == {}


def test_chinese_text_counts_in_validators_and_in_decontamination():
    assert VALIDATORS["docstring"]("计算订单的总金额，包括税费和折扣。", {}) == []
    story = "标题：下单获得积分\n作为会员，\n我想要在每次下单后获得积分，\n以便于以后兑换优惠券。"
    eval_example = {
        "example_id": "a" * 16,
        "task": "user_story",
        "origin": "o1",
        "split": "eval",
        "group": "g1",
        "instruction": "写故事",
        "input": "积分",
        "output": story,
    }
    copy = dict(eval_example, example_id="b" * 16, origin="o2", split="train", group="g2", input="下单积分")
    kept, removed = decontaminate([eval_example, copy], {}, ngram=20)
    assert kept == [eval_example] and removed[0].example_id == "b" * 16
