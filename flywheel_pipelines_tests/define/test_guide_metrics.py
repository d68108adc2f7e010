"""Step 4's guide metrics beyond execution: format validity and chrF/BLEU per task, memorisation of the training
data and of redacted secrets, repository problems built from the team's own tests, and the promotion gate with its
history table (SQLite and the real PostgreSQL server)."""

from __future__ import annotations

import textwrap

import pytest

from flywheel_pipelines.define.evaluate.memorisation import (
    Probe,
    SpanIndex,
    mask_secrets,
    pick_probes,
    redacted_secrets,
    score_probe,
)
from flywheel_pipelines.define.evaluate.repository import answer_body, place_body
from flywheel_pipelines.define.evaluate.scoring import comparison_table
from flywheel_pipelines.define.evaluate.task_suites import check_answer, score_task
from flywheel_pipelines.define.promotion import PromotionHistory, judge
from flywheel_pipelines_tests.deliver.test_feedback_store import (
    POSTGRES_SERVER,
    _drop_postgres_database,
    _postgres_database,
)

API_TABLE = textwrap.dedent(
    """\
    # Orders API

    | API | Method | Description | Request | Response | Error response |
    |---|---|---|---|---|---|
    | /orders/{id} | GET | Get an order | path: {id: string} | 200: {id: string, total: number} | 404: {code?: string} |
    """
)


def _row(model, suite, metric, value, n=10, ref=None):
    return {"model": model, "model_ref": ref or model, "suite": suite, "metric": metric, "value": value, "n": n}


# --- per-task suites --------------------------------------------------------------------------------------------


def test_api_design_answers_are_checked_as_a_table_and_by_the_rest_lint():
    checks, errors = check_answer("api_design", API_TABLE, {})
    assert checks == {"format_valid": True, "api_table_valid": True, "rest_lint_clean": True}, errors
    verb_path = API_TABLE.replace("| /orders/{id} | GET |", "| /createOrder | POST |").replace(
        "path: {id: string}", "body: {sku: string}"
    )
    checks, errors = check_answer("api_design", verb_path, {})
    assert checks["api_table_valid"] and not checks["rest_lint_clean"] and not checks["format_valid"]
    assert any("createOrder" in e for e in errors)
    checks, _ = check_answer("api_design", "Sure! Here is an API: GET /orders", {})
    assert checks == {"format_valid": False, "api_table_valid": False, "rest_lint_clean": False}


def test_a_task_suite_scores_validity_and_chrf_bleu_against_the_reference():
    context = '{"language": "python", "signature": "def add(a, b):", "kind": "function"}'
    examples = [
        {"example_id": "e1", "output": "return a + b", "meta": context},
        {"example_id": "e2", "output": "total = a + b\nreturn total", "meta": context},
    ]
    metrics, scored = score_task("code_generation", examples, ["```python\nreturn a + b\n```", "return a +"])
    assert metrics["format_valid"] == 0.5
    assert [s.checks["format_valid"] for s in scored] == [True, False]
    assert 0 < metrics["chrf"] < 100 and 0 <= metrics["bleu"] < 100
    perfect, _ = score_task("code_generation", examples, [e["output"] for e in examples])
    assert perfect["chrf"] == pytest.approx(100) and perfect["bleu"] == pytest.approx(100)
    assert perfect["format_valid"] == 1.0


# --- memorisation ------------------------------------------------------------------------------------------------

TRAINING_ANSWER = " ".join(f"word{i}" for i in range(60))


def test_a_continuation_that_repeats_a_long_training_span_is_memorised_and_a_short_one_is_not():
    index = SpanIndex([TRAINING_ANSWER], span_words=24)
    probe = Probe("e1", "Explain", "", " ".join(f"word{i}" for i in range(16)))
    copied = " ".join(f"word{i}" for i in range(16, 46))  # 30 training words in a row
    result = score_probe(probe, copied, index, secrets=set())
    assert result.memorised and result.copied_words == 30 and result.total_words == 30
    short = " ".join(f"word{i}" for i in range(16, 30)) + " and then something else entirely new"
    assert not score_probe(probe, short, index, set()).memorised


def test_probes_cut_long_training_answers_and_skip_short_ones():
    examples = [
        {"example_id": "long", "instruction": "i", "input": "x", "output": TRAINING_ANSWER},
        {"example_id": "short", "instruction": "i", "input": "x", "output": "too short to continue"},
    ]
    probes = pick_probes(examples, count=5, prefix_words=16, span_words=24)
    assert [p.example_id for p in probes] == ["long"]
    assert probes[0].prefix == " ".join(f"word{i}" for i in range(16))


def test_a_redacted_secret_said_back_is_counted_as_a_leak_and_masked_in_what_is_logged():
    raw = (
        'DB_URL = "postgresql://shop:planted-pg-secret@db.internal:5432/shop"\nAWS = "AKIAIOSFODNN7EXAMPLE"\n'
        'password = "test"\nDB_PASS=x\n{"password": "password"}\n'  # fixtures: too plain to tell from words
    )
    secrets = redacted_secrets([raw])
    assert secrets == {"planted-pg-secret", "AKIAIOSFODNN7EXAMPLE"}
    index = SpanIndex([TRAINING_ANSWER], span_words=24)
    probe = Probe("e1", "i", "", "x")
    said = 'key = "AKIAIOSFODNN7EXAMPLE"  # and a test, x = 1'
    assert score_probe(probe, said, index, secrets).leaked_secrets == 1
    assert mask_secrets(said, secrets) == 'key = "<SECRET:leaked>"  # and a test, x = 1'
    assert score_probe(probe, 'key = "<SECRET:aws_access_key>"', index, secrets).leaked_secrets == 0
    assert score_probe(probe, "AKIAIOSFODNN7EXAMPLE2", index, secrets).leaked_secrets == 0  # another token


# --- repository problems -----------------------------------------------------------------------------------------

MODULE = textwrap.dedent(
    '''\
    class Cart:
        def total(self, prices):
            """Sum of the prices."""
            result = 0
            for p in prices:
                result += p
            return result

        def size(self):
            return 0
    '''
)


def test_a_generated_body_replaces_the_original_and_keeps_the_docstring():
    placed = place_body(MODULE, "total", 2, "return sum(prices)")
    assert '"""Sum of the prices."""\n        return sum(prices)\n\n    def size(self):' in placed
    namespace: dict = {}
    exec(placed, namespace)
    assert namespace["Cart"]().total([1, 2]) == 3
    assert place_body(MODULE, "total", 2, "return (") is None  # does not parse in place
    assert place_body(MODULE, "total", 2, "") is None
    assert place_body(MODULE, "total", 99, "return 1") is None  # no such function there


def test_the_body_is_found_in_any_shape_of_answer():
    assert answer_body("```python\nreturn sum(prices)\n```", "total") == "return sum(prices)"
    assert answer_body("def total(self, prices): return sum(prices)", "total") == "return sum(prices)"
    wrapped = "```python\nimport math\n\nclass Cart:\n    def total(self, prices):\n        '''Sum.'''\n"
    wrapped += "        return math.fsum(prices)\n```"
    assert answer_body(wrapped, "total") == "import math\nreturn math.fsum(prices)"
    placed = place_body(MODULE, "total", 2, answer_body(wrapped, "total"))
    namespace: dict = {}
    exec(placed, namespace)
    assert namespace["Cart"]().total([1.5, 2]) == 3.5


def test_a_body_that_starts_with_a_decorated_helper_is_replaced_whole():
    module = "def outer(x):\n    @staticmethod\n    def inner(y):\n        return y\n    return inner(x)\n"
    placed = place_body(module, "outer", 1, "return x * 2")
    assert placed == "def outer(x):\n    return x * 2\n"


# --- promotion -----------------------------------------------------------------------------------------------------

TOLERANCES = {"humaneval/pass@1": 0.05, "code_generation/format_valid": 0.1}


def test_the_gate_refuses_a_regression_beyond_tolerance_and_names_it():
    scores = [
        _row("candidate", "humaneval", "pass@1", 0.20),
        _row("champion", "humaneval", "pass@1", 0.30),
        _row("candidate", "code_generation", "format_valid", 0.95),
        _row("champion", "code_generation", "format_valid", 1.0),
        _row("candidate", "memorisation", "verbatim_rate", 0.0),
        _row("candidate", "memorisation", "secret_leaks", 0.0),
    ]
    decision = judge(scores, TOLERANCES, memorisation_ceiling=0.2)
    assert not decision.promote
    assert decision.reasons == ["humaneval/pass@1 regressed: candidate 0.200 < champion 0.300 - tolerance 0.05"]
    regressed = {c["metric"]: c["regressed"] for c in decision.table()}
    assert regressed == {
        "code_generation/format_valid": False,  # 0.95 is within 0.1 of 1.0
        "humaneval/pass@1": True,
        "memorisation/verbatim_rate": False,
        "memorisation/secret_leaks": False,
    }


def test_the_gate_admits_a_candidate_within_tolerance_or_without_a_champion():
    within = [_row("candidate", "humaneval", "pass@1", 0.26), _row("champion", "humaneval", "pass@1", 0.30)]
    assert judge(within, TOLERANCES, 0.2).promote
    first = [_row("candidate", "humaneval", "pass@1", 0.0), _row("base", "humaneval", "pass@1", 0.1)]
    decision = judge(first, TOLERANCES, 0.2)
    assert decision.promote and decision.reasons[0] == "no champion yet"
    assert any("code_generation/format_valid not measured" in r for r in decision.reasons)


def test_the_gate_refuses_scores_of_another_version_and_admits_the_champion_itself():
    scores = [
        _row("candidate", "humaneval", "pass@1", 0.5, ref="v2"),
        _row("champion", "humaneval", "pass@1", 0.1, ref="v1"),
    ]
    assert judge(scores, TOLERANCES, 0.2, candidate_version="2", champion_version="1").promote
    stale = judge(scores, TOLERANCES, 0.2, candidate_version="3", champion_version="1")
    assert not stale.promote and stale.reasons[0].startswith("eval_scores scored v2, not the candidate v3")
    moved = judge(scores, TOLERANCES, 0.2, candidate_version="2", champion_version="4")
    assert not moved.promote and moved.reasons[0].startswith("the champion is v4 but eval_scores compared with v1")
    itself = judge(scores, TOLERANCES, 0.2, candidate_version="2", champion_version="2")
    assert itself.promote and itself.reasons == ["v2 is already the champion"]


def test_the_gate_refuses_memorisation_above_the_ceiling_and_any_secret_leak():
    scores = [
        _row("candidate", "humaneval", "pass@1", 0.5),
        _row("candidate", "memorisation", "verbatim_rate", 0.5),
        _row("candidate", "memorisation", "secret_leaks", 1.0),
    ]
    decision = judge(scores, TOLERANCES, memorisation_ceiling=0.2)
    assert not decision.promote
    assert decision.reasons == [
        "memorisation/verbatim_rate 0.500 is above the ceiling 0.2",
        "memorisation/secret_leaks is 1: completions reproduce redacted secrets",
    ]


def _exercise_history(history: PromotionHistory) -> None:
    refused = judge(
        [_row("candidate", "humaneval", "pass@1", 0.0), _row("champion", "humaneval", "pass@1", 0.5)], TOLERANCES, 0.2
    )
    promoted = judge([_row("candidate", "humaneval", "pass@1", 0.5)], TOLERANCES, 0.2)
    history.record("model-a", "1", None, promoted, "run1", "dagster1")
    history.record("model-a", "2", "1", refused, "run2", "dagster2")
    history.record("model-b", "1", None, promoted)
    rows = history.decisions("model-a")
    assert [(r["candidate_version"], r["champion_version"], r["promoted"]) for r in rows] == [
        ("2", "1", False),
        ("1", None, True),
    ]
    assert "humaneval/pass@1 regressed" in rows[0]["reason"] and rows[0]["mlflow_run_id"] == "run2"
    assert len(history.decisions()) == 3


def test_the_promotion_history_keeps_every_decision_in_sqlite(tmp_path):
    history = PromotionHistory(f"sqlite:///{tmp_path}/history.db")
    try:
        _exercise_history(history)
    finally:
        history.dispose()


@pytest.mark.postgres
def test_the_promotion_history_keeps_every_decision_in_postgresql():
    name = _postgres_database()
    history = PromotionHistory(f"{POSTGRES_SERVER}/{name}")
    try:
        _exercise_history(history)
    finally:
        history.dispose()
        _drop_postgres_database(name)


def test_the_comparison_table_puts_models_side_by_side_with_the_change():
    scores = [
        _row("candidate", "humaneval", "pass@1", 0.25, ref="v3"),
        _row("base", "humaneval", "pass@1", 0.10, ref="SmolLM2"),
        _row("champion", "humaneval", "pass@1", 0.20, ref="v2"),
        _row("candidate", "code_generation", "chrf", 41.5, ref="v3"),
    ]
    table = comparison_table(scores).splitlines()
    assert table[0] == "| suite | metric | n | base (SmolLM2) | candidate (v3) | champion (v2) | candidate - champion |"
    assert "| humaneval | pass@1 | 10 | 0.100 | 0.250 | 0.200 | +0.050 |" in table
    assert "| code_generation | chrf | 10 |  | 41.5 |  |  |" in table


def test_a_repository_problem_runs_the_teams_own_tests_against_the_models_body_in_the_sandbox():
    """The sample shop: `OrderService.place_order` is held out and `test_place_order_adds_tax` exercises it."""
    from flywheel_pipelines.define.evaluate.repository import RepositoryProblem, runnable_problems
    from flywheel_pipelines.define.evaluate.sandbox import run_programs
    from flywheel_pipelines_tests.conftest import SAMPLES

    files = {f"shop/{name}": (SAMPLES / "shop" / name).read_text() for name in ("orders.py", "test_orders.py")}
    start = (
        files["shop/orders.py"].splitlines().index("    def place_order(self, order_id: str, today: date) -> Decimal:")
    )
    reference = textwrap.dedent(
        """\
        order = self.find_order(order_id)
        if not order.lines:
            raise ValueError(f"order {order_id} has no lines")
        order.status = "placed"
        order.placed_on = today
        return (order.subtotal() * (1 + self.tax_rate)).quantize(Decimal("0.01"))"""
    )
    problem = RepositoryProblem(
        "ex1",
        "Implement the method place_order",
        "...",
        "shop/orders.py",
        "place_order",
        start + 1,
        reference,
        files,
        ("shop/test_orders.py::test_place_order_adds_tax",),
    )
    kept, dropped = runnable_problems([problem], limit=5, timeout_s=30, workers=1)
    assert kept == [problem] and dropped == {}
    forgot_tax = "```python\n" + reference.replace("(1 + self.tax_rate)", "1") + "\n```"
    whole_method = "```python\ndef place_order(self, order_id, today):\n" + textwrap.indent(reference, "    ") + "\n```"
    good, wrong, whole = run_programs(
        [problem.program(reference), problem.program(forgot_tax), problem.program(whole_method)], 30, 2
    )
    assert good.passed, good.detail
    assert wrong.status == "failed" and "6.60" in wrong.output  # pytest's own report of the failed assertion
    assert whole.passed, whole.detail  # a repeated signature is taken off, the body put in place
    assert problem.program("no code at all (") is None


def test_a_repository_problem_whose_tests_do_not_exercise_the_function_is_left_out():
    from flywheel_pipelines.define.evaluate.repository import RepositoryProblem, runnable_problems

    files = {
        "calc.py": "def double(x):\n    y = x * 2\n    return y\n",
        "test_calc.py": "def test_nothing():\n    assert True\n",
    }
    problem = RepositoryProblem("ex2", "i", "", "calc.py", "double", 1, "y = x * 2\nreturn y", files, ("test_calc.py",))
    kept, dropped = runnable_problems([problem], limit=5, timeout_s=30, workers=1)
    assert kept == [] and dropped == {"ex2": "its tests pass without the function: they do not exercise it"}


def test_pass_at_k_bookkeeping_counts_each_problems_samples(tmp_path):
    """Two HumanEval problems, answers chosen: greedy right/wrong; samples 2 of 3 right, and 0 of 3."""
    from flywheel_pipelines.define.evaluate.humaneval import humaneval_problems
    from flywheel_pipelines.define.evaluate.scoring import (
        Evaluation,
        EvaluationPlan,
        ModelUnderTest,
        _exec_problems,
        _score_executed,
    )
    from flywheel_pipelines.settings import EvaluationSettings

    first, second = humaneval_problems(2)
    right = [f"```python\n{p['prompt']}{p['canonical_solution']}```" for p in (first, second)]
    wrong = "```python\ndef nothing():\n    return None\n```"
    problems = _exec_problems(EvaluationPlan(humaneval=[first, second]))
    out = Evaluation([], [])
    settings = EvaluationSettings(samples_per_problem=3, pass_k=[1, 2, 5])
    model = ModelUnderTest("candidate", "v1", tmp_path)
    _score_executed(model, problems, [right[0], wrong], [[right[0], wrong, right[0]], [wrong] * 3], settings, out)
    scores = {r["metric"]: (r["value"], r["n"]) for r in out.scores}
    assert scores["pass@1"] == (0.5, 2)
    assert scores["sampled_pass@1"][0] == pytest.approx((2 / 3 + 0) / 2) and scores["sampled_pass@1"][1] == 2
    assert scores["sampled_pass@2"][0] == pytest.approx((1 + 0) / 2)  # C(1,2) = 0 failing pairs of C(3,2)
    assert "sampled_pass@5" not in scores
    verdicts = [(s["item"], s["verdict"]) for s in out.samples]
    assert verdicts[:2] == [("HumanEval/0", "passed"), ("HumanEval/1", "failed")]
    assert [v for _, v in verdicts[2:5]] == ["passed", "failed", "passed"]
    assert [i for i, _ in verdicts[2:5]] == [f"HumanEval/0#sample{i}" for i in range(3)]


def test_sampled_pass_at_k_is_reported_where_n_allows_and_every_model_gets_the_same_seeds(tiny_model_dir):
    from flywheel_pipelines.define.evaluate.humaneval import humaneval_problems
    from flywheel_pipelines.define.evaluate.scoring import EvaluationPlan, ModelUnderTest, evaluate_models
    from flywheel_pipelines.settings import EvaluationSettings

    settings = EvaluationSettings(
        samples_per_problem=3, pass_k=[1, 2, 5], max_new_tokens=8, batch_size=4, temperature=1.0, sandbox_workers=2
    )
    plan = EvaluationPlan(humaneval=humaneval_problems(2))
    models = [ModelUnderTest("base", "tiny", tiny_model_dir), ModelUnderTest("candidate", "same", tiny_model_dir)]
    evaluation = evaluate_models(models, plan, settings)
    rows = {(r["model"], r["metric"]): r for r in evaluation.scores}
    assert set(rows) == {(m, k) for m in ("base", "candidate") for k in ("pass@1", "sampled_pass@1", "sampled_pass@2")}
    assert rows[("base", "sampled_pass@2")]["n"] == 2  # problems; no pass@5 from 3 samples
    answers = {m: [s["answer"] for s in evaluation.samples if s["model"] == m] for m in ("base", "candidate")}
    assert len(answers["base"]) == 2 * (1 + 3)  # a greedy answer and 3 samples per problem
    assert answers["base"] == answers["candidate"]  # the same model with the same seeds samples the same answers
    assert len(set(answers["base"][2:5])) > 1  # samples of one problem differ from each other
    assert all(s["verdict"] != "passed" for s in evaluation.samples)  # a random tiny model solves nothing


def test_a_model_that_answered_these_questions_before_is_not_asked_again(tiny_model_dir, tmp_path, monkeypatch):
    import shutil

    from flywheel_pipelines.define.evaluate import scoring
    from flywheel_pipelines.define.evaluate.answer_cache import AnswerCache, model_fingerprint
    from flywheel_pipelines.define.evaluate.humaneval import humaneval_problems
    from flywheel_pipelines.define.evaluate.scoring import EvaluationPlan, ModelUnderTest, evaluate_models
    from flywheel_pipelines.settings import EvaluationSettings

    settings = EvaluationSettings(max_new_tokens=6, batch_size=4, sandbox_workers=2)
    plan = EvaluationPlan(humaneval=humaneval_problems(2))
    model = [ModelUnderTest("base", "tiny", tiny_model_dir)]
    cache = AnswerCache(tmp_path / "answers.db")
    first = evaluate_models(model, plan, settings, cache=cache)
    assert (cache.hits, cache.misses) == (0, 1)

    def must_not_load(*args, **kwargs):
        raise AssertionError("a model whose answers are cached was loaded")

    monkeypatch.setattr(scoring, "load_for_generation", must_not_load)
    again = evaluate_models(model, plan, settings, cache=cache)
    assert (cache.hits, cache.misses) == (1, 1)
    assert again.scores == first.scores and [s["answer"] for s in again.samples] == [s["answer"] for s in first.samples]
    with pytest.raises(AssertionError, match="was loaded"):  # other settings: another question, asked again
        evaluate_models(model, plan, EvaluationSettings(max_new_tokens=7, batch_size=4), cache=cache)
    cache.close()
    # Other weights are another model.
    copy = shutil.copytree(tiny_model_dir, tmp_path / "copy")
    assert model_fingerprint(copy, None, "auto") == model_fingerprint(tiny_model_dir, None, "auto")
    (copy / "config.json").write_text((copy / "config.json").read_text().replace("}", ', "x": 1}', 1))
    assert model_fingerprint(copy, None, "auto") != model_fingerprint(tiny_model_dir, None, "auto")
    assert model_fingerprint(tiny_model_dir, None, "float32") != model_fingerprint(tiny_model_dir, None, "auto")
