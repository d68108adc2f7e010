"""Step 4: generated code runs in the sandbox; whatever it tries ends as a verdict with a reason — never as damage,
a hang, or a process left running. Each hostile program is tried directly (the audit hook refuses it and says
why) and, where the machine allows OS isolation, through a child Python the hook cannot see (the namespaces and
the unprivileged uid contain it)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from flywheel_pipelines.define.evaluate import humaneval
from flywheel_pipelines.define.evaluate.sandbox import (
    Program,
    SandboxLimits,
    SandboxPool,
    default_pool,
    isolation_layers,
    run_program,
    run_programs,
)

LAYERS = {layer.name: layer for layer in isolation_layers()}
UID_DROP = bool(default_pool().uids)
needs_os_isolation = pytest.mark.skipif(
    not (LAYERS["user"].active and LAYERS["processes"].active),
    reason="no OS isolation here: a child Python would escape the audit hook, so the sandbox refuses to start one",
)


def through_child_python(code: str) -> str:
    """A program that does `code` in a child Python, out of the audit hook's sight, and passes only if it worked."""
    return (
        "import subprocess, sys\n"
        f"done = subprocess.run([sys.executable, '-c', {code!r}], capture_output=True, text=True)\n"
        "assert done.returncode == 0, done.stderr\n"
    )


def leftovers() -> list[int]:
    """Live processes, other than our sandbox servers, in the servers' PID namespaces or running as a slot's uid."""
    servers = [p for p in _pids() if b"sandbox_server.py" in _read(f"/proc/{p}/cmdline")]
    ours = {p for p in servers if _parent(p) == os.getpid()}  # each started the real server in a new namespace
    ours |= {p for p in servers if _parent(p) in ours}
    namespaces = {os.readlink(f"/proc/{p}/ns/pid") for p in ours} - {os.readlink("/proc/self/ns/pid")}
    uids = set(default_pool().uids)
    return [p for p in _pids() if p not in ours and _alive(p) and (_namespace(p) in namespaces or _uid(p) in uids)]


def _pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError:
        return b""


def _parent(pid: int) -> int:
    fields = _read(f"/proc/{pid}/stat").rsplit(b")", 1)
    return int(fields[1].split()[1]) if len(fields) == 2 else -1


def _alive(pid: int) -> bool:
    fields = _read(f"/proc/{pid}/stat").rsplit(b")", 1)
    return len(fields) == 2 and fields[1].split()[0] != b"Z"


def _namespace(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def _uid(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None


# ---------------------------------------------------------------- ordinary programs


def test_passing_failing_and_hanging_programs_get_their_verdicts():
    started = time.perf_counter()
    results = run_programs(["assert 1 + 1 == 2", "assert 1 + 1 == 3", "while True: pass"], timeout_s=1.5, workers=3)
    assert [r.status for r in results] == ["passed", "failed", "timeout"]
    assert results[1].reason == "AssertionError" and "assert 1 + 1 == 3" in results[1].output
    assert time.perf_counter() - started < 10


def test_the_program_runs_in_its_own_empty_folder_with_a_minimal_environment(monkeypatch):
    monkeypatch.setenv("SECRET_TOKEN", "do-not-leak")
    probe = """
        import os, sys
        assert os.listdir('.') == ['__main__.py'], os.listdir('.')
        assert 'SECRET_TOKEN' not in os.environ
        assert os.environ['HOME'] == os.environ['TMPDIR'] == os.getcwd()
        assert sys.flags.isolated == 1 and sys.stdin.read() == ''
        import importlib.util
        assert importlib.util.find_spec('dagster') is None, 'site-packages must not be visible'
    """
    result = run_program(textwrap.dedent(probe), timeout_s=5)
    assert result.passed, result.detail


def test_given_files_sit_in_the_working_directory_and_import():
    code = (
        "import json, shop.cart\nassert shop.cart.total([1, 2]) == 3\nassert json.load(open('data/prices.json')) == [1]"
    )
    program = Program(
        code,
        files={
            "shop/__init__.py": "",
            "shop/cart.py": "def total(xs):\n    return sum(xs)\n",
            "data/prices.json": "[1]",
        },
    )
    assert run_program(program, timeout_s=5).passed


def test_ordinary_file_work_inside_the_working_directory_is_allowed():
    program = """
        import os, shutil, tempfile
        os.makedirs('a/b/c')
        with open('a/b/c/f.txt', 'w') as f:
            f.write('x')
        os.rename('a/b/c/f.txt', 'a/g.txt')
        os.chmod('a/g.txt', 0o600)
        shutil.rmtree('a')
        with tempfile.TemporaryDirectory() as tmp, open(os.path.join(tmp, 'scratch'), 'w') as f:
            f.write('y')
        print(open(os.devnull, 'w').write('z'))
    """
    result = run_program(textwrap.dedent(program), timeout_s=5)
    assert result.passed, result.detail


def test_a_repository_test_suite_runs_with_pytest_from_a_read_only_virtualenv():
    site_packages = str(Path(pytest.__file__).resolve().parents[1])
    runner = (
        "import os\nos.environ['PYTEST_DISABLE_PLUGIN_AUTOLOAD'] = '1'\nimport pytest\n"
        "code = pytest.main(['-q', '-p', 'no:cacheprovider', 'test_cart.py'])\nassert code == 0, code\n"
    )
    files = {"cart.py": "def total(xs):\n    return sum(xs)\n"}
    good = {**files, "test_cart.py": "from cart import total\n\ndef test_total():\n    assert total([1, 2]) == 3\n"}
    bad = {**files, "test_cart.py": "from cart import total\n\ndef test_total():\n    assert total([1, 2]) == 4\n"}
    passing, failing = run_programs(
        [Program(runner, good, [site_packages]), Program(runner, bad, [site_packages])], timeout_s=60, workers=2
    )
    assert passing.passed, passing.detail
    assert failing.status == "failed" and "1 failed" in failing.output


def test_canonical_humaneval_solutions_pass_and_wrong_ones_fail():
    problems = humaneval.humaneval_problems(5)
    chat_style = [f"Here you go:\n```python\n{p['prompt']}{p['canonical_solution']}```\nDone." for p in problems]
    continuation = [p["canonical_solution"] for p in problems]
    wrong = ["```python\ndef nothing():\n    pass\n```"] * len(problems)
    programs = [humaneval.program(p, a) for p, a in zip(problems * 3, chat_style + continuation + wrong, strict=True)]
    verdicts = [r.passed for r in run_programs(programs, timeout_s=5, workers=2)]
    assert verdicts == [True] * 10 + [False] * 5


def test_parallel_runs_keep_their_order_and_never_outnumber_the_cores():
    programs = [f"import time\nprint({i}, time.time())\ntime.sleep(0.3)\nprint(time.time())" for i in range(6)]
    results = run_programs(programs, timeout_s=5, workers=16)
    spans = []
    for i, result in enumerate(results):
        index, start, end = result.output.split()
        assert int(index) == i
        spans.append((float(start), float(end)))
    most_at_once = max(sum(s <= t < e for s, e in spans) for t, _ in spans)
    cores = os.cpu_count() or 1
    assert min(2, cores) <= most_at_once <= cores


def test_callers_on_several_threads_share_the_slots_and_get_their_own_results():
    def batch(tag: int) -> list[str]:
        return [r.output.strip() for r in run_programs([f"print({tag}, {i})" for i in range(5)], 5, 2)]

    with ThreadPoolExecutor(max_workers=3) as callers:
        outputs = list(callers.map(batch, range(3)))
    assert outputs == [[f"{tag} {i}" for i in range(5)] for tag in range(3)]


def test_isolation_layers_say_what_protects_this_machine():
    assert {"network", "filesystem", "user", "processes", "interpreter", "audit hook", "limits"} <= set(LAYERS)
    if os.geteuid() == 0:
        assert all(layer.active for layer in LAYERS.values()), [str(layer) for layer in LAYERS.values()]


# ---------------------------------------------------------------- time, memory, processes, output


def test_an_infinite_loop_times_out_in_wall_clock_or_cpu_time():
    started = time.perf_counter()
    wall = run_program("while True: pass", timeout_s=1)
    cpu = run_program("while True: pass", limits=SandboxLimits(timeout_s=10, cpu_s=1))
    assert (wall.status, cpu.status) == ("timeout", "timeout")
    assert "wall-clock" in wall.reason and "CPU" in cpu.reason
    assert time.perf_counter() - started < 6


def test_a_memory_hog_fails_on_memory():
    at_once = run_program("x = bytearray(4 * 1024 ** 3)", timeout_s=5)
    growing = run_program("chunks = []\nwhile True:\n    chunks.append(bytearray(10 ** 7))", timeout_s=10)
    assert at_once.status == growing.status == "memory"
    assert "MemoryError" in at_once.reason


@pytest.mark.skipif(not LAYERS["processes"].active, reason="needs the sandbox's own PID namespace")
def test_a_memory_hog_split_over_processes_is_killed_on_their_total():
    hog = """
        import os, time
        for _ in range(4):
            if os.fork() == 0:
                block = bytearray(300 << 20)
                block[::4096] = b'x' * len(block[::4096])  # touch every page: resident, not just reserved
                time.sleep(10)
        time.sleep(10)
    """
    result = run_program(textwrap.dedent(hog), limits=SandboxLimits(timeout_s=10, memory_bytes=512 << 20))
    assert result.status == "memory" and "together" in result.reason
    assert result.duration_s < 5 and leftovers() == []


def test_a_fork_bomb_is_stopped_and_leaves_nothing_running():
    bomb = run_program("import os\nwhile True:\n    os.fork()", timeout_s=10)
    stubborn = run_program("import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass", 2)
    assert bomb.status == "process_limit" and "processes" in bomb.reason
    assert stubborn.status == "timeout"
    assert leftovers() == []
    assert subprocess.run(["true"]).returncode == 0  # the machine still starts processes


def test_a_detached_daemon_does_not_outlive_its_program():
    program = """
        import os, time
        r, w = os.pipe()
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                os.write(w, b'up')
                time.sleep(60)
            os._exit(0)
        print('daemon', os.read(r, 20).decode())
    """
    result = run_program(textwrap.dedent(program), timeout_s=5)
    assert result.passed and "daemon up" in result.output, result.detail
    assert leftovers() == []


def test_children_it_forks_are_killed_with_it():
    program = "import subprocess, sys, time\nsubprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
    program += "time.sleep(60)\n"
    assert run_program(program, timeout_s=1).status in ("timeout", "refused")
    assert leftovers() == []


def _rss_bytes() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_an_output_flood_is_cut_off_while_our_memory_stays_flat():
    before = _rss_bytes()
    floods = run_programs(
        [
            "while True:\n    print('x' * 1000)",
            "import sys\nwhile True:\n    sys.stderr.write('y' * 1000)",
            "import os\nos.write(1, b'z' * (200 << 20))",
        ],
        limits=SandboxLimits(timeout_s=10, max_output_bytes=1 << 20),
        workers=2,
    )
    assert [f.status for f in floods] == ["output_flood"] * 3
    assert all(len(f.output) <= 4000 for f in floods)
    assert _rss_bytes() - before < 50 << 20


def test_a_file_is_capped_at_the_size_limit():
    result = run_program("open('big', 'wb').write(b'x' * (20 << 20))", limits=SandboxLimits(max_file_bytes=1 << 20))
    assert result.status == "failed" and "File too large" in result.reason


# ---------------------------------------------------------------- the file system outside


@pytest.fixture(params=["root-owned 0755 directory", "world-writable 0777 directory"])
def outside_dir(request):
    """A directory outside the working directory, visible to the sandbox (so not under /tmp, which it sees as
    its own private tmpfs), with a canary file in it."""
    base = Path("/var/tmp") if Path("/var/tmp").is_dir() else Path.home()
    path = Path(tempfile.mkdtemp(prefix="sandbox-canary-", dir=base))
    path.chmod(0o755 if "0755" in request.param else 0o777)
    (path / "canary.txt").write_text("still here")
    (path / "canary.txt").chmod(0o666 if "0777" in request.param else 0o644)
    yield path
    shutil.rmtree(path)


def test_deleting_a_file_outside_is_refused_and_the_file_survives(outside_dir):
    canary = outside_dir / "canary.txt"
    results = run_programs(
        [f"import os\nos.remove({str(canary)!r})", f"import shutil\nshutil.rmtree({str(outside_dir)!r})"], 5, 2
    )
    assert [r.status for r in results] == ["refused", "refused"]
    assert "outside the working directory" in results[0].reason and str(canary) in results[0].reason
    assert canary.read_text() == "still here"


def test_writing_a_file_outside_is_refused_and_nothing_appears(outside_dir):
    intruder = outside_dir / "intruder.txt"
    canary = outside_dir / "canary.txt"
    results = run_programs(
        [
            f"open({str(intruder)!r}, 'w').write('hi')",
            f"import os\nos.open({str(intruder)!r}, os.O_WRONLY | os.O_CREAT)",
            f"from pathlib import Path\nPath({str(canary)!r}).write_text('overwritten')",
            f"import os\nos.symlink({str(canary)!r}, 'link')\nopen('link', 'w').write('through a link')",
            f"import os\nos.rename('__main__.py', {str(intruder)!r})",
        ],
        timeout_s=5,
        workers=2,
    )
    assert [r.status for r in results] == ["refused"] * 5, [r.detail for r in results]
    assert not intruder.exists() and canary.read_text() == "still here"


def test_a_refusal_fails_the_program_even_when_it_swallows_the_error(outside_dir):
    program = f"try:\n    open({str(outside_dir / 'x')!r}, 'w')\nexcept Exception:\n    pass\nassert True\n"
    result = run_program(program, timeout_s=5)
    assert result.status == "refused" and not (outside_dir / "x").exists()


def test_the_machines_tmp_is_out_of_reach():
    with tempfile.NamedTemporaryFile(dir="/tmp", prefix="sandbox-canary-") as canary:
        result = run_program(f"import os\nos.remove({canary.name!r})", timeout_s=5)
        assert result.status == "refused" and Path(canary.name).exists()


@needs_os_isolation
def test_a_child_python_cannot_delete_or_write_outside_either(outside_dir):
    canary, intruder = outside_dir / "canary.txt", outside_dir / "intruder.txt"
    results = run_programs(
        [
            through_child_python(f"import os; os.remove({str(canary)!r})"),
            through_child_python(f"open({str(intruder)!r}, 'w').write('hi')"),
        ],
        timeout_s=10,
        workers=2,
    )
    assert [r.status for r in results] == ["failed", "failed"], [r.detail for r in results]
    assert canary.read_text() == "still here" and not intruder.exists()


# ---------------------------------------------------------------- the network


@pytest.fixture
def listening_server():
    """A TCP server on 127.0.0.1 that records any connection it receives."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.1)
    connections: list = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            with contextlib.suppress(OSError):  # a timeout: look at the stop flag again
                connections.append(server.accept())

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1], connections
    stop.set()
    thread.join()
    server.close()


def test_opening_a_socket_is_refused_and_no_connection_arrives(listening_server):
    port, connections = listening_server
    results = run_programs(
        [
            f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)",
            f"import urllib.request\nurllib.request.urlopen('http://127.0.0.1:{port}/', timeout=2)",
            "import socket\nsocket.socket(socket.AF_INET6, socket.SOCK_DGRAM)",
        ],
        timeout_s=5,
        workers=2,
    )
    assert [r.status for r in results] == ["refused"] * 3
    assert "socket" in results[0].reason
    time.sleep(0.2)
    assert connections == []


@pytest.mark.skipif(not LAYERS["network"].active, reason="no network namespace on this machine")
def test_a_child_python_finds_no_network_at_all(listening_server):
    port, connections = listening_server
    connect = f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=2)"
    result = run_program(through_child_python(connect), timeout_s=10)
    assert result.status == "failed" and "unreachable" in result.output
    time.sleep(0.2)
    assert connections == []


# ---------------------------------------------------------------- the parent and other processes


def test_signalling_the_parent_or_its_group_is_refused():
    results = run_programs(
        [
            "import os\nos.kill(os.getppid(), 9)",
            "import os\nos.killpg(0, 9)",
            f"import os\nos.kill({os.getpid()}, 9)",
            f"import os, signal\nos.kill({os.getpid()}, signal.SIGTERM)",
        ],
        timeout_s=5,
        workers=2,
    )
    assert [r.status for r in results] == ["refused"] * 4
    assert "signalling" in results[0].reason
    assert run_program("print('the server still serves')", timeout_s=5).passed


def test_signalling_its_own_children_is_allowed():
    program = "import subprocess, sys\np = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(9)'])\n"
    program += "p.kill()\nassert p.wait() == -9"
    assert run_program(program, timeout_s=5).status == ("passed" if LAYERS["user"].active else "refused")


@pytest.mark.skipif(not UID_DROP, reason="kill(-1) is only tried where programs run as an unprivileged uid")
def test_kill_minus_one_reaches_nothing_outside_the_sandbox():
    # Runs only once the privilege drop is confirmed above: as root, kill(-1) would take the whole machine down.
    sentinel = subprocess.Popen(["sleep", "30"])
    try:
        direct = run_program("import os, signal\nos.kill(-1, signal.SIGKILL)", timeout_s=5)
        hidden = run_program(
            through_child_python("import os, signal; os.kill(-1, signal.SIGKILL)")
            + f"import os, time\ntime.sleep(0.2)\nassert not os.path.exists('/proc/{sentinel.pid}')\n",
            timeout_s=10,
        )
        assert direct.status == "refused"
        assert hidden.status == "crashed" and "SIGKILL" in hidden.reason  # it killed only the program itself
        assert sentinel.poll() is None  # the machine's processes, this test's included, are untouched
        assert run_program("print('the server still serves')", timeout_s=5).passed
    finally:
        sentinel.kill()
        sentinel.wait()


@needs_os_isolation
def test_a_child_python_cannot_kill_the_parent_either():
    hidden = run_program(through_child_python(f"import os; os.kill({os.getpid()}, 9)"), timeout_s=10)
    assert hidden.status == "failed" and ("ProcessLookupError" in hidden.output or "PermissionError" in hidden.output)


def test_sys_exit_and_os_exit_before_the_checks_do_not_pass():
    tricks = ["import sys\nsys.exit(0)\nassert False", "raise SystemExit\nassert False", "import os\nos._exit(0)"]
    tricks.append("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\nassert False")
    results = run_programs(tricks, timeout_s=5, workers=2)
    assert [r.status for r in results] == ["early_exit", "early_exit", "early_exit", "crashed"]
    assert "sys.exit(0)" in results[0].reason


def test_ctypes_and_other_executables_are_refused():
    results = run_programs(
        [
            "import ctypes\nctypes.CDLL(None).kill(-1, 9)",
            "import os\nos.system('rm -rf /')",
            "import os\nos.execv('/bin/sh', ['sh'])",
        ],
        timeout_s=5,
        workers=2,
    )
    assert [r.status for r in results] == ["refused"] * 3, [r.detail for r in results]


def test_a_crashing_program_does_not_take_the_server_down():
    crash = run_program("import faulthandler\nfaulthandler._sigsegv()", timeout_s=5)
    assert crash.status == "crashed" and "SIGSEGV" in crash.reason
    assert run_program("assert True", timeout_s=5).passed


# ---------------------------------------------------------------- the servers themselves


def _server_children(pid: int) -> set[int]:
    found = set()
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{entry}/stat").read_bytes().rsplit(b")", 1)[1].split()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if int(stat[1]) == pid and b"sandbox_server.py" in cmdline:
            found.add(int(entry))
    return found


def test_a_pool_closes_its_servers():
    before = _server_children(os.getpid())
    with SandboxPool(1) as pool:
        assert pool.run("assert True").passed
        assert len(_server_children(os.getpid()) - before) == 1
    assert _server_children(os.getpid()) == before


def test_servers_die_with_their_parent():
    user = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from flywheel_pipelines.define.evaluate.sandbox import run_program\n"
            "assert run_program('assert True').passed\nprint('ready', flush=True)\nimport time; time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert user.stdout.readline().strip() == "ready"
        servers = _server_children(user.pid)
        assert servers
    finally:
        user.send_signal(signal.SIGKILL)
        user.wait()
    deadline = time.monotonic() + 5
    while any(map(_alive, servers)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(map(_alive, servers))
