"""The sandbox's fork server: one per worker slot, started by `sandbox.py` as
`python -I -S -B sandbox_server.py CONFIG` and written against the standard library only.

It sets the slot's isolation up once — its own PID, network, IPC and mount namespaces, a read-only view of the
file system with a private /tmp — and then forks a child per program. The child drops to the slot's unprivileged
uid, applies the resource limits, installs an audit hook and runs the program with exec(); when it ends, whatever
it left running is killed. Forking a warm interpreter instead of starting one per program is what makes it fast.

Protocol on stdin/stdout: a 4-byte big-endian length, then a JSON object. The server first writes
`{"layers": [...]}` (or `{"error": "..."}`); then it answers each request `{"code", "files", "import_paths",
"limits"}` with `{"status", "reason", "output", "duration_s"}`. It exits when stdin closes.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import gc
import json
import math
import os
import pathlib
import resource
import select
import shutil
import signal
import stat
import struct
import sys
import tempfile
import time
import traceback
import types

# Kept alive on purpose: a child replaces these streams, and collecting the originals would close fds 0-2.
_SERVER_STREAMS = (sys.stdin, sys.stdout, sys.stderr)
# The program's streams, made once: in a child, fds 0-2 become /dev/null and the output pipe.
_PROGRAM_STREAMS = (
    open(0, encoding="utf-8", closefd=False),  # noqa: SIM115
    open(1, "w", encoding="utf-8", errors="backslashreplace", closefd=False),  # noqa: SIM115
    open(2, "w", encoding="utf-8", errors="backslashreplace", buffering=1, closefd=False),  # noqa: SIM115
)
_STDLIB_PATH = list(sys.path)
# Imported once here so each forked program finds them ready (HumanEval's programs import mostly these).
_WARM_MODULES = (
    "typing collections itertools functools heapq bisect math cmath random string re hashlib copy operator "
    "fractions decimal statistics datetime json dataclasses enum abc subprocess textwrap unittest"
)
for _name in _WARM_MODULES.split():
    with contextlib.suppress(ImportError):
        __import__(_name)

_HERE = os.path.abspath(__file__)
STATUS_FD = 3
PROGRAM_FILE = "__main__.py"  # the program is __main__; a name no repository file will have at its root
OUTPUT_TAIL_BYTES = 4000
STATUS_CAP_BYTES = 1 << 16
MEMORY_CHECK_S = 0.1
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
MAX_REPORTED_REFUSALS = 20

# ---------------------------------------------------------------- Linux system calls not in the os module


CLONE_NEWNS = 0x00020000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
PR_SET_PDEATHSIG = 1
PR_CAPBSET_DROP = 24
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
CAPABILITY_VERSION_3 = 0x20080522
SYS_MOUNT_SETATTR = 442  # the same number on x86_64 and aarch64
AT_FDCWD = -100
AT_RECURSIVE = 0x8000
MOUNT_ATTR_RDONLY = 1
MOUNT_ATTR_NOSUID = 2

_libc = ctypes.CDLL(None, use_errno=True)


class _MountAttr(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint64) for name in ("attr_set", "attr_clr", "propagation", "userns_fd")]


def _call(name: str, *args) -> int:
    result = getattr(_libc, name)(*args)
    if result == -1:
        err = ctypes.get_errno()
        raise OSError(err, f"{name}: {os.strerror(err)}")
    return result


def _unshare(flags: int) -> None:
    _call("unshare", ctypes.c_int(flags))


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    enc = [None if s is None else os.fsencode(s) for s in (source, target, fstype, data)]
    _call("mount", enc[0], enc[1], enc[2], ctypes.c_ulong(flags), enc[3])


def _read_only_everywhere() -> None:
    attr = _MountAttr(MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID, 0, MS_PRIVATE, 0)
    args = (AT_FDCWD, b"/", AT_RECURSIVE, ctypes.addressof(attr), ctypes.sizeof(attr))
    _call("syscall", *(ctypes.c_long(a) if isinstance(a, int) else a for a in (SYS_MOUNT_SETATTR, *args)))


def _prctl(option: int, value: int) -> None:
    _call("prctl", ctypes.c_int(option), ctypes.c_ulong(value), ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0))


def _drop_capabilities() -> None:
    """No capabilities now, and none after an exec either (an empty bounding set): root of a user namespace
    could otherwise remount the file system writable."""
    with open("/proc/sys/kernel/cap_last_cap") as f:
        last = int(f.read())
    for cap in range(last + 1):
        _prctl(PR_CAPBSET_DROP, cap)
    header = (ctypes.c_uint32 * 2)(CAPABILITY_VERSION_3, 0)
    _call("capset", ctypes.byref(header), ctypes.byref((ctypes.c_uint32 * 6)()))


# ---------------------------------------------------------------- the slot, set up once


def _continue_in_child() -> None:
    """Fork; the child, first process of the PID namespace just unshared, carries on as the server, and this
    process only waits for it. Should this process be killed, the parent-death signal takes the server — and with
    it, as the namespace's init, everything the server started."""
    child = os.fork()
    if child == 0:
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # as init, the only signals that reach us are handled ones
        return
    for fd in (0, 1):
        os.close(fd)
    _, wait_status = os.waitpid(child, 0)
    os._exit(os.waitstatus_to_exitcode(wait_status) % 256)


class Slot:
    """What one server sets up for all the programs it runs: namespaces, mounts, uid, and what took effect."""

    def __init__(self, config: dict) -> None:
        self.uid: int | None = None
        self.netns = self.mountns = self.pidns = self.read_only = self.userns = self.own_proc = False
        self.exposed: list[str] = []
        self.overmounted: dict[str, int] = {}  # a hidden directory -> an O_PATH fd to the original
        self.layers: list[dict] = []
        real_root = os.geteuid() == 0
        _prctl(PR_SET_CHILD_SUBREAPER, 1)  # orphans of a program come back here to be reaped, not to init
        self._enter_namespaces(real_root)
        self.base = self._private_tmp(config["tmp_bytes"]) if self.mountns else tempfile.mkdtemp(prefix="flywheel-")
        if real_root and config.get("uid"):
            self.uid = int(config["uid"])
            os.chmod(self.base, 0o711)
            python_dir = os.path.dirname(os.path.realpath(sys.executable))
            for path in sorted({sys.base_prefix, sys.base_exec_prefix, sys.prefix, python_dir}, key=len):
                self.expose(path)
        self.max_processes_extra = 0
        if self.uid is None and not self.userns:  # RLIMIT_NPROC counts every process of our uid
            self.max_processes_extra = sum(1 for _ in _processes_of(os.getuid())) + 8
        self._describe(config)

    def _enter_namespaces(self, real_root: bool) -> None:
        # Without root, a user namespace grants what the rest needs.
        private = CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC
        if real_root:
            attempts = [private, private & ~CLONE_NEWPID, CLONE_NEWNET]
        else:
            attempts = [CLONE_NEWUSER | private, CLONE_NEWUSER | (private & ~CLONE_NEWPID)]
        self.ns_error = "not permitted"
        for flags in attempts:
            uid, gid = os.getuid(), os.getgid()
            try:
                _unshare(flags)
            except OSError as e:
                self.ns_error = str(e)
                continue
            if flags & CLONE_NEWUSER:
                self.userns = True
                for name, text in (("setgroups", "deny"), ("uid_map", f"0 {uid} 1"), ("gid_map", f"0 {gid} 1")):
                    with open(f"/proc/self/{name}", "w") as f:
                        f.write(text)
            if flags & CLONE_NEWPID:
                _continue_in_child()
                self.pidns = True
            self.netns = bool(flags & CLONE_NEWNET)
            self.mountns = bool(flags & CLONE_NEWNS)
            break
        if not self.mountns:
            return
        _mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing we mount here shows outside
        with contextlib.suppress(OSError):
            _read_only_everywhere()
            self.read_only = True
        if self.pidns:  # a /proc that shows our PID namespace only, not the machine's processes
            with contextlib.suppress(OSError):
                _mount("proc", "/proc", "proc", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
                self.own_proc = True

    def _private_tmp(self, size: int) -> str:
        """An empty tmpfs on /tmp (and /dev/shm) seen by this server only: working directories live there, the
        machine's /tmp is out of sight, and a program can fill at most `size` bytes."""
        _mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID, f"size={size},mode=0711")
        with contextlib.suppress(OSError):
            _mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID, f"size={min(size, 64 << 20)},mode=1777")
        return "/tmp"

    def expose(self, path: str) -> None:
        """Make `path` readable for the unprivileged uid although an ancestor (say a 0700 /root holding the Python
        installation) is not: that ancestor is covered with an empty tmpfs into which only `path` is bind-mounted."""
        if self.uid is None or not self.mountns or not os.path.isabs(path):
            return
        path = os.path.normpath(path)
        if any(path == p or path.startswith(p + "/") for p in self.exposed):
            return
        parts = path.strip("/").split("/")
        for depth in range(1, len(parts)):
            ancestor = "/" + "/".join(parts[:depth])
            hidden = ancestor in self.overmounted
            if not hidden:
                try:
                    mode = os.stat(ancestor).st_mode
                except OSError:
                    return
                if mode & stat.S_IXOTH:
                    continue
                self.overmounted[ancestor] = os.open(ancestor, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
                _mount("tmpfs", ancestor, "tmpfs", MS_NOSUID, "size=64k,mode=0755")
            rest = "/".join(parts[depth:])
            os.makedirs(path, mode=0o755, exist_ok=True)
            _mount(f"/proc/self/fd/{self.overmounted[ancestor]}/{rest}", path, None, MS_BIND | MS_REC)
            break
        self.exposed.append(path)

    def _describe(self, config: dict) -> None:
        def layer(name: str, active: bool, detail: str) -> None:
            self.layers.append({"name": name, "active": active, "detail": detail})

        layer(
            "network",
            self.netns,
            "own network namespace, no interface up: nothing can be reached, not even 127.0.0.1"
            if self.netns
            else f"off ({self.ns_error}); sockets are refused by the audit hook only",
        )
        if self.read_only:
            layer(
                "filesystem",
                True,
                f"own mount namespace: every mount read-only and nosuid; a private {config['tmp_bytes'] >> 20} MiB "
                "tmpfs on /tmp holds the working directories",
            )
        else:
            layer("filesystem", False, "off: the real file system is writable where file permissions allow")
        if self.uid is not None:
            hidden = ", ".join(sorted(self.overmounted)) or "none"
            layer(
                "user",
                True,
                f"runs as uid/gid {self.uid}: no groups, no capabilities, no new privileges (directories hidden "
                f"but for the Python installation: {hidden})",
            )
        elif self.userns:
            layer("user", True, "own user namespace mapped to the caller's uid; no capabilities, no new privileges")
        else:
            layer("user", False, "off: runs as the caller's uid (no privilege to switch)")
        seen = "seen or signalled (own /proc)" if self.own_proc else "signalled"
        layer(
            "processes",
            self.pidns,
            f"own PID namespace: no process outside can be {seen}; after each program everything in it but the "
            "server is killed at once"
            if self.pidns
            else "off: the process tree is swept after each program instead",
        )


# ---------------------------------------------------------------- one program


def run(slot: Slot, request: dict) -> dict:
    limits = request["limits"]
    started = time.monotonic()
    workdir = tempfile.mkdtemp(prefix="run-", dir=slot.base)
    if slot.uid is not None:
        os.chown(workdir, slot.uid, slot.uid)
    for path in request.get("import_paths", ()):
        slot.expose(path)
    token = os.urandom(8).hex()
    out_r, out_w = os.pipe()
    st_r, st_w = os.pipe()
    try:
        pid = os.fork()
    except OSError:
        pid = -1
    if pid == 0:
        try:
            _child(slot, request, workdir, token, out_w, st_w)
        finally:
            os._exit(70)
    os.close(out_w)
    os.close(st_w)
    if pid < 0:
        os.close(out_r)
        os.close(st_r)
        shutil.rmtree(workdir, ignore_errors=True)
        raise OSError("could not fork the program's process")
    try:
        watched = _watch(pid, out_r, st_r, limits, started, check_memory=slot.own_proc)
        _sweep(slot)
        _drain(out_r, watched)
    finally:
        os.close(out_r)
        os.close(st_r)
        shutil.rmtree(workdir, ignore_errors=True)
        if slot.mountns:
            _empty("/dev/shm")
    result = _verdict(watched, token, limits)
    result["output"] = bytes(watched["tail"]).decode("utf-8", "replace")
    result["duration_s"] = round(time.monotonic() - started, 4)
    return result


def _watch(pid: int, out_r: int, st_r: int, limits: dict, started: float, *, check_memory: bool) -> dict:
    """Collect output until the child exits; kill it when the wall clock runs out, the output overflows, or (looked
    at every MEMORY_CHECK_S) all its processes together hold more memory than one may address."""
    pidfd = os.pidfd_open(pid)
    poller = select.poll()
    for fd in (pidfd, out_r, st_r):
        poller.register(fd, select.POLLIN)
    watched = {"tail": bytearray(), "total": 0, "status": bytearray(), "killed": None, "open": {out_r, st_r}}
    deadline = started + limits["timeout_s"]
    next_check = started + MEMORY_CHECK_S if check_memory else float("inf")
    try:
        exited = False
        while not exited and watched["killed"] is None:
            now = time.monotonic()
            if now >= deadline:
                watched["killed"] = "timeout"
                break
            if now >= next_check:
                next_check = now + MEMORY_CHECK_S
                if _namespace_memory_above(limits["memory_bytes"]):
                    watched["killed"] = "memory"
                    break
            for fd, _ in poller.poll(math.ceil((min(deadline, next_check) - now) * 1000)):
                if fd == pidfd:
                    exited = True
                elif _read_into(fd, watched, out_r, limits) is None:
                    poller.unregister(fd)
        if watched["killed"]:
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        _, wait_status, usage = os.wait4(pid, 0)
    finally:
        os.close(pidfd)
    watched["wait_status"] = wait_status
    watched["cpu_s"] = usage.ru_utime + usage.ru_stime
    return watched


def _namespace_memory_above(limit: int) -> bool:
    """Whether the processes of our PID namespace but us (its own /proc shows nothing else) hold more than `limit`
    bytes. Resident sizes first, which is cheap; only when they add up to more than the limit the proportional
    sizes, which do not count the pages forked copies still share."""
    pids = [entry for entry in os.listdir("/proc") if entry.isdigit() and entry != "1"]
    resident = 0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError), open(f"/proc/{pid}/statm", "rb") as f:
            resident += int(f.read().split()[1]) * PAGE_BYTES
    if resident <= limit:
        return False
    proportional = 0
    for pid in pids:
        with contextlib.suppress(OSError), open(f"/proc/{pid}/smaps_rollup", "rb") as f:
            for line in f:
                if line.startswith(b"Pss:"):
                    proportional += int(line.split()[1]) * 1024
                    break
    return proportional > limit


def _read_into(fd: int, watched: dict, out_r: int, limits: dict) -> int | None:
    chunk = os.read(fd, 1 << 16)
    if not chunk:
        watched["open"].discard(fd)
        return None
    if fd == out_r:
        watched["total"] += len(chunk)
        tail = watched["tail"]
        tail += chunk
        del tail[:-OUTPUT_TAIL_BYTES]
        if watched["total"] > limits["max_output_bytes"] and watched["killed"] is None:
            watched["killed"] = "output"
    elif len(watched["status"]) < STATUS_CAP_BYTES:
        watched["status"] += chunk
    return len(chunk)


def _drain(out_r: int, watched: dict) -> None:
    """Whatever is still in the pipes. Every writer is gone by now, so this ends at end-of-file (or in a second)."""
    limits = {"max_output_bytes": float("inf")}
    deadline = time.monotonic() + 1.0
    while watched["open"] and time.monotonic() < deadline:
        ready, _, _ = select.select(list(watched["open"]), [], [], max(0.0, deadline - time.monotonic()))
        for fd in ready:
            _read_into(fd, watched, out_r, limits)


def _sweep(slot: Slot) -> None:
    """Reap and kill whatever the program left behind: anything still running is an orphan of ours by now (we are
    its namespace's init, or its subreaper). `kill(-1)` kills all of it in one sweep of the kernel, one that a
    fork bomb cannot outrun — from a helper inside our PID namespace (everything there but us), or with the
    slot's uid; failing both, the tree found in /proc is killed, again until none is left."""
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid:
            continue
        if slot.pidns or slot.uid is not None:
            _kill_all(None if slot.pidns else slot.uid)
        else:
            for descendant in _descendants_of(os.getpid()):
                with contextlib.suppress(OSError):
                    os.kill(descendant, signal.SIGKILL)
        time.sleep(0.001)


def _kill_all(uid: int | None) -> None:
    helper = os.fork()
    if helper == 0:
        try:
            if uid is not None:
                os.setresgid(uid, uid, uid)
                os.setresuid(uid, uid, uid)
            os.kill(-1, signal.SIGKILL)  # all it may signal but itself and init (the server)
        finally:
            os._exit(0)
    os.waitpid(helper, 0)


def _descendants_of(ancestor: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                with open(f"/proc/{entry}/stat", "rb") as f:
                    parent = int(f.read().rsplit(b")", 1)[1].split()[1])
                children.setdefault(parent, []).append(int(entry))
    found, todo = [], [ancestor]
    while todo:
        kids = children.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


def _processes_of(uid: int):
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    yield int(entry)


def _empty(directory: str) -> None:
    with contextlib.suppress(OSError):
        for name in os.listdir(directory):
            path = os.path.join(directory, name)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    os.unlink(path)


def _verdict(watched: dict, token: str, limits: dict) -> dict:
    refusals, done, setup_error = [], None, None
    for line in bytes(watched["status"]).decode("utf-8", "replace").splitlines():
        mark, _, rest = line.partition(" ")
        if mark != token:
            continue
        kind, _, payload = rest.partition("\t")
        if kind == "refused":
            refusals.append(payload)
        elif kind == "done" and done is None:
            done = [*payload.split("\t", 1), ""]
        elif kind == "setup":
            setup_error = payload
    wait_status = watched["wait_status"]
    if setup_error:
        return {"status": "sandbox_error", "reason": f"could not start the program: {setup_error}"}
    if refusals:
        more = f" (and {len(refusals) - 1} more refusals)" if len(refusals) > 1 else ""
        return {"status": "refused", "reason": refusals[0] + more}
    if watched["killed"] == "timeout":
        return {"status": "timeout", "reason": f"no exit within {limits['timeout_s']:g}s of wall-clock time"}
    if watched["killed"] == "memory":
        return {
            "status": "memory",
            "reason": f"its processes together held more than {limits['memory_bytes'] >> 20} MiB; killed",
        }
    if watched["killed"] == "output":
        return {
            "status": "output_flood",
            "reason": f"more than {limits['max_output_bytes']} bytes of output; killed",
        }
    if done is not None:
        return {"status": done[0], "reason": done[1]}
    if os.WIFSIGNALED(wait_status):
        sig = os.WTERMSIG(wait_status)
        if sig == signal.SIGXCPU or watched["cpu_s"] >= max(1, math.ceil(limits["cpu_s"])):
            return {"status": "timeout", "reason": f"used its {limits['cpu_s']:g}s of CPU time"}
        return {"status": "crashed", "reason": f"killed by {signal.Signals(sig).name}"}
    code = os.WEXITSTATUS(wait_status) if os.WIFEXITED(wait_status) else -1
    return {"status": "early_exit", "reason": f"the process exited (code {code}) before the program finished"}


# ---------------------------------------------------------------- inside the child


def _child(slot: Slot, request: dict, workdir: str, token: str, out_w: int, st_w: int) -> None:
    limits = request["limits"]
    try:
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in (out_w, st_w)]
        null = os.open("/dev/null", os.O_RDONLY)
        for target, fd in ((0, null), (1, high[0]), (2, high[0]), (STATUS_FD, high[1])):
            os.dup2(fd, target, inheritable=target != STATUS_FD)  # what it execs gets no status channel
        os.closerange(STATUS_FD + 1, 1 << 20)
    except BaseException:
        os._exit(71)

    def report(*fields: str) -> None:
        line = "\t".join(f.replace("\n", " ").replace("\t", " ") for f in fields)
        with contextlib.suppress(OSError):
            os.write(STATUS_FD, f"{token} {line}\n".encode("utf-8", "replace"))

    try:
        path = _prepare(slot, request, workdir, limits)
    except BaseException as e:
        report("setup", f"{type(e).__name__}: {e}")
        os._exit(70)
    exec_ok = slot.uid is not None or (slot.userns and slot.read_only)
    sys.addaudithook(_guard(workdir, report, exec_ok=exec_ok, netns=slot.netns))
    _run_code(request["code"], path, report, limits)


def _prepare(slot: Slot, request: dict, workdir: str, limits: dict) -> str:
    os.setsid()
    signal.signal(signal.SIGINT, signal.default_int_handler)  # the server ignores it
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an oversized write fails with EFBIG instead of killing
    cpu = max(1, math.ceil(limits["cpu_s"]))
    nproc = limits["max_processes"] + slot.max_processes_extra + (1 if slot.userns else 0)
    for which, value in (
        (resource.RLIMIT_AS, limits["memory_bytes"]),
        (resource.RLIMIT_FSIZE, limits["max_file_bytes"]),
        (resource.RLIMIT_NPROC, nproc),
        (resource.RLIMIT_CORE, 0),
    ):
        resource.setrlimit(which, (value, value))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    if slot.uid is not None:  # leaving root drops every capability
        os.setgroups([])
        os.setresgid(slot.uid, slot.uid, slot.uid)
        os.setresuid(slot.uid, slot.uid, slot.uid)
    elif slot.userns:
        _drop_capabilities()
    _prctl(PR_SET_NO_NEW_PRIVS, 1)
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # after the uid change, which clears it: dies with this server
    os.chdir(workdir)
    path = os.path.join(workdir, PROGRAM_FILE)
    files = {**request.get("files", {}), PROGRAM_FILE: request["code"]}
    for name, text in files.items():
        target = os.path.normpath(os.path.join(workdir, name))
        if not target.startswith(workdir + "/"):
            raise ValueError(f"file {name!r} would land outside the working directory")
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "w", encoding="utf-8") as f:
            f.write(text)
    os.environ["HOME"] = os.environ["TMPDIR"] = workdir  # the rest was scrubbed when the server started
    tempfile.tempdir = None
    sys.argv = [path]
    sys.path[:] = [workdir, *_STDLIB_PATH, *request.get("import_paths", ())]
    sys.stdin, sys.stdout, sys.stderr = sys.__stdin__, sys.__stdout__, sys.__stderr__ = _PROGRAM_STREAMS
    return path


def _run_code(code: str, path: str, report, limits: dict) -> None:
    """exec() the program as `__main__`. Only a normal return counts as finishing: `sys.exit()` is caught here, and
    `os._exit()` never reports "done", so neither can pass a program whose checks did not run."""
    main_pid = os.getpid()
    module = types.ModuleType("__main__")
    module.__file__ = path
    sys.modules["__main__"] = module
    streams = (sys.stdout, sys.stderr)
    try:
        exec(compile(code, path, "exec"), module.__dict__)
        outcome = ("passed", "")
    except SystemExit as e:
        outcome = ("early_exit", f"the program called sys.exit({e.code!r}) before it finished")
    except MemoryError:
        outcome = ("memory", f"MemoryError: more than its {limits['memory_bytes'] >> 20} MiB of memory")
    except BaseException as e:
        outcome = _failure(e, limits)
        with contextlib.suppress(BaseException):
            _print_traceback(e)
    for stream in {*streams, sys.stdout, sys.stderr}:
        with contextlib.suppress(BaseException):
            stream.flush()
    if os.getpid() == main_pid:  # a forked copy that ran off the end does not speak for the program
        report("done", *outcome)
    os._exit(0 if outcome[0] == "passed" else 1)


def _print_traceback(e: BaseException) -> None:
    """The traceback as Python would print it for the program alone: without this file's frames."""
    report = traceback.TracebackException(type(e), e, e.__traceback__, compact=True)
    report.stack = traceback.StackSummary.from_list([f for f in report.stack if f.filename != _HERE])
    sys.stderr.write("".join(report.format()))


def _failure(e: BaseException, limits: dict) -> tuple[str, str]:
    try:
        last = traceback.format_exception_only(type(e), e)[-1].strip()
    except BaseException:
        last = type(e).__name__
    if len(last) > 300:
        last = last[:300] + "..."
    cannot_fork = isinstance(e, BlockingIOError) and e.errno == errno.EAGAIN
    if cannot_fork or (isinstance(e, RuntimeError) and "can't start new thread" in str(e)):
        return "process_limit", f"{last} (limit: {limits['max_processes']} processes)"
    return "failed", last


# ---------------------------------------------------------------- the audit hook


class SandboxRefusal(PermissionError):
    """Raised inside the program for an operation the sandbox does not allow."""

    __module__ = "sandbox"


_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_PATH_EVENTS = {  # event -> positions of the paths it changes, position of its dir_fd (or None)
    "os.remove": ((0,), 1),
    "os.rmdir": ((0,), 1),
    "os.mkdir": ((0,), 2),
    "os.chmod": ((0,), 2),
    "os.chown": ((0,), 3),
    "os.utime": ((0,), 3),
    "os.truncate": ((0,), None),
    "os.chflags": ((0,), None),
    "os.lchflags": ((0,), None),
    "os.setxattr": ((0,), None),
    "os.removexattr": ((0,), None),
    "shutil.rmtree": ((0,), 1),
    "os.rename": ((0, 1), 2),
    "os.link": ((0, 1), 2),
    "os.symlink": ((1,), 2),
}
_EXEC_EVENTS = {"os.exec": 0, "os.posix_spawn": 0, "os.spawn": 1}
_SOCKET_ADDRESS_EVENTS = ("socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg")
AF_UNIX = 1
_INTROSPECTION = ("gc.get_objects", "gc.get_referrers", "gc.get_referents")


def _guard(workdir: str, report, *, exec_ok: bool, netns: bool):
    """An audit hook (PEP 578) that refuses, with a readable reason, what a test program has no business doing:
    changing files outside its working directory, opening network sockets, signalling processes other than its own
    children, running programs other than this Python, loading C libraries through ctypes. Every refusal is also
    reported to the server, so a program that catches the exception still fails. The hook explains; the namespaces,
    uid and limits are what contain a program that gets around it."""
    realpath, join, isabs, getcwd, getpid, readlink = (
        os.path.realpath,
        os.path.join,
        os.path.isabs,
        os.getcwd,
        os.getpid,
        os.readlink,
    )
    inside_prefix = workdir + "/"
    python = realpath(sys.executable)
    path_types = (str, bytes, pathlib.PurePosixPath, pathlib.PosixPath)
    refused = [0]
    watched = {"open", *_PATH_EVENTS, *_EXEC_EVENTS, "subprocess.Popen", "os.system", "socket.__new__"}
    watched |= {*_SOCKET_ADDRESS_EVENTS, "os.kill", "os.killpg", *_INTROSPECTION}

    def refuse(message: str):
        if refused[0] < MAX_REPORTED_REFUSALS:
            refused[0] += 1
            report("refused", message)
        raise SandboxRefusal(errno.EPERM, f"sandbox: {message}")

    def inside(path, dir_fd=None) -> bool:
        if isinstance(path, int):
            return True  # an already open descriptor
        if type(path) not in path_types:
            refuse(f"a path of type {type(path).__name__} (use str or pathlib)")
        path = os.fsdecode(path if isinstance(path, str | bytes) else str(path))
        if isabs(path):
            full = path
        elif isinstance(dir_fd, int) and dir_fd >= 0:
            full = join(readlink(f"/proc/self/fd/{dir_fd}"), path)
        else:
            full = join(getcwd(), path)
        full = realpath(full)
        return full == workdir or full.startswith(inside_prefix) or full == "/dev/null"

    def own_child(pid: int) -> bool:
        try:
            os.waitid(os.P_PID, pid, os.WEXITED | os.WSTOPPED | os.WNOHANG | os.WNOWAIT)
            return True
        except (ChildProcessError, OSError):
            return False

    def check_exec(program) -> None:
        if isinstance(program, list | tuple):
            program = program[0] if program else ""
        program = os.fsdecode(program) if isinstance(program, str | bytes) else str(program)
        found = shutil.which(program) if "/" not in program else program
        if not exec_ok or found is None or realpath(found) != python:
            refuse(f"running {program!r} (only this Python may be started, and only with OS isolation)")

    def hook(event: str, args: tuple) -> None:
        if event == "open":
            path, mode, flags = args
            writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & _WRITE_FLAGS
            )
            if writes and not inside(path):
                refuse(f"writing {path!r}, outside the working directory")
        elif event in _PATH_EVENTS:
            positions, dir_fd_at = _PATH_EVENTS[event]
            dir_fd = args[dir_fd_at] if dir_fd_at is not None and dir_fd_at < len(args) else None
            for i in positions:
                if not inside(args[i], dir_fd):
                    refuse(f"{event} on {args[i]!r}, outside the working directory")
        elif event == "socket.__new__":
            family = args[1]
            if family != AF_UNIX:
                refuse(f"opening a network socket (family {family})")
        elif event in _SOCKET_ADDRESS_EVENTS:
            address = args[1]
            if isinstance(address, str | bytes):  # a Unix socket: a file, or an abstract name
                name = os.fsdecode(address)
                abstract = name.startswith("\0")
                if (abstract and not netns) or (not abstract and not inside(name)):
                    refuse(f"{event} to {name!r}")
        elif event in ("os.kill", "os.killpg"):
            pid = args[0]
            if not (isinstance(pid, int) and pid > 0 and ((event == "os.kill" and pid == getpid()) or own_child(pid))):
                target = "process group" if event == "os.killpg" else "process"
                refuse(f"{event}({pid}, ...): signalling {target} {pid}, which is not this program or its child")
        elif event in _EXEC_EVENTS:
            check_exec(args[_EXEC_EVENTS[event]])
        elif event == "subprocess.Popen":
            executable, popen_args = args[0], args[1]
            check_exec(executable if executable is not None else popen_args)
        elif event == "os.system":
            refuse(f"os.system({args[0]!r}): starting a shell")
        elif event in _INTROSPECTION:
            refuse(f"{event}: inspecting the interpreter's objects")

    def guard(event: str, args: tuple) -> None:
        if event in watched:
            hook(event, args)
        elif event[:7] == "ctypes.":
            refuse(f"{event}: calling C code through ctypes")

    return guard


# ---------------------------------------------------------------- protocol


def _send(message: dict) -> None:
    data = json.dumps(message).encode()
    view = memoryview(struct.pack(">I", len(data)) + data)
    while view:
        view = view[os.write(1, view) :]


def _receive() -> dict | None:
    header = _read_exact(4)
    if header is None:
        return None
    body = _read_exact(struct.unpack(">I", header)[0])
    return None if body is None else json.loads(body)


def _read_exact(n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        chunk = os.read(0, n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def main() -> int:
    try:
        slot = Slot(json.loads(sys.argv[1]))
    except BaseException as e:
        _send({"error": f"{type(e).__name__}: {e}"})
        return 1
    os.environ.clear()
    os.environ.update({"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONHASHSEED": "0"})
    for name in [m for m in sys.modules if m == "ctypes" or m.startswith("ctypes.")]:
        del sys.modules[name]  # used here, but a program's `import ctypes` must meet the guard
    gc.freeze()  # the children's collections then leave the server's objects, and their shared pages, alone
    _send({"layers": slot.layers})
    while (request := _receive()) is not None:
        try:
            result = run(slot, request)
        except Exception as e:
            result = {"status": "sandbox_error", "reason": f"{type(e).__name__}: {e}", "output": "", "duration_s": 0}
        _send(result)
    if not slot.mountns:
        shutil.rmtree(slot.base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
