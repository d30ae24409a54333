"""Tiny supervisor for detached local jobs (stdlib only, imports nothing heavy).

Usage::

    python -m tao_sdk.platforms._supervise <exit_status_path> -- <command> [args...]
    python -S /path/to/tao_sdk/platforms/_supervise.py <exit_status_path> -- <command> ...

(the local platform uses the second form: it needs no installed package and starts fast)

Runs ``command`` as a child in the supervisor's own process group (the local platform starts the
supervisor in a new session; run by hand, it makes itself a process group leader), forwards
SIGTERM / SIGINT / SIGHUP to it, waits for it, stops any process it left behind in the group
(SIGTERM, then SIGKILL after a grace period, so GPUs and ports are free once the job is
reported finished), and finally writes the command's exit code
(``-N`` when killed by signal N, 127 when it cannot be started) to ``exit_status_path``
atomically. That file is how any later process learns the outcome, even when the SDK process
that launched the job is long gone.
"""

from __future__ import annotations

import os
import signal
import sys
import time

_FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
_STRAGGLER_GRACE_S = 5.0
_PREFIX = "[tao-supervise]"


def write_exit_status(path: str, code: int) -> None:
    """Atomically write ``code`` (one integer line) to ``path`` (temp file + fsync + rename)."""
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w", encoding="ascii") as fh:
        fh.write(f"{code}\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _group_members(pgid: int, exclude: int) -> list[int] | None:
    """Live (non-zombie) pids in process group ``pgid`` except ``exclude``; None without /proc."""
    try:
        entries = os.listdir("/proc")
    except OSError:
        return None
    pids = []
    for entry in entries:
        if not entry.isdigit() or int(entry) == exclude:
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                data = fh.read()
        except OSError:
            continue
        rest = data[data.rfind(b")") + 2 :].split()  # state ppid pgrp ...
        if len(rest) >= 3 and rest[0] != b"Z" and int(rest[2]) == pgid:
            pids.append(int(entry))
    return pids


def _stop_stragglers(pgid: int) -> None:
    """SIGTERM the processes the job left in our group, SIGKILL them after a grace period."""
    me = os.getpid()
    sig = signal.SIGTERM
    deadline = None
    while True:
        members = _group_members(pgid, me)
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
            if not _group_members(pgid, me):
                return
        time.sleep(0.05)


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
        if own_group:
            _stop_stragglers(os.getpgrp())
    finally:
        write_exit_status(status_path, code)
    return code if 0 <= code <= 255 else 128 + (-code if code < 0 else 1)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
