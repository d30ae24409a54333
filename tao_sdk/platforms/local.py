"""Local platform: run a job as a detached process tree on this machine.

The job is started through a tiny supervisor (:mod:`tao_sdk.platforms._supervise`) in a new
session, so it survives the SDK process that launched it (an agent's shell, a notebook). The
supervisor writes the job's exit code to ``<workdir>/exit_status`` when it ends; the handle
returned by :meth:`LocalPlatform.submit` is all a later process needs to poll or cancel it.

Handle keys (also written by the supervisor itself to ``<workdir>/handle.json``): ``pid`` (supervisor pid), ``pgid`` (process group of the whole job tree),
``workdir``, ``log_path``, ``exit_status_path``, ``started`` (epoch seconds), ``host`` and
``boot_id`` (to detect a handle from another machine or from before a reboot).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tao_sdk.errors import PlatformError
from tao_sdk.platforms._supervise import (
    ABANDONED_FILE,
    HANDLE_FILE,
    _group_members,
    boot_id as _boot_id,
    make_handle,
    write_exit_status,
)
from tao_sdk.platforms.base import JobTask, Platform, PlatformState

__all__ = ["LocalPlatform"]

_SUPERVISOR = str(Path(__file__).with_name("_supervise.py"))
_EXIT_STATUS = "exit_status"
_DEFAULT_LOG = "job.log"

# Supervisors started by this process, kept so they can be reaped (no zombies) and so that
# dropping a LocalPlatform instance never detaches bookkeeping from a live child.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def _reap(pid: int | None = None) -> None:
    """Collect exit statuses of finished supervisors we launched (avoid zombies)."""
    for child_pid, proc in list(_CHILDREN.items()):
        if proc.poll() is not None:
            del _CHILDREN[child_pid]
    if pid is not None and pid not in _CHILDREN:
        try:  # our child launched outside the registry (e.g. module reloaded)
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        except OSError:
            pass


def _group_alive(pgid: int) -> bool:
    """True while process group ``pgid`` has a live member (zombies do not count)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    members = _group_members(pgid, exclude=-1)  # None without /proc: trust killpg
    return members is None or bool(members)


def _read_exit_status(path: str) -> tuple[bool, int | None]:
    """Return (file exists, exit code or None when unreadable)."""
    try:
        with open(path, encoding="ascii") as fh:
            text = fh.read().strip()
    except FileNotFoundError:
        return False, None
    except OSError:
        return True, None
    try:
        return True, int(text)
    except ValueError:
        return True, None


class LocalPlatform(Platform):
    """Runs jobs as detached local processes (``get_platform("local")``).

    Args:
        cancel_timeout: seconds :meth:`cancel` waits after SIGTERM before SIGKILL (default 10).
        python: interpreter that runs the supervisor (default: the current one).
    """

    name = "local"

    def __init__(self, cancel_timeout: float = 10.0, python: str | None = None) -> None:
        self.cancel_timeout = float(cancel_timeout)
        self.python = python or sys.executable

    def submit(self, task: JobTask) -> dict[str, Any]:
        """Start ``task.command`` detached and return the handle to store in the job record.

        The job runs in ``task.workdir`` (created) with ``os.environ + task.env`` (plus
        ``PYTHONUNBUFFERED=1`` unless set, so Python output reaches the log line by line), stdin
        from /dev/null and stdout+stderr appended to the log file. ``task.env`` is never written
        to disk. A stale ``exit_status`` from an earlier run in the same workdir is removed.
        ``{python}`` as argv[0] becomes this platform's interpreter. Raises PlatformError for
        an empty command, non-string env values, num_nodes > 1 or a container image.
        """
        task.check()
        if task.image:
            raise PlatformError(
                f"job {task.job_id}: the local platform runs the command in this machine's "
                f"environment and cannot run the container image {task.image!r}; unset the "
                "image or use a platform with a container runtime (slurm with pyxis)"
            )
        if task.num_nodes != 1:
            raise PlatformError(
                f"job {task.job_id}: the local platform runs on one node but num_nodes="
                f"{task.num_nodes}; set num_nodes=1 or use a multi-node platform (slurm, "
                "kubernetes)"
            )
        workdir = Path(task.workdir).expanduser().absolute()
        workdir.mkdir(parents=True, exist_ok=True)
        log_path = Path(task.log_path).expanduser().absolute() if task.log_path else (
            workdir / _DEFAULT_LOG
        )
        log_path.parent.mkdir(parents=True, exist_ok=True)
        exit_status_path = workdir / _EXIT_STATUS
        if (workdir / ABANDONED_FILE).exists():
            raise PlatformError(
                f"job {task.job_id}: its submission was given up (canceled, or its submitter "
                f"died) before it started ({workdir / ABANDONED_FILE}); create the job again"
            )
        for stale in (exit_status_path, workdir / HANDLE_FILE):
            try:
                stale.unlink()
            except FileNotFoundError:
                pass

        env = {**os.environ, **task.env}
        env.setdefault("PYTHONUNBUFFERED", "1")
        argv = [self.python, "-S", _SUPERVISOR, str(exit_status_path), "--",
                *task.argv(self.python)]
        _reap()
        with open(log_path, "ab", buffering=0) as log:
            try:
                proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=str(workdir),
                    start_new_session=True,
                    close_fds=True,
                )
            except OSError as exc:
                raise PlatformError(
                    f"job {task.job_id}: cannot start the local supervisor with {self.python!r}: "
                    f"{exc}; pass LocalPlatform(python=...) pointing at a working interpreter"
                ) from exc
        _CHILDREN[proc.pid] = proc
        self._await_announcement(proc, workdir / HANDLE_FILE)
        try:
            pgid = os.getpgid(proc.pid)
        except OSError:  # already gone: with start_new_session the group id is the pid
            pgid = proc.pid
        return make_handle(proc.pid, pgid, str(workdir), str(log_path), str(exit_status_path),
                           time.time())

    @staticmethod
    def _await_announcement(proc: subprocess.Popen[bytes], path: Path, timeout: float = 10.0) -> None:
        """Return once the supervisor wrote its handle (or exited): from then on the job is
        adoptable even if this process dies before the handle reaches the job record."""
        deadline = time.monotonic() + timeout
        while not path.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)

    def recover_handle(self, workdir: str) -> dict[str, Any] | None:
        """The handle the job's supervisor wrote itself in ``workdir`` when it started (so a job
        whose submitter died before saving its handle is adopted), or None when none started."""
        try:
            text = (Path(workdir) / HANDLE_FILE).read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        try:
            handle = json.loads(text)
        except ValueError:
            return None  # being written: it is renamed into place, so this is a foreign file
        return handle if isinstance(handle, dict) and "pid" in handle else None

    def block_start(self, workdir: str) -> None:
        """Forbid a supervisor that has not started its command yet to start it (it exits with
        status 125 instead). Call :meth:`recover_handle` afterwards: a job that already started
        must be tracked or cancelled through its handle."""
        path = Path(workdir) / ABANDONED_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{time.time()}\n", encoding="ascii")

    def allow_start(self, workdir: str) -> None:
        """Undo :meth:`block_start` once the job that started there is tracked (adopted)."""
        try:
            (Path(workdir) / ABANDONED_FILE).unlink()
        except FileNotFoundError:
            pass

    def _check_host(self, handle: dict[str, Any]) -> str | None:
        host = handle.get("host")
        if host and host != socket.gethostname():
            return host
        return None

    def poll(self, handle: dict[str, Any]) -> PlatformState:
        """Return the job's state from its handle (works from any process on this machine).

        ``exited`` with the code from ``exit_status`` when the supervisor wrote it; ``running``
        while the process group is alive; ``exited`` with ``exit_code=None`` when the group is
        gone without an exit status (SIGKILL, reboot); ``unknown`` for a handle from another
        host (poll it there).
        """
        pid = int(handle["pid"])
        pgid = int(handle.get("pgid", pid))
        status_path = handle["exit_status_path"]
        _reap(pid)
        exists, code = _read_exit_status(status_path)
        if exists:
            return PlatformState("exited", code, "" if code is not None else
                                 f"unreadable exit status file {status_path}")
        other = self._check_host(handle)
        if other:
            return PlatformState(
                "unknown", None, f"job runs on host {other!r}; poll it from that machine"
            )
        boot = handle.get("boot_id")
        if boot and _boot_id() not in (None, boot):
            return PlatformState(
                "exited", None, "machine rebooted since the job started; the job was lost"
            )
        if _group_alive(pgid):
            return PlatformState("running")
        exists, code = _read_exit_status(status_path)  # it may have just finished
        if exists:
            return PlatformState("exited", code)
        return PlatformState(
            "exited",
            None,
            "job process group is gone without an exit status (killed with SIGKILL, or the "
            f"machine rebooted); see the log {handle.get('log_path')}",
        )

    def _wait_gone(self, pid: int, pgid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            _reap(pid)
            if not _group_alive(pgid):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)

    def cancel(self, handle: dict[str, Any]) -> None:
        """Stop the whole job process tree: SIGTERM the process group, wait up to
        ``cancel_timeout`` seconds, then SIGKILL. Idempotent. Records exit status -15 when the
        supervisor died before writing one. Raises PlatformError for a handle from another host.
        """
        pid = int(handle["pid"])
        pgid = int(handle.get("pgid", pid))
        status_path = handle["exit_status_path"]
        other = self._check_host(handle)
        if other:
            raise PlatformError(
                f"job runs on host {other!r}; cancel it from that machine"
            )
        if _read_exit_status(status_path)[0] and not _group_alive(pgid):
            _reap(pid)
            return
        boot = handle.get("boot_id")
        if not (boot and _boot_id() not in (None, boot)):  # pgid is meaningless after reboot
            try:
                os.killpg(pgid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            if not self._wait_gone(pid, pgid, self.cancel_timeout):
                try:
                    os.killpg(pgid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                if not self._wait_gone(pid, pgid, 5.0):
                    raise PlatformError(
                        f"process group {pgid} survived SIGKILL (uninterruptible I/O?); "
                        f"check it with `ps -o pid,stat,cmd -g {pgid}`"
                    )
        if not _read_exit_status(status_path)[0]:
            write_exit_status(status_path, -int(signal.SIGTERM))

    def logs_path(self, handle: dict[str, Any]) -> str | None:
        """Return the path of the job's combined stdout/stderr log file."""
        return handle.get("log_path")
