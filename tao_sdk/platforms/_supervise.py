"""Tiny supervisor for detached local jobs (stdlib only, imports nothing heavy).

Usage::

    python -m tao_sdk.platforms._supervise <exit_status_path> -- <command> [args...]
    python -S /path/to/tao_sdk/platforms/_supervise.py <exit_status_path> -- <command> ...

(the local platform uses the second form: it needs no installed package and starts fast)

Before it starts ``command`` it writes the job's handle (``handle.json`` next to the exit status
file: pid, pgid, log path, host, boot id) itself, so a job whose submitter died before saving the
handle can still be adopted; and it refuses to start when ``abandoned`` exists there (written by
whoever gave the submission up), so a job is either never started or tracked.

Runs ``command`` as a child in the supervisor's own process group (the local platform starts the
supervisor in a new session; run by hand, it makes itself a process group leader), forwards
SIGTERM / SIGINT / SIGHUP to it, waits for it, stops any process it left behind in the group or
below it (it is a child subreaper on Linux, so ranks that left the group for a session of their
own, like torchrun's, are re-parented to it and stopped too; SIGTERM, then SIGKILL after a grace
period, so GPUs and ports are free once the job is reported finished), and finally writes the
command's exit code
(``-N`` when killed by signal N, 127 when it cannot be started) to ``exit_status_path``
atomically. That file is how any later process learns the outcome, even when the SDK process
that launched the job is long gone.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time

_FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
_STRAGGLER_GRACE_S = 5.0
_PREFIX = "[tao-supervise]"
HANDLE_FILE = "handle.json"
ABANDONED_FILE = "abandoned"
#: exit status of a job whose submission was abandoned before the command started
EXIT_ABANDONED = 125
_PR_SET_CHILD_SUBREAPER = 36


def boot_id() -> str | None:
    """This machine's boot id (Linux), to tell a handle from before a reboot; None elsewhere."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as fh:
            return fh.read().strip() or None
    except OSError:
        return None


def _start_ticks(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot (tells a reused pid apart); None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    rest = data[data.rfind(b")") + 2 :].split()
    return int(rest[19]) if len(rest) > 19 and rest[0] not in (b"Z", b"X") else None


def process_identity(pid: int | None = None) -> dict:
    """Who ``pid`` (default: this process) is, for :func:`identity_alive`: pid, start ticks,
    host and boot id."""
    pid = os.getpid() if pid is None else pid
    return {"pid": pid, "start": _start_ticks(pid), "host": socket.gethostname(), "boot_id": boot_id()}


def identity_alive(ident: dict | None) -> bool | None:
    """True while the process of :func:`process_identity` ``ident`` still runs, False once it
    is gone, None when this machine cannot tell (another host, no /proc)."""
    if not ident or ident.get("host") != socket.gethostname():
        return None
    if ident.get("boot_id") and boot_id() not in (None, ident["boot_id"]):
        return False
    if not os.path.isdir("/proc"):
        return None
    start = _start_ticks(int(ident["pid"]))
    return start is not None and start == ident.get("start")


def make_handle(pid: int, pgid: int, workdir: str, log_path: str | None,
                exit_status_path: str, started: float) -> dict:
    """The local platform's handle of a job (the one format both the SDK and we write)."""
    return {"pid": pid, "pgid": pgid, "workdir": workdir, "log_path": log_path,
            "exit_status_path": exit_status_path, "started": started,
            "host": socket.gethostname(), "boot_id": boot_id()}


def _write_atomic(path: str, text: str) -> None:
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def write_exit_status(path: str, code: int) -> None:
    """Atomically write ``code`` (one integer line) to ``path`` (temp file + fsync + rename)."""
    _write_atomic(path, f"{code}\n")


def _proc_stats() -> list[tuple[int, bytes, int, int]] | None:
    """``(pid, state, ppid, pgrp)`` of every process in /proc; None without /proc."""
    try:
        entries = os.listdir("/proc")
    except OSError:
        return None
    out = []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                data = fh.read()
        except OSError:
            continue
        rest = data[data.rfind(b")") + 2 :].split()  # state ppid pgrp ...
        if len(rest) >= 3:
            out.append((int(entry), rest[0], int(rest[1]), int(rest[2])))
    return out


def _group_members(pgid: int, exclude: int) -> list[int] | None:
    """Live (non-zombie) pids in process group ``pgid`` except ``exclude``; None without /proc."""
    stats = _proc_stats()
    if stats is None:
        return None
    return [pid for pid, state, _ppid, pgrp in stats if pgrp == pgid and pid != exclude and state != b"Z"]


def _descendants(root: int) -> list[int]:
    """Live pids below ``root`` in the process tree (orphans re-parented to us included), except
    other supervisors and what runs under them."""
    children: dict[int, list[int]] = {}
    for pid, state, ppid, _pgrp in _proc_stats() or []:
        if state != b"Z":
            children.setdefault(ppid, []).append(pid)
    out, todo = [], [root]
    while todo:
        for pid in children.get(todo.pop(), []):
            if _is_supervisor(pid):
                continue  # a job of its own (an AutoML trial): tracked and stopped separately
            out.append(pid)
            todo.append(pid)
    return out


def _is_supervisor(pid: int) -> bool:
    """True when ``pid`` runs this supervisor (the root of another job's tree)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            args = fh.read().split(b"\0")
    except OSError:
        return False
    return any(a.endswith(b"_supervise.py") or a == b"tao_sdk.platforms._supervise" for a in args[:4])


def _leftovers(pgid: int | None, me: int) -> list[int]:
    """What the job left running: members of our group (when we lead it) and our descendants."""
    found = set(_descendants(me))
    if pgid is not None:
        found.update(_group_members(pgid, me) or [])
    return sorted(found)


def _reap_all() -> None:
    """Collect every exited child (we are a subreaper: orphans of the job become ours)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _stop_stragglers(pgid: int | None) -> None:
    """SIGTERM the processes the job left behind (in our group, or below us), SIGKILL them after
    a grace period."""
    me = os.getpid()
    sig = signal.SIGTERM
    deadline = None
    while True:
        _reap_all()
        members = _leftovers(pgid, me)
        if not members:
            return
        if deadline is None:
            deadline = time.monotonic() + _STRAGGLER_GRACE_S
        elif time.monotonic() >= deadline:
            sig = signal.SIGKILL
        for pid in members:
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        if sig == signal.SIGKILL:
            time.sleep(0.05)
            _reap_all()
            if not _leftovers(pgid, me):
                return
        time.sleep(0.05)


def _become_subreaper() -> None:
    """Linux: orphaned descendants (e.g. torchrun ranks in sessions of their own whose agent
    died) are re-parented to us instead of init, so we can stop them. Best effort elsewhere."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except Exception:  # noqa: BLE001
        pass


def _announce(status_path: str) -> bool:
    """Write our handle next to ``status_path``; False when the submission was abandoned (then
    the command must not start). Handle first, then the check: whoever abandons writes its
    file first and checks for the handle after, so one of us always sees the other."""
    workdir = os.path.dirname(os.path.abspath(status_path))
    try:
        log_path = os.readlink("/proc/self/fd/1")
    except OSError:
        log_path = None
    if log_path is not None and not log_path.startswith("/"):
        log_path = None  # a pipe or socket, not a file
    handle = make_handle(os.getpid(), os.getpgrp(), workdir, log_path,
                         os.path.abspath(status_path), time.time())
    _write_atomic(os.path.join(workdir, HANDLE_FILE), json.dumps(handle))
    return not os.path.exists(os.path.join(workdir, ABANDONED_FILE))


def main(argv: list[str]) -> int:
    """Entry point; ``argv`` is ``[exit_status_path, "--", command...]``. Returns exit code."""
    if len(argv) < 3 or argv[1] != "--":
        sys.stderr.write(
            f"{_PREFIX} usage: python -m tao_sdk.platforms._supervise "
            "<exit_status_path> -- <command> [args...]\n"
        )
        return 2
    status_path, command = argv[0], argv[2:]
    state: dict[str, int | None] = {"child": None, "pending": None}

    def forward(signum: int, _frame: object) -> None:
        child = state["child"]
        if child is None:
            state["pending"] = signum
            return
        try:
            os.kill(child, signum)
        except OSError:
            pass

    for sig in _FORWARDED:
        signal.signal(sig, forward)

    # The job tree must live in a process group of its own (the local platform starts us in a
    # new session already); never clean up a group we merely joined, e.g. a caller's shell.
    if os.getpgrp() != os.getpid():
        try:
            os.setpgid(0, 0)
        except OSError:
            pass
    own_group = os.getpgrp() == os.getpid()
    _become_subreaper()
    if not _announce(status_path):
        sys.stderr.write(f"{_PREFIX} not started: the submission of this job was abandoned "
                         "(its submitter died or it was canceled before it started)\n")
        sys.stderr.flush()
        write_exit_status(status_path, EXIT_ABANDONED)
        return EXIT_ABANDONED

    try:
        child = os.posix_spawnp(
            command[0],
            command,
            os.environ,
            setsigdef=(signal.SIGPIPE, signal.SIGXFSZ, *_FORWARDED),
        )
    except OSError as exc:
        code = 126 if isinstance(exc, PermissionError) else 127
        sys.stderr.write(f"{_PREFIX} cannot start {command[0]!r}: {exc}\n")
        sys.stderr.flush()
        write_exit_status(status_path, code)
        return code

    state["child"] = child
    if state["pending"] is not None:
        forward(state["pending"], None)

    _, status = os.waitpid(child, 0)
    code = os.waitstatus_to_exitcode(status)
    state["child"] = None  # ignore further signals: we are finishing up
    if code < 0:
        sys.stderr.write(f"{_PREFIX} job killed by signal {-code}\n")
        sys.stderr.flush()
    try:
        _stop_stragglers(os.getpgrp() if own_group else None)
    finally:
        write_exit_status(status_path, code)
    return code if 0 <= code <= 255 else 128 + (-code if code < 0 else 1)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
