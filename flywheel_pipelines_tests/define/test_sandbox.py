"""Step 4: generated code runs in a separate, limited process; a hang or a crash is a verdict, not an outage."""

import time

from flywheel_pipelines.define.evaluate import humaneval
from flywheel_pipelines.define.evaluate.sandbox import run_program, run_programs


def test_passing_failing_and_hanging_programs_get_their_verdicts():
    started = time.perf_counter()
    results = run_programs(["assert 1 + 1 == 2", "assert 1 + 1 == 3", "while True: pass"], timeout_s=1.5, workers=3)
    assert [r.status for r in results] == ["passed", "failed", "timeout"]
    assert "AssertionError" in results[1].detail
    assert time.perf_counter() - started < 10


def test_the_program_runs_in_its_own_empty_folder_with_a_minimal_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("SECRET_TOKEN", "do-not-leak")
    probe = (
        "import os, sys\n"
        "assert os.listdir('.') == ['program.py'], os.listdir('.')\n"
        "assert 'SECRET_TOKEN' not in os.environ\n"
        "assert sys.flags.isolated == 1\n"
        "import importlib.util\n"
        "assert importlib.util.find_spec('dagster') is None, 'site-packages must not be visible'\n"
    )
    result = run_program(probe, timeout_s=5)
    assert result.passed, result.detail


def test_memory_is_bounded():
    result = run_program("x = bytearray(4 * 1024 ** 3)", timeout_s=5)
    assert result.status == "failed" and "MemoryError" in result.detail


def test_children_it_forks_are_killed_with_it():
    program = "import subprocess, sys, time\nsubprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
    program += "time.sleep(60)\n"
    assert run_program(program, timeout_s=1).status == "timeout"


def test_canonical_humaneval_solutions_pass_and_wrong_ones_fail():
    problems = humaneval.humaneval_problems(5)
    chat_style = [f"Here you go:\n```python\n{p['prompt']}{p['canonical_solution']}```\nDone." for p in problems]
    continuation = [p["canonical_solution"] for p in problems]
    wrong = ["```python\ndef nothing():\n    pass\n```"] * len(problems)
    programs = [humaneval.program(p, a) for p, a in zip(problems * 3, chat_style + continuation + wrong, strict=True)]
    verdicts = [r.passed for r in run_programs(programs, timeout_s=5, workers=2)]
    assert verdicts == [True] * 10 + [False] * 5
