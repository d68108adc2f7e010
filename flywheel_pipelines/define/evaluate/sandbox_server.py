"""The sandbox's fork server: one per worker slot, started by `sandbox.py` as
`python -s -S -P -B sandbox_server.py CONFIG` in a scrubbed environment, and written against the standard library
only.

It sets the slot's isolation up once — its own PID, network, IPC and mount namespaces, a read-only view of the
file system with a private /tmp — and then forks a child per program. The child drops to the slot's unprivileged
uid, applies the resource limits, installs an audit hook and runs the program with exec() in a thread of its own,
while its first thread waits to report; when it ends, whatever it left running is killed. Forking a warm
interpreter instead of starting one per program is what makes it fast.

Protocol on stdin/stdout: a 4-byte big-endian length, then a JSON object. The server first writes
`{"layers": [...]}` (or `{"error": "..."}`); then it answers each request `{"code", "files", "import_paths",
"limits"}` with `{"status", "reason", "output", "duration_s"}`. It exits when stdin closes.

The program shares its process with the code that reports on it, so the report is built to be out of its reach:
"passed" needs a secret that only the reporting thread holds and writes only once the program did pass, and no
code of the program ever runs on that thread (see `_run_code`).
"""

from __future__ import annotations

import _thread
import collections
import contextlib
import ctypes
import errno
import fcntl
import functools
import gc
import itertools
import json
import math
import operator
import os
import resource
import select
import shutil
import signal
import stat
import struct
import subprocess
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
REFUSED_EXIT = 3  # the reporting thread's exit code for "went on after a refusal whose report did not arrive"
STATUS_LINE_MAX = 1000  # characters of a reason; a status line stays under PIPE_BUF, so one write() is atomic

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
PR_SET_DUMPABLE = 4
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


def _read_only(path: str) -> None:
    """`path`'s mount (a bind mount, say) and those under it read-only and nosuid."""
    attr = _MountAttr(MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID, 0, 0, 0)
    args = (AT_FDCWD, os.fsencode(path), AT_RECURSIVE, ctypes.addressof(attr), ctypes.sizeof(attr))
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
        self.machine_tmp: int | None = None  # an O_PATH fd to the machine's /tmp, under our private one
        self.layers: list[dict] = []
        real_root = os.geteuid() == 0
        _prctl(PR_SET_CHILD_SUBREAPER, 1)  # orphans of a program come back here to be reaped, not to init
        self._enter_namespaces(real_root)
        self.base = self._private_tmp(config["tmp_bytes"]) if self.mountns else tempfile.mkdtemp(prefix="flywheel-")
        if real_root and config.get("uid"):
            self.uid = int(config["uid"])
            os.chmod(self.base, 0o711)
        # The interpreter must stay visible: behind a 0700 ancestor (root's home) or under the machine's /tmp (a
        # clone checked out there), which our private /tmp hides.
        python_dir = os.path.dirname(os.path.realpath(sys.executable))
        for path in sorted({sys.base_prefix, sys.base_exec_prefix, sys.prefix, python_dir}, key=len):
            self.expose(path)
        self.max_processes_extra = 0
        if self.uid is None and not self.userns:  # RLIMIT_NPROC counts every process of our uid
            self.max_processes_extra = sum(1 for _ in _processes_of(os.getuid())) + 8
        # A child Python runs without the audit hook: it is allowed only where every OS layer contains it.
        self.exec_ok = self.netns and self.read_only and self.pidns and (self.uid is not None or self.userns)
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
        self.machine_tmp = os.open("/tmp", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        _mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID, f"size={size},mode=0711")
        with contextlib.suppress(OSError):
            _mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID, f"size={min(size, 64 << 20)},mode=1777")
        return "/tmp"

    def expose(self, path: str) -> None:
        """Make `path` readable for the unprivileged uid although an ancestor (say a 0700 /root holding the Python
        installation) is not: that ancestor is covered with an empty tmpfs into which only `path` is bind-mounted."""
        if not self.mountns or not os.path.isabs(path):
            return
        path = os.path.normpath(path)
        if any(path == p or path.startswith(p + "/") for p in self.exposed):
            return
        if path.startswith("/tmp/") and self.machine_tmp is not None:
            # Under the machine's /tmp, hidden by our private one: bind the original in, read-only.
            if not os.path.exists(f"/proc/self/fd/{self.machine_tmp}/{path[len('/tmp/') :]}"):
                return
            os.makedirs(path, mode=0o755, exist_ok=True)
            _mount(f"/proc/self/fd/{self.machine_tmp}/{path[len('/tmp/') :]}", path, None, MS_BIND | MS_REC)
            _read_only(path)
            self.exposed.append(path)
            return
        if self.uid is None:
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
        tmp = f"a private {config['tmp_bytes'] >> 20} MiB tmpfs on /tmp holds the working directories"
        if self.read_only:
            layer("filesystem", True, f"own mount namespace: every mount read-only and nosuid; {tmp}")
        elif self.mountns:
            layer("filesystem", False, f"off: own mount namespace but the mounts stay writable; {tmp}")
        else:
            layer("filesystem", False, "off: the real file system is writable where file permissions allow")
        if self.uid is not None:
            if self.mountns:
                hidden = ", ".join(sorted(self.overmounted)) or "none"
                reads = f"directories hidden but for the Python installation: {hidden}"
            else:
                reads = "no mount namespace: it reads only what that uid may read, the Python installation included"
            layer("user", True, f"runs as uid/gid {self.uid}: no groups, no capabilities, no new privileges ({reads})")
        elif self.userns:
            layer("user", True, "own user namespace mapped to the caller's uid; no capabilities, no new privileges")
        else:
            layer("user", False, "off: runs as the caller's uid (no privilege to switch)")
        seen = "seen or signalled (own /proc)" if self.own_proc else "signalled"
        if self.pidns:
            processes = (
                f"own PID namespace: no process outside can be {seen}; after each program everything in it but the "
                "server is killed at once"
            )
        elif self.uid is not None:
            processes = "off: after each program everything running as the slot's uid is killed at once"
        else:
            processes = "off: the process tree is swept after each program instead"
        layer("processes", self.pidns, processes)
        if self.exec_ok:
            executables = (
                "only this Python may be started, as a child that the hook does not see but every OS layer above "
                "contains"
            )
        else:
            missing = [
                name
                for name, on in (
                    ("network namespace", self.netns),
                    ("read-only mounts", self.read_only),
                    ("PID namespace", self.pidns),
                    ("own uid or user namespace", self.uid is not None or self.userns),
                )
                if not on
            ]
            executables = f"no program may be started, not even this Python (missing: {', '.join(missing)})"
        layer(
            "audit hook",
            True,
            "refuses writes outside the working directory, directories opened outside it, reading process memory, "
            "sockets, signals to other processes, ctypes, subinterpreters, tracing, and inspecting other threads "
            f"or the garbage collector; {executables}; any refusal fails the program",
        )


# ---------------------------------------------------------------- one program


def run(slot: Slot, request: dict) -> dict:
    limits = request["limits"]
    started = time.monotonic()
    workdir = None
    try:
        workdir = tempfile.mkdtemp(prefix="run-", dir=slot.base)
        if slot.uid is not None:
            os.chown(workdir, slot.uid, slot.uid)
        for path in request.get("import_paths", ()):
            slot.expose(path)
        token = os.urandom(16).hex()
        watched = _run_child(slot, request, workdir, token, started)
    finally:
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)
        if slot.mountns:
            _empty("/dev/shm")
    result = _verdict(watched, limits)
    result["output"] = bytes(watched["tail"]).decode("utf-8", "replace")
    result["duration_s"] = round(time.monotonic() - started, 4)
    return result


def _run_child(slot: Slot, request: dict, workdir: str, token: str, started: float) -> dict:
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
    try:
        if pid < 0:
            raise OSError("could not fork the program's process")
        watched = _watch(pid, out_r, st_r, request["limits"], started, token, check_memory=slot.own_proc)
        _sweep(slot)
        _drain(out_r, watched)
    finally:
        os.close(out_r)
        os.close(st_r)
    return watched


def _watch(pid: int, out_r: int, st_r: int, limits: dict, started: float, token: str, *, check_memory: bool) -> dict:
    """Collect output until the child exits; kill it when the wall clock runs out, the output overflows, or (looked
    at every MEMORY_CHECK_S) all its processes together hold more memory than one may address."""
    pidfd = os.pidfd_open(pid)
    poller = select.poll()
    for fd in (pidfd, out_r, st_r):
        poller.register(fd, select.POLLIN)
    watched = {
        "tail": bytearray(),
        "total": 0,
        "killed": None,
        "open": {out_r, st_r},
        "token": token,
        "pending": bytearray(),  # a status line not yet complete
        "refusals": 0,
        "refusal": "",
        "done": None,
        "setup": None,
    }
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
    else:
        _take_status(watched, chunk)
    return len(chunk)


_FAILURES = frozenset({"failed", "early_exit", "memory", "process_limit", "refused"})


def _take_status(watched: dict, chunk: bytes) -> None:
    """Read the status lines as they come, keeping only what the verdict needs (so no amount of them costs memory).
    Every line starts after a newline: a partial line the program wrote first cannot swallow ours. Anyone in the
    program's process can write here, so a line is believed only as far as it can only hurt its writer — but for
    "passed", which needs the secret token that the reporting thread writes only when the program passed."""
    pending = watched["pending"]
    pending += chunk
    *lines, rest = pending.split(b"\n")
    watched["pending"] = bytearray(rest[-STATUS_CAP_BYTES:])
    for raw in lines:
        fields = raw.decode("utf-8", "replace").split("\t")
        kind = fields[0]
        if kind == "refused" and len(fields) >= 2:
            watched["refusals"] += 1
            if watched["refusals"] == 1:
                watched["refusal"] = fields[1]
        elif kind == "done" and watched["done"] is None and len(fields) >= 3:
            status, reason = fields[1], fields[2]
            if status == "passed" and fields[3:4] == [watched["token"]]:
                watched["done"] = ("passed", "")
            elif status in _FAILURES:
                watched["done"] = (status, reason)
        elif kind == "setup" and len(fields) >= 3 and fields[1] == watched["token"]:
            watched["setup"] = fields[2]


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


def _verdict(watched: dict, limits: dict) -> dict:
    wait_status = watched["wait_status"]
    if watched["setup"]:
        return {"status": "sandbox_error", "reason": f"could not start the program: {watched['setup']}"}
    if watched["refusals"]:
        more = watched["refusals"] - 1
        suffix = f" (and {more} more refusal{'s' if more > 1 else ''})" if more else ""
        return {"status": "refused", "reason": watched["refusal"] + suffix}
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
    if watched["done"] is not None:
        return {"status": watched["done"][0], "reason": watched["done"][1]}
    if os.WIFSIGNALED(wait_status):
        sig = os.WTERMSIG(wait_status)
        if sig == signal.SIGXCPU or watched["cpu_s"] >= max(1, math.ceil(limits["cpu_s"])):
            return {"status": "timeout", "reason": f"used its {limits['cpu_s']:g}s of CPU time"}
        return {"status": "crashed", "reason": f"killed by {signal.Signals(sig).name}"}
    code = os.WEXITSTATUS(wait_status) if os.WIFEXITED(wait_status) else -1
    if code == REFUSED_EXIT:
        return {"status": "refused", "reason": "it went on after a refusal whose report did not reach the sandbox"}
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
    try:
        path = _prepare(slot, request, workdir, limits)
    except BaseException as e:
        message = f"{type(e).__name__}: {e}".replace("\n", " ").replace("\t", " ")[:STATUS_LINE_MAX]
        with contextlib.suppress(OSError):
            os.write(STATUS_FD, f"\nsetup\t{token}\t{message}\n".encode("utf-8", "replace"))
        os._exit(70)
    _run_code(request["code"], path, workdir, token, limits, exec_ok=slot.exec_ok, netns=slot.netns)


def _prepare(slot: Slot, request: dict, workdir: str, limits: dict) -> str:
    os.setsid()
    # SIGINT kills, as it does a program without handlers: no Python handler may run on the reporting thread.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
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
    _prctl(PR_SET_DUMPABLE, 0)  # what it starts cannot read this process's memory nor open its descriptors
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
    sys.settrace, sys.setprofile = _settrace, _setprofile
    return path


def _run_code(code: str, path: str, workdir: str, token: str, limits: dict, *, exec_ok: bool, netns: bool) -> None:
    """Run the program as `__main__` in a thread of its own, and report from this one — the only thread that can
    prove the program passed.

    The proof is the line "done passed TOKEN"; the program cannot produce it because:
    - it never sees the token: this thread's frames are out of its reach (the hook refuses `sys._current_frames`,
      tracing, and any frame inspection on this thread), and none of its code runs here: from the moment it starts,
      this thread calls C functions only, reads no global name (the program can rebind those) and allocates nothing
      the garbage collector tracks (a collection here could run the program's finalizers on this thread);
    - this thread writes the line only when `passed` was released, which only the C chain below does, right after
      `_program_thread` returned: the program cannot reach the lock (no frame of its thread holds it), nor make
      that function return early (tracing, the one way to jump in a frame or rewrite its locals, is refused);
    - and only when the hook refused nothing (`refusals` is a counter: it can only go up).
    A refusal or a failure needs no proof: a false one only fails its writer."""
    module = types.ModuleType("__main__")
    module.__file__ = path
    sys.modules["__main__"] = module
    passed, finished = _thread.allocate_lock(), _thread.allocate_lock()
    passed.acquire()
    finished.acquire()
    refusals = itertools.count()
    program = functools.partial(
        _program_thread,
        code,
        path,
        module.__dict__,
        limits,
        finished.release,
        os.getpid(),
        _report_failure,
        os.getpid,
        os._exit,
    )
    chain = (map(operator.call, [program, passed.release, finished.release]), 0)
    hook = _guard(workdir, exec_ok=exec_ok, netns=netns, main_thread=_thread.get_ident(), refusals=refusals)
    pass_line = f"\ndone\tpassed\t\t{token}\n".encode()
    sys.addaudithook(hook)
    # The names below are read before the program's thread starts (inside _await_program); after that, none is.
    _await_program(
        _thread.start_new_thread,
        collections.deque,
        chain,
        finished.acquire,
        passed.acquire,
        refusals.__next__,
        os.write,
        STATUS_FD,
        pass_line,
        os._exit,
        REFUSED_EXIT,
    )


def _await_program(
    start, bootstrap, chain, finished_acquire, passed_acquire, refusals_next, write, fd, pass_line, exit_, refused
):
    """Start the program's thread, wait for it, report "passed" when it did, and end the process. Runs on the
    reporting thread: C functions only, no global name (see `_run_code`)."""
    start(bootstrap, chain)  # deque(map(operator.call, [program, passed.release, finished.release]), 0)
    finished_acquire()
    if passed_acquire(False):
        if refusals_next() == 0:
            write(fd, pass_line)
            exit_(0)
        exit_(refused)  # the hook refused something whose report the program kept from arriving
    exit_(1)


def _program_thread(code, path, namespace, limits, finished_release, main_pid, report_failure, getpid, exit_):
    """The program's thread, started by C code with nothing of ours below it. Only a normal return counts as
    finishing, and only this function's normal return lets the chain release `passed`: on any exception (SystemExit
    included) it reports the failure, wakes the reporting thread and ends the thread by raising SystemExit (which
    the thread's bootstrap swallows). `os._exit()` never returns here at all. What it calls after the program ran
    was bound before (the program may have replaced anything), and nothing that fails there keeps it from waking
    the reporting thread."""
    ok = False
    try:
        exec(compile(code, path, "exec"), namespace)
        ok = True
    except BaseException as e:
        try:  # noqa: SIM105 -- contextlib.suppress is Python code the program could have replaced
            report_failure(e, limits)
        except BaseException:
            pass
    finally:
        try:
            for stream in (*_PROGRAM_STREAMS, sys.stdout, sys.stderr):  # its own streams, too, if it set some
                try:  # noqa: SIM105
                    stream.flush()
                except BaseException:
                    pass
        except BaseException:
            pass
        if getpid() != main_pid:  # a forked copy that ran off the end does not speak for the program
            exit_(0 if ok else 1)
        if not ok:
            finished_release()
            raise SystemExit  # ends this thread quietly, whatever happened above: never a normal return


def _report_failure(e: BaseException, limits: dict) -> None:
    if isinstance(e, SystemExit):
        outcome = ("early_exit", f"the program called sys.exit({e.code!r}) before it finished")
    elif isinstance(e, MemoryError):
        outcome = ("memory", f"MemoryError: more than its {limits['memory_bytes'] >> 20} MiB of memory")
    else:
        outcome = _failure(e, limits)
        with contextlib.suppress(BaseException):
            _print_traceback(e)
    line = "\t".join(f.replace("\n", " ").replace("\t", " ")[:STATUS_LINE_MAX] for f in outcome)
    with contextlib.suppress(OSError):
        os.write(STATUS_FD, f"\ndone\t{line}\n".encode("utf-8", "replace"))


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


def _settrace(function, _settrace=sys.settrace):
    """`sys.settrace` for the program: the hook lets it through only to switch tracing off (doctest does)."""
    _settrace(function)


def _setprofile(function, _setprofile=sys.setprofile):
    """`sys.setprofile` for the program: the hook lets it through only to switch profiling off."""
    _setprofile(function)


def _fork_exec(
    args,
    executable_list,
    close_fds,
    pass_fds,
    cwd,
    env,
    p2cread,
    p2cwrite,
    c2pread,
    c2pwrite,
    errread,
    errwrite,
    errpipe_read,
    errpipe_write,
    restore_signals,
    call_setsid,
    pgid_to_set,
    gid,
    extra_groups,
    uid,
    child_umask,
    preexec_fn,
    *_,
):
    """`_posixsubprocess.fork_exec` (which subprocess calls) written in Python, so that the exec goes through
    `os.execv`/`os.execve` and their audit event: the C version raises none. Same arguments, same protocol on
    `errpipe_write` ("OSError:<hex errno>:[noexec]"), same order of steps."""
    pid = os.fork()
    if pid:
        return pid
    reached_exec = False
    try:
        for fd in (p2cwrite, c2pread, errread, errpipe_read):
            if fd != -1:
                os.close(fd)
        if c2pwrite == 0:
            c2pwrite = os.dup(c2pwrite)
        while errwrite in (0, 1):
            errwrite = os.dup(errwrite)
        for fd, target in ((p2cread, 0), (c2pwrite, 1), (errwrite, 2)):
            if fd == target:
                os.set_inheritable(fd, True)
            elif fd != -1:
                os.dup2(fd, target)
        for fd in pass_fds:
            if fd != errpipe_write:
                os.set_inheritable(fd, True)
        if cwd is not None:
            os.chdir(cwd)
        if child_umask >= 0:
            os.umask(child_umask)
        if restore_signals:
            for sig in (signal.SIGPIPE, signal.SIGXFSZ):
                signal.signal(sig, signal.SIG_DFL)
        if call_setsid:
            os.setsid()
        if pgid_to_set is not None and pgid_to_set >= 0:
            os.setpgid(0, pgid_to_set)
        if extra_groups is not None:
            os.setgroups(extra_groups)
        if gid is not None and gid != -1:
            os.setregid(gid, gid)
        if uid is not None and uid != -1:
            os.setreuid(uid, uid)
        reached_exec = True
        if preexec_fn is not None:
            try:
                preexec_fn()
            except BaseException:
                os.write(errpipe_write, b"SubprocessError:0:Exception occurred in preexec_fn.")
                os._exit(255)
        if close_fds:  # but the status channel, so that a refused exec is reported (exec closes it anyway)
            low = 3
            for keep in sorted({*pass_fds, STATUS_FD}):
                os.closerange(low, keep)
                low = max(low, keep + 1)
            os.closerange(low, os.sysconf("SC_OPEN_MAX"))
        environment = None if env is None else dict(entry.split(b"=", 1) for entry in env)
        first_error = last_error = 0
        for executable in executable_list:
            try:
                if environment is None:
                    os.execv(executable, args)
                else:
                    os.execve(executable, args, environment)
            except OSError as e:
                last_error = e.errno or 0
                if e.errno not in (errno.ENOENT, errno.ENOTDIR) and not first_error:
                    first_error = e.errno or 0
        os.write(errpipe_write, b"OSError:%x:" % (first_error or last_error))
    except OSError as e:
        with contextlib.suppress(OSError):
            os.write(errpipe_write, b"OSError:%x:%s" % (e.errno or 0, b"" if reached_exec else b"noexec"))
    except BaseException:
        with contextlib.suppress(BaseException):
            os.write(errpipe_write, b"SubprocessError:0:Exception occurred in the child")
    finally:
        os._exit(255)


# ---------------------------------------------------------------- the audit hook


class SandboxRefusal(PermissionError):
    """Raised inside the program for an operation the sandbox does not allow."""

    __module__ = "sandbox"


_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_DIRECTORY_FLAGS = os.O_DIRECTORY | os.O_PATH  # O_TMPFILE includes O_DIRECTORY
_PATH_EVENTS = (  # event, positions of the paths it changes, position of its dir_fd (or None)
    ("os.remove", (0,), 1),
    ("os.rmdir", (0,), 1),
    ("os.mkdir", (0,), 2),
    ("os.chmod", (0,), 2),
    ("os.chown", (0,), 3),
    ("os.utime", (0,), 3),
    ("os.truncate", (0,), None),
    ("os.chflags", (0,), None),
    ("os.lchflags", (0,), None),
    ("os.setxattr", (0,), None),
    ("os.removexattr", (0,), None),
    ("shutil.rmtree", (0,), 1),
    ("os.rename", (0, 1), 2),
    ("os.link", (0, 1), 2),
    ("os.symlink", (1,), 2),
)
_EXEC_EVENTS = (("os.exec", 0), ("os.posix_spawn", 0), ("os.spawn", 1))
_SOCKET_ADDRESS_EVENTS = frozenset({"socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg"})
AF_UNIX = 1
_ALWAYS_REFUSED = {  # event -> why
    "gc.get_objects": "inspecting the interpreter's objects",
    "gc.get_referrers": "inspecting the interpreter's objects",
    "gc.get_referents": "inspecting the interpreter's objects",
    "sys._current_frames": "inspecting other threads",
    "sys._current_exceptions": "inspecting other threads",
    "sys.addaudithook": "adding an audit hook",
    "cpython.PyInterpreterState_New": "starting a subinterpreter (it would run without this hook)",
    "os.system": "starting a shell",
}
_REFUSED_IMPORTS = frozenset(  # the last part of a module's name
    {
        "_posixsubprocess",  # fork_exec runs programs without an audit event
        "_xxsubinterpreters",  # interpreters without this hook
        "_xxinterpchannels",
        "_interpreters",
        "_interpchannels",
        "_interpqueues",
        "_testcapi",  # raw C API
        "_testinternalcapi",
        "_testsinglephase",
    }
)
_FRAME_EVENTS = frozenset({"sys._getframe", "object.__getattr__", "sys.settrace", "sys.setprofile"})
_TRACING_EVENTS = frozenset({"sys.settrace", "sys.setprofile"})


def _guard(workdir: str, *, exec_ok: bool, netns: bool, main_thread: int, refusals):
    """An audit hook (PEP 578) that refuses, with a readable reason, what a test program has no business doing:
    changing files outside its working directory, opening directories outside it (a `dir_fd` there would escape
    these checks), reading a process's memory, opening network sockets, signalling processes other than its own
    children, running programs (but for this Python, with every OS layer on), loading C libraries through ctypes,
    starting subinterpreters, tracing or profiling, inspecting other threads or the garbage collector, and anything
    frame-related on the reporting thread (see `_run_code`). Every refusal is reported to the server and counted, so
    a program that catches the exception still fails. The hook explains; the namespaces, uid and limits are what
    contain a program that gets around it.

    The program can reach this hook's functions (a refusal's traceback holds their frames) and change any module,
    so they are built to be tamper-proof: they read no global name (everything is bound as a default argument, read
    only, and C functions only: `os.path.realpath`'s own helpers could be replaced), keep nothing mutable, copy str
    and bytes subclasses before looking at them, and changing their code or defaults is refused."""
    python = os.path.realpath(sys.executable)
    encoding, encoding_errors = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()
    own_globals = globals()
    path_event_names = frozenset(name for name, _, _ in _PATH_EVENTS)
    exec_event_names = frozenset(name for name, _ in _EXEC_EVENTS)

    def refuse(
        message,
        _count=refusals.__next__,
        _write=os.write,
        _fd=STATUS_FD,
        _error=SandboxRefusal,
        _eperm=errno.EPERM,
        _len=len,
        _limit=STATUS_LINE_MAX,
        _oserror=OSError,
    ):
        _count()
        if _len(message) > _limit:
            message = message[:_limit] + "..."
        line = "\nrefused\t" + message.replace("\n", " ").replace("\t", " ") + "\n"
        try:  # noqa: SIM105 -- contextlib.suppress is Python code the program could replace
            _write(_fd, line.encode("utf-8", "replace"))
        except _oserror:
            pass
        raise _error(_eperm, "sandbox: " + message)

    def text(
        path,
        _type=type,
        _str=str,
        _bytes=bytes,
        _issubclass=issubclass,
        _copy=str.__str__,
        _decode=bytes.decode,
        _encoding=encoding,
        _errors=encoding_errors,
    ):
        """A path as an exact str (a subclass could answer differently each time it is asked), or None."""
        kind = _type(path)
        if kind is _str:
            return path
        if kind is _bytes or _issubclass(kind, _bytes):
            return _decode(path, _encoding, _errors)
        if _issubclass(kind, _str):
            return _copy(path)
        return None

    def resolve(path, start, _lstat=os.lstat, _readlink=os.readlink, _islink=stat.S_ISLNK, _oserror=OSError):
        """Where `path` (relative to the directory `start`) leads: symbolic links followed as the kernel would, a
        missing part and what follows it taken as written; None for a loop."""
        if not path.startswith("/"):
            path = start + "/" + path
        todo = path.split("/")
        todo.reverse()
        done, links = "", 0
        while todo:
            name = todo.pop()
            if name == "" or name == ".":
                continue
            if name == "..":
                done = done.rpartition("/")[0]
                continue
            candidate = done + "/" + name
            try:
                mode = _lstat(candidate).st_mode
            except _oserror:
                done = candidate
                continue
            if not _islink(mode):
                done = candidate
                continue
            links += 1
            if links > 40:
                return None
            try:
                target = _readlink(candidate)
            except _oserror:
                return None
            if target.startswith("/"):
                done = ""
            more = target.split("/")
            more.reverse()
            todo += more
        return done or "/"

    def places(
        path,
        dir_fd,
        every_directory,
        _resolve=resolve,
        _getcwd=os.getcwd,
        _readlink=os.readlink,
        _listdir=os.listdir,
        _fstat=os.fstat,
        _isdir=stat.S_ISDIR,
        _type=type,
        _int=int,
        _oserror=OSError,
        _valueerror=ValueError,
    ):
        """Where `path` may lead: from `dir_fd` if given, else from the working directory — and, with
        `every_directory` (for `os.open`, whose event does not show its dir_fd), from every directory it has open."""
        if path.startswith("/"):
            return [_resolve(path, "/")]
        if _type(dir_fd) is _int and dir_fd >= 0:
            try:
                return [_resolve(path, _readlink(f"/proc/self/fd/{dir_fd}"))]
            except _oserror:
                return [None]
        try:
            found = [_resolve(path, _getcwd())]
        except _oserror:
            found = [None]
        if every_directory:
            for name in _listdir("/proc/self/fd"):
                try:
                    if _isdir(_fstat(_int(name)).st_mode):
                        found.append(_resolve(path, _readlink("/proc/self/fd/" + name)))
                except (_oserror, _valueerror):
                    pass
        return found

    def inside(full, _workdir=workdir, _prefix=workdir + "/"):
        return full is not None and (full == _workdir or full.startswith(_prefix) or full == "/dev/null")

    def descriptor_inside(fd, _readlink=os.readlink, _inside=inside, _oserror=OSError):
        try:
            return _inside(_readlink(f"/proc/self/fd/{fd}"))
        except _oserror:
            return False

    def memory(full):
        return full is not None and full.startswith("/proc/") and full.endswith("/mem")

    def is_directory(full, _stat=os.stat, _isdir=stat.S_ISDIR, _oserror=OSError):
        try:
            return full is not None and _isdir(_stat(full).st_mode)
        except _oserror:
            return False

    def own_child(
        pid,
        _waitid=os.waitid,
        _p_pid=os.P_PID,
        _flags=os.WEXITED | os.WSTOPPED | os.WNOHANG | os.WNOWAIT,
        _oserror=OSError,
    ):
        try:
            _waitid(_p_pid, pid, _flags)
            return True
        except _oserror:
            return False

    def hook(
        event,
        args,
        _refuse=refuse,
        _text=text,
        _places=places,
        _inside=inside,
        _descriptor_inside=descriptor_inside,
        _memory=memory,
        _is_directory=is_directory,
        _own_child=own_child,
        _type=type,
        _int=int,
        _str=str,
        _bytes=bytes,
        _list=list,
        _tuple=tuple,
        _len=len,
        _id=id,
        _function=types.FunctionType,
        _globals=own_globals,
        _get_ident=_thread.get_ident,
        _getframe=sys._getframe,
        _getpid=os.getpid,
        _main_thread=main_thread,
        _frame_events=_FRAME_EVENTS,
        _tracing_events=_TRACING_EVENTS,
        _tracing_codes=(_settrace.__code__, _setprofile.__code__),
        _always_refused=_ALWAYS_REFUSED,
        _refused_imports=_REFUSED_IMPORTS,
        _path_events=_PATH_EVENTS,
        _path_event_names=path_event_names,
        _exec_events=_EXEC_EVENTS,
        _exec_event_names=exec_event_names,
        _socket_address_events=_SOCKET_ADDRESS_EVENTS,
        _write_flags=_WRITE_FLAGS,
        _directory_flags=_DIRECTORY_FLAGS,
        _python=python,
        _exec_ok=exec_ok,
        _netns=netns,
        _af_unix=AF_UNIX,
        _valueerror=ValueError,
    ):
        if event in _frame_events:
            if _get_ident() == _main_thread:
                _refuse(f"{event} on the sandbox's own thread")
            if event in _tracing_events:  # allowed only to switch it off, through _settrace/_setprofile
                try:
                    caller = _getframe(2)
                    code = caller.f_code
                    allowed = (code is _tracing_codes[0] or code is _tracing_codes[1]) and caller.f_locals.get(
                        "function"
                    ) is None
                except _valueerror:
                    allowed = False
                if not allowed:
                    _refuse(f"{event}: tracing or profiling could change how the sandbox's own code runs")
        elif event == "open":
            path, mode, flags = args
            name = _text(path)
            if name is None:
                if _type(path) is _int:
                    return  # an already open descriptor
                _refuse(f"opening a path of type {_type(path).__name__} (use str, bytes or pathlib)")
            os_open = mode is None  # os.open: the path may be relative to a dir_fd its event does not show
            fulls = _places(name, None, os_open)
            for full in fulls:
                if _memory(full):
                    _refuse(f"opening {path!r}: reading a process's memory")
            if _type(flags) is _int and flags & _write_flags:
                for full in fulls:
                    if not _inside(full):
                        _refuse(f"writing {path!r}, outside the working directory")
            elif os_open:
                directory = _type(flags) is _int and flags & _directory_flags
                for full in fulls:
                    if not _inside(full) and (directory or _is_directory(full)):
                        _refuse(
                            f"opening the directory {path!r}, outside the working directory (paths relative to it "
                            "would escape these checks)"
                        )
        elif event in _path_event_names:
            for spec in _path_events:
                if spec[0] == event:
                    break
            _, positions, dir_fd_at = spec
            dir_fd = args[dir_fd_at] if dir_fd_at is not None and dir_fd_at < _len(args) else None
            for i in positions:
                target = args[i]
                name = _text(target)
                if name is None:
                    if _type(target) is _int and _descriptor_inside(target):
                        continue
                    if event == "shutil.rmtree":
                        continue  # the os calls it makes are checked one by one
                    _refuse(f"{event} on {target!r}, outside the working directory")
                for full in _places(name, dir_fd, False):
                    if not _inside(full):
                        _refuse(f"{event} on {target!r}, outside the working directory")
        elif event in _always_refused:
            _refuse(f"{event}: {_always_refused[event]}")
        elif event == "import":
            name = _text(args[0])
            if name is not None and name.rpartition(".")[2] in _refused_imports:
                _refuse(f"importing {name}")
        elif event == "socket.__new__":
            if args[1] != _af_unix:
                _refuse(f"opening a network socket (family {args[1]})")
        elif event in _socket_address_events:
            name = _text(args[1])
            if name is not None:  # a Unix socket: a file, or an abstract name
                if name.startswith("\0"):
                    if not _netns:
                        _refuse(f"{event} to {name!r}")
                elif not _inside(_places(name, None, False)[0]):
                    _refuse(f"{event} to {name!r}")
        elif event == "os.kill" or event == "os.killpg":
            pid = args[0]
            ok = _type(pid) is _int and pid > 0 and ((event == "os.kill" and pid == _getpid()) or _own_child(pid))
            if not ok:
                target = "process group" if event == "os.killpg" else "process"
                _refuse(f"{event}({pid}, ...): signalling {target} {pid}, which is not this program or its child")
        elif event in _exec_event_names:
            for spec in _exec_events:
                if spec[0] == event:
                    break
            target = args[spec[1]]
            name = _text(target)
            full = None if name is None else _places(name, None, False)[0]
            if not _exec_ok or full != _python:
                _refuse(f"running {target!r} (only this Python may be started, and only with full OS isolation)")
        elif event == "subprocess.Popen":
            if not _exec_ok:  # with it, the exec that follows is checked (see _fork_exec)
                executable, program = args[0], args[1]
                if executable is None and _type(program) in (_list, _tuple) and _len(program):
                    executable = program[0]
                shown = executable if _type(executable) in (_str, _bytes) else program
                _refuse(f"running {shown!r} (no program may be started without full OS isolation)")
        elif event == "object.__setattr__" or event == "object.__delattr__":
            target = args[0]
            if _type(target) is _function and target.__globals__ is _globals:
                _refuse(f"{event}: changing the sandbox's own function {target.__name__}")
        elif event[:7] == "ctypes.":
            _refuse(f"{event}: calling C code through ctypes")

    watched = frozenset(
        {
            "open",
            "import",
            "socket.__new__",
            "os.kill",
            "os.killpg",
            "subprocess.Popen",
            "object.__setattr__",
            "object.__delattr__",
            *path_event_names,
            *exec_event_names,
            *_FRAME_EVENTS,
            *_ALWAYS_REFUSED,
            *_SOCKET_ADDRESS_EVENTS,
        }
    )

    def guard(event, args, _watched=watched, _hook=hook, _startswith=str.startswith):
        if event in _watched or _startswith(event, "ctypes."):
            _hook(event, args)

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
    # subprocess's C fork_exec runs programs without an audit event: ours execs through os.execv, which has one.
    subprocess._fork_exec = _fork_exec
    sys.modules.pop("_posixsubprocess", None)
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
