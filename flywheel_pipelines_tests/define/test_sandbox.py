"""Step 4: generated code runs in the sandbox; whatever it tries ends as a verdict with a reason — never as damage,
a hang, or a process left running. Each hostile program is tried directly (the audit hook refuses it and says
why) and, where the machine allows OS isolation, through a child Python the hook cannot see (the namespaces and
the unprivileged uid contain it). Where the kernel grants only part of the OS isolation, the tests follow what
`isolation_layers()` reports, and one test takes CAP_SYS_ADMIN away to check such a machine for real."""

from __future__ import annotations

import contextlib
import dis
import fcntl
import json
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

from flywheel_pipelines.define.evaluate import humaneval, sandbox, sandbox_server
from flywheel_pipelines.define.evaluate.sandbox import (
    Program,
    SandboxError,
    SandboxLimits,
    SandboxPool,
    default_pool,
    isolation_layers,
    run_program,
    run_programs,
)

LAYERS = {layer.name: layer for layer in isolation_layers()}
UID_DROP = bool(default_pool().uids)
OS_LAYERS = ("network", "filesystem", "processes", "user")
FULL_OS_ISOLATION = all(LAYERS[name].active for name in OS_LAYERS)
needs_os_isolation = pytest.mark.skipif(
    not FULL_OS_ISOLATION,
    reason="no full OS isolation here: a child Python would escape the audit hook, so the sandbox refuses to start one",
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
        assert sys.flags.no_site and sys.flags.no_user_site and sys.flags.safe_path and sys.stdin.read() == ''
        assert sys.flags.hash_randomization == 0 and os.environ['PYTHONHASHSEED'] == '0'
        import importlib.util
        assert importlib.util.find_spec('dagster') is None, 'site-packages must not be visible'
    """
    result = run_program(textwrap.dedent(probe), timeout_s=5)
    assert result.passed, result.detail


def test_a_program_runs_in_a_thread_of_its_own_and_may_replace_its_streams():
    results = run_programs(
        [
            "import threading\nassert threading.current_thread() is not threading.main_thread()",
            "import sys, io\nclass Out(io.StringIO):\n    __hash__ = None\nsys.stdout = Out()\nprint('kept')",
            "import asyncio\nasync def main():\n    return 3\nassert asyncio.run(main()) == 3",
            "import sys\nsys.setrecursionlimit(100000)\ndef f(n):\n    return f(n - 1) + 1 if n else 0\nf(50000)",
            "import signal\nsignal.signal(signal.SIGALRM, print)",  # only the main thread may: not the program's
        ],
        timeout_s=5,
        workers=2,
    )
    assert [r.status for r in results] == ["passed"] * 4 + ["failed"], [r.detail for r in results]
    assert "main thread" in results[4].reason


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


def test_an_import_path_under_the_machines_tmp_is_visible_read_only_behind_the_private_tmp():
    """A checkout (and its virtualenv) can live under /tmp, which the sandbox covers with a private tmpfs."""
    import tempfile

    with tempfile.TemporaryDirectory(dir="/tmp") as outside:
        os.chmod(outside, 0o755)
        Path(outside, "shop_helpers.py").write_text("def double(x):\n    return 2 * x\n")
        code = f"import shop_helpers\nassert shop_helpers.double(2) == 4\nopen({outside!r} + '/x', 'w')\n"
        result = run_program(Program(code, {}, [outside]), timeout_s=10)
        assert result.status in ("refused", "failed") and "x" not in os.listdir(outside), result.detail
        assert "shop_helpers" not in result.reason  # it was imported: the write was what failed
        assert run_program(Program("import shop_helpers", {}, [outside]), timeout_s=10).passed


def test_canonical_humaneval_solutions_pass_and_wrong_ones_fail():
    problems = humaneval.humaneval_problems(5)
    chat_style = [f"Here you go:\n```python\n{p['prompt']}{p['canonical_solution']}```\nDone." for p in problems]
    continuation = [p["canonical_solution"] for p in problems]
    wrong = ["```python\ndef nothing():\n    pass\n```"] * len(problems)
    programs = [humaneval.program(p, a) for p, a in zip(problems * 3, chat_style + continuation + wrong, strict=True)]
    verdicts = [r.passed for r in run_programs(programs, timeout_s=5, workers=2)]
    assert verdicts == [True] * 10 + [False] * 5


def _spans(results) -> list[tuple[float, float]]:
    return [tuple(map(float, r.output.split()[1:])) for r in results]


def _most_at_once(spans) -> int:
    return max(sum(s <= t < e for s, e in spans) for t, _ in spans)


TIMED = "import time\nprint({i}, time.time())\ntime.sleep({sleep})\nprint(time.time())"


def test_parallel_runs_keep_their_order_and_never_outnumber_the_cores(tmp_path):
    # Cores of their own: other processes on this machine running sandboxed programs would share the default ones.
    with SandboxPool(core_locks=tmp_path) as pool:
        results = pool.run_many([TIMED.format(i=i, sleep=0.3) for i in range(6)], SandboxLimits(timeout_s=5), 16)
    assert [int(r.output.split()[0]) for r in results] == list(range(6))
    cores = os.cpu_count() or 1
    assert min(2, cores) <= _most_at_once(_spans(results)) <= cores


def test_pools_in_several_processes_share_the_machines_cores(tmp_path):
    cores = os.cpu_count() or 1
    other = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import json, sys\nfrom flywheel_pipelines.define.evaluate.sandbox import SandboxPool\n"
            f"with SandboxPool(core_locks={str(tmp_path)!r}) as pool:\n"
            f"    results = pool.run_many([{TIMED!r}.format(i=i, sleep=0.4) for i in range({cores * 2})])\n"
            "print(json.dumps([r.output for r in results]))",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    with SandboxPool(core_locks=tmp_path) as pool, SandboxPool(core_locks=tmp_path) as second:
        ours = run_in_threads(
            [
                lambda: pool.run_many([TIMED.format(i=i, sleep=0.4) for i in range(cores * 2)]),
                lambda: second.run_many([TIMED.format(i=i, sleep=0.4) for i in range(cores)]),
            ]
        )
    theirs, _ = other.communicate(timeout=30)
    spans = _spans([r for batch in ours for r in batch])
    spans += [tuple(map(float, output.split()[1:])) for output in json.loads(theirs)]
    assert _most_at_once(spans) <= cores  # three pools in two processes, each allowed `cores` programs at once


def run_in_threads(calls: list) -> list:
    with ThreadPoolExecutor(max_workers=len(calls)) as threads:
        return [f.result() for f in [threads.submit(call) for call in calls]]


def test_callers_on_several_threads_share_the_slots_and_get_their_own_results():
    def batch(tag: int) -> list[str]:
        return [r.output.strip() for r in run_programs([f"print({tag}, {i})" for i in range(5)], 5, 2)]

    with ThreadPoolExecutor(max_workers=3) as callers:
        outputs = list(callers.map(batch, range(3)))
    assert outputs == [[f"{tag} {i}" for i in range(5)] for tag in range(3)]


def test_isolation_layers_say_what_protects_this_machine():
    assert {"network", "filesystem", "user", "processes", "interpreter", "audit hook", "limits"} <= set(LAYERS)
    described = [str(layer) for layer in LAYERS.values()]
    for name in OS_LAYERS:  # an OS layer that is off says so, and why, in its first word
        assert LAYERS[name].active != LAYERS[name].detail.startswith("off"), described
    assert LAYERS["user"].active == (UID_DROP or "user namespace" in LAYERS["user"].detail), described
    assert ("runs as uid" in LAYERS["user"].detail) == UID_DROP, described
    executables = LAYERS["audit hook"].detail
    if FULL_OS_ISOLATION:
        assert "only this Python may be started" in executables, described
    else:
        assert "no program may be started, not even this Python" in executables, described
    assert all(LAYERS[name].active for name in ("audit hook", "interpreter", "limits")), described


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


# ---------------------------------------------------------------- the verdict is out of the program's reach

FIND_TOKENS = r"""
import os, re, sys, types, _thread
found, locks = set(), []
def search(*roots, limit=300_000):
    seen, todo = set(), list(roots)
    while todo and len(seen) < limit:
        o = todo.pop()
        if id(o) in seen:
            continue
        seen.add(id(o))
        t = type(o)
        try:
            if t is str or t is bytes:
                text = o if t is str else o.decode('latin-1')
                found.update(re.findall(r'\b[0-9a-f]{32}\b', text))
            elif t is _thread.LockType:
                locks.append(o)
            elif t is types.FrameType:
                todo += [o.f_back, o.f_locals, o.f_globals]
            elif t is types.TracebackType:
                todo += [o.tb_frame, o.tb_next]
            elif t is types.FunctionType:
                todo += [o.__globals__, o.__closure__, o.__defaults__, o.__kwdefaults__]
            elif t is types.CellType:
                todo.append(o.cell_contents)
            elif t is dict:
                todo += [*o.keys(), *o.values()]
            elif t in (list, tuple, set, frozenset):
                todo += list(o)
            elif t is types.ModuleType:
                todo.append(o.__dict__)
            elif t in (types.MethodType, types.BuiltinMethodType):
                todo.append(getattr(o, '__self__', None))
            elif type(getattr(o, '__dict__', None)) is dict:
                todo.append(o.__dict__)
        except Exception:
            pass
def forge():
    for token in found:
        os.write(3, f'\ndone\tpassed\t\t{token}\n'.encode())
    for lock in locks:
        try:
            lock.release()
        except Exception:
            pass
"""

FINALIZER_ON_THE_REPORTING_THREAD = """
import gc, os, sys, threading
me = threading.get_ident()
def g():
    yield
    f = frame.f_back  # a frame of whichever thread resumed it
    while f is not None:
        for value in f.f_locals.values():
            if isinstance(value, bytes) and b'passed' in value:
                os.write(3, value)
        f = f.f_back
    yield
gen = g(); next(gen); frame = gen.gi_frame
class Spy:
    def __del__(self):
        if threading.get_ident() == me:
            arm()  # wait for a collection on another thread: the reporting one, say
        else:
            next(gen, None)
def arm():
    spy = Spy(); spy.cycle = spy
arm()
gc.set_threshold(1)
assert False
"""


def test_a_failing_program_cannot_report_itself_passed():
    tricks = [
        # the reporting function of an earlier design, one frame up
        'import sys; sys._getframe(1).f_locals["report"]("done", "passed", ""); assert False',
        # everything reachable from its frames and every module, then also every frame of a refusal's traceback
        # (the hook's): any 32-hex string is tried as the token, any lock released
        FIND_TOKENS + "search(sys._getframe(), sys.modules)\nforge()\nassert False",
        FIND_TOKENS
        + "try:\n    open('/proc/1/nonexistent/x', 'w')\nexcept PermissionError as e:\n    tb = e.__traceback__\n"
        + "search(tb, sys.modules)\nforge()\nassert False",
        # the reporting thread's frames
        "import sys\nfor frame in sys._current_frames().values():\n    print(frame.f_locals)\nassert False",
        # tracing: the way to jump over a `raise` in the sandbox's frame, or to rewrite its locals
        "import sys\ndef tracer(frame, event, arg):\n    return tracer\nsys._getframe(1).f_trace = tracer\n"
        "sys.settrace(tracer)\nassert False",
        "import sys\nreal = sys.settrace.__defaults__[0]\nreal(lambda *a: None)\nassert False",
        # its memory, where the token lies
        "open('/proc/self/mem', 'rb')\nassert False",
        "import os\nos.symlink('/proc/self/mem', 'm')\nopen('m', 'rb')\nassert False",
        # the status channel taken over: the reporting thread writes nothing when the program failed
        "import os, threading\nsaved = os.dup(3)\nr, w = os.pipe()\nos.dup2(w, 3)\n"
        "threading.Thread(target=lambda: os.write(saved, os.read(r, 4096).replace(b'failed', b'passed'))).start()\n"
        "assert False",
        # the reporting thread woken before the end
        "import sys, time\nsys._getframe(1).f_locals['finished_release']()\ntime.sleep(1)",
        # a finalizer run by a collection on the reporting thread would see its frames: none runs there
        FINALIZER_ON_THE_REPORTING_THREAD,
    ]
    results = run_programs(tricks, timeout_s=10, workers=2)
    assert not [(i, r.status, r.detail[:300]) for i, r in enumerate(results) if r.passed]
    assert [r.status for r in results[3:8]] == ["refused"] * 5, [r.detail for r in results[3:8]]
    assert "sys._current_frames" in results[3].reason and "tracing" in results[4].reason
    assert "memory" in results[6].reason and "memory" in results[7].reason


def test_switching_tracing_off_stays_allowed_for_doctest():
    program = 'def double(x):\n    """\n    >>> double(2)\n    4\n    """\n    return x * 2\n\n'
    program += "import doctest\nassert doctest.testmod().attempted == 1\n"
    result = run_program(program, timeout_s=5)
    assert result.passed, result.detail


def _hook_functions() -> list:
    guard = sandbox_server._guard("/nonexistent", exec_ok=False, netns=False, main_thread=0, refusals=iter(()))
    functions, todo = [], [guard]
    while todo:
        function = todo.pop()
        if function not in functions:
            functions.append(function)
            todo += [d for d in function.__defaults__ or () if isinstance(d, type(guard))]
    return functions


def test_the_hook_and_the_reporting_thread_read_no_name_the_program_could_rebind():
    """The program can reach the hook's functions (a refusal's traceback holds their frames) and change any module.
    So the hook and the reporting thread read no global or builtin name, and have no closure (a cell is writable):
    everything they use was bound as a default argument before the program started."""
    functions = [*_hook_functions(), sandbox_server._await_program]
    assert len(functions) >= 8
    for function in functions:
        code = function.__code__
        names = {i.argval for i in dis.get_instructions(code) if i.opname in ("LOAD_GLOBAL", "LOAD_NAME")}
        assert not names and not code.co_freevars and not code.co_cellvars, (code.co_name, names)


def test_tampering_with_the_hook_or_what_it_uses_is_refused(outside_dir):
    canary = str(outside_dir / "canary.txt")
    patch_modules = f"""
import builtins, os, posixpath
posixpath.realpath = os.path.realpath = lambda path, **kw: os.getcwd() + '/x'
posixpath._joinrealpath = lambda *a: (os.getcwd() + '/x', True)
builtins.isinstance = lambda *a: True
os.fsdecode = str
open({canary!r}, 'w').write('overwritten')
"""
    patch_hook = f"""
try:
    open({canary!r} + '.x', 'w')
except PermissionError as e:
    tb = e.__traceback__
refused = 0
while tb:
    for value in list(tb.tb_frame.f_locals.values()):
        if callable(value) and getattr(value, '__defaults__', None):
            try:
                value.__defaults__ = tuple(None for _ in value.__defaults__)
            except PermissionError:
                refused += 1
    tb = tb.tb_next
print('changes refused:', refused)
open({canary!r}, 'w').write('overwritten')
"""
    results = run_programs([patch_modules, patch_hook], timeout_s=5, workers=2)
    assert [r.status for r in results] == ["refused", "refused"], [r.detail for r in results]
    assert "changes refused: 0" not in results[1].output and "more refusals" in results[1].reason
    assert Path(canary).read_text() == "still here"


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


def test_posixsubprocess_cannot_start_a_program_behind_the_hooks_back():
    start_shell = (
        "pid = fork_exec([b'/bin/sh', b'-c', b'exit 0'], [b'/bin/sh'], True, (w,), None, None, -1, -1, -1, -1, -1, -1,"
        " r, w, True, False, -1, None, None, None, -1, None, True)\n"
        "os.close(w)\nassert os.read(r, 100) == b'', 'exec failed'\nassert os.waitpid(pid, 0)[1] == 0\n"
    )
    routes = [
        "import _posixsubprocess\nfork_exec = _posixsubprocess.fork_exec",
        "import importlib.util\nspec = importlib.util.find_spec('_posixsubprocess')\n"
        "fork_exec = importlib.util.module_from_spec(spec).fork_exec",
        "import sys\nfork_exec = sys.modules['_posixsubprocess'].fork_exec",
        "import subprocess\nfork_exec = subprocess._fork_exec",  # ours: it execs through os.execv
    ]
    results = run_programs([f"import os\nr, w = os.pipe()\n{route}\n{start_shell}" for route in routes], 5, 2)
    assert not [r.detail for r in results if r.passed]
    assert [r.status for r in results] == ["refused", "refused", "failed", "refused"], [r.detail for r in results]
    assert "importing _posixsubprocess" in results[0].reason and "/bin/sh" in results[3].reason


def test_subinterpreters_and_audit_hooks_of_its_own_are_refused():
    results = run_programs(
        [
            "import _xxsubinterpreters as interpreters\ninterpreters.run_string(interpreters.create(), 'pass')",
            "import sys\nsys.addaudithook(lambda event, args: None)",
        ],
        timeout_s=5,
        workers=2,
    )
    assert [r.status for r in results] == ["refused", "refused"], [r.detail for r in results]


def test_writes_through_a_directory_descriptor_are_refused(outside_dir):
    intruder = outside_dir / "intruder.txt"
    write = "os.write(os.open('{name}', os.O_WRONLY | os.O_CREAT, dir_fd=fd), b'hi')"
    results = run_programs(
        [
            # a descriptor of a directory outside
            f"import os\nfd = os.open({str(outside_dir)!r}, os.O_RDONLY)\n" + write.format(name="intruder.txt"),
            f"import os\nfd = os.open({str(outside_dir)!r}, os.O_PATH | os.O_DIRECTORY)\n"
            + write.format(name="intruder.txt"),
            # a descriptor of a directory inside, from which a name leads elsewhere than from the working directory
            f"import os\nos.mkdir('a'); os.mkdir('d')\nos.symlink({str(outside_dir)!r}, 'a/s'); os.symlink('d', 's')\n"
            "fd = os.open('a', os.O_RDONLY)\n" + write.format(name="s/intruder.txt"),
            # the same, to read a process's memory
            "import os\nos.mkdir('a'); os.mkdir('s')\nos.symlink('/proc/self', 'a/s')\nfd = os.open('a', os.O_RDONLY)\n"
            "os.open('s/mem', os.O_RDONLY, dir_fd=fd)",
        ],
        timeout_s=5,
        workers=2,
    )
    assert [r.status for r in results] == ["refused"] * 4, [r.detail for r in results]
    assert "opening the directory" in results[0].reason and "opening the directory" in results[1].reason
    assert "outside the working directory" in results[2].reason and "memory" in results[3].reason
    assert not intruder.exists()
    ordinary = "import os, shutil\nos.makedirs('a/b')\nfd = os.open('a', os.O_RDONLY)\n"
    ordinary += "os.close(os.open('b/f', os.O_WRONLY | os.O_CREAT, dir_fd=fd))\nshutil.rmtree('a')"
    assert run_program(ordinary, timeout_s=5).passed


@pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("setpriv") or not LAYERS["filesystem"].active,
    reason="needs root with CAP_SYS_ADMIN (to take it away) and setpriv",
)
def test_without_every_os_layer_no_child_python_runs():
    """Root without CAP_SYS_ADMIN: no namespace can be made, but the uid drop works. A child Python, which the hook
    does not see, would then write wherever the slot's uid may: it is refused, and the layers say so."""
    script = (
        "import json\nfrom flywheel_pipelines.define.evaluate.sandbox import SandboxPool\n"
        "with SandboxPool(1) as pool:\n"
        "    layers = {layer.name: [layer.active, layer.detail] for layer in pool.layers()}\n"
        f"    result = pool.run({through_child_python('print(1)')!r})\n"
        "print(json.dumps([layers, result.status, result.reason]))"
    )
    done = subprocess.run(
        ["setpriv", "--bounding-set", "-sys_admin", sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
    )
    layers, status, reason = json.loads(done.stdout)
    assert [layers[name][0] for name in OS_LAYERS] == [False, False, False, True], layers
    assert "no program may be started" in layers["audit hook"][1] and "PID namespace" in layers["audit hook"][1]
    assert status == "refused" and "without full OS isolation" in reason


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


def test_closing_a_pool_wakes_its_waiters_and_ends_the_servers_of_runs_in_flight():
    before = _server_children(os.getpid())
    pool = SandboxPool(1)
    with ThreadPoolExecutor(max_workers=2) as threads:
        running = threads.submit(pool.run, "import time\ntime.sleep(1)")
        time.sleep(0.5)  # the only slot is taken
        waiting = threads.submit(pool.run, "assert True")
        time.sleep(0.1)
        started = time.monotonic()
        pool.close()
        with pytest.raises(SandboxError, match="closed"):
            waiting.result(timeout=5)
        assert time.monotonic() - started < 0.5  # woken, not left waiting for the running program
        assert running.result(timeout=10).passed  # the program in flight ends normally...
    assert _server_children(os.getpid()) == before  # ...and its server is stopped when it does
    with pytest.raises(SandboxError, match="closed"):
        pool.run("assert True")


def test_a_slot_taken_before_close_starts_no_server_after_it():
    before = _server_children(os.getpid())
    pool = SandboxPool(1)
    slot = pool._acquire()  # between taking a slot and running on it...
    pool.close()  # ...the pool is closed
    with pytest.raises(SandboxError, match="closed"):
        slot.run({"code": "assert True", "files": {}, "import_paths": [], "limits": SandboxLimits()._request()}, 5)
    pool._release(slot)
    assert _server_children(os.getpid()) == before
    assert slot._lock_fd is None  # its uid is free again, and no server of ours runs as it


def test_a_forked_copy_lets_go_of_every_pools_servers_and_uids():
    pool = SandboxPool(1)
    assert pool.run("assert True").passed
    slot = pool._slots[0]
    inherited = [slot.server.proc.stdin.fileno(), slot.server.proc.stdout.fileno()]
    lock_file = f"{sandbox._lock_dir()}/uid-{slot.uid}.lock" if slot.uid is not None else None
    report_r, report_w = os.pipe()
    child = os.fork()
    if child == 0:  # the copy: report which of the pool's descriptors it still holds, then stay alive a while
        try:
            still_open = [fd for fd in inherited if _is_open(fd)]
            os.write(report_w, json.dumps(still_open).encode())
            time.sleep(5)
        finally:
            os._exit(0)
    try:
        os.close(report_w)
        assert json.loads(os.read(report_r, 1000)) == []
        started = time.monotonic()
        pool.close()  # the server sees its input close at once: the copy holds no end of it
        assert time.monotonic() - started < 1
        if lock_file:  # nor does the copy keep the uid taken
            with open(lock_file) as f:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(report_r)
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False


@pytest.mark.skipif(os.geteuid() != 0, reason="uids are claimed only as root")
def test_a_uid_is_claimed_only_when_no_account_group_or_process_has_it(monkeypatch):
    base = 64000

    def getgrgid(gid: int):  # a group that has the first uid's number
        if gid == base:
            return object()
        raise KeyError(gid)

    monkeypatch.setattr(sandbox.grp, "getgrgid", getgrgid)
    owner = subprocess.Popen(["sleep", "30"], user=base + 1, group=base + 1)
    try:
        deadline = time.monotonic() + 5
        while _uid(owner.pid) != base + 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        uid, fd = sandbox._claim_uid(base)
        os.close(fd)
        assert uid == base + 2
    finally:
        owner.kill()
        owner.wait()


def test_a_failed_setup_leaves_no_working_directory_behind():
    """Exposing an import path fails for one under a directory the slot's uid may not enter that does not exist."""
    hidden = [a for a in Path(sys.base_prefix).parents if a != Path("/") and not a.stat().st_mode & 0o001]
    if not (UID_DROP and LAYERS["filesystem"].active and hidden):
        pytest.skip("needs the uid drop, a mount namespace, and the Python installation under a closed directory")
    used_inodes = "import os\nstat = os.statvfs('/tmp')\nprint(stat.f_files - stat.f_ffree)"  # its private tmpfs
    with SandboxPool(1) as pool:
        before = pool.run(used_inodes)
        failed = pool.run(Program("pass", import_paths=[str(hidden[-1] / "flywheel-no-such-directory")]))
        after = pool.run(used_inodes)
    assert failed.status == "sandbox_error"
    assert before.passed and after.passed and after.output == before.output  # no working directory left over


def test_hashes_and_set_order_are_the_same_in_every_slot_and_run():
    program = "import time\ntime.sleep(0.3)\nprint(hash('abc'), list({'alpha', 'beta', 'gamma', 'delta'}))"
    with SandboxPool(2) as pool:
        both = pool.run_many([program, program], SandboxLimits(timeout_s=5), workers=2)
        servers = {slot.server.proc.pid for slot in pool._slots}
    later = run_program(program, timeout_s=5)
    assert len(servers) == 2  # two slots, two servers, one seed
    assert both[0].output == both[1].output == later.output
