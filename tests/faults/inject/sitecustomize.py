"""Fault injection for tests/faults (never imported by product code): SIGKILL this process at
one point of a job submission. Active only when ``TAO_FAULT_POINT`` is set and this process's
command line contains ``TAO_FAULT_PROC``; fires once (``TAO_FAULT_ONCE`` is created when it does),
at the point's hit number ``TAO_FAULT_SKIP`` + 1 in this process (default: the first hit).

Points: ``after_create`` (the job record exists, nothing started), ``before_start`` (just before
the platform starts the job), ``after_start`` (the job runs, its handle is not stored yet).
Raising instead of dying (the submit fails after the job announced itself, and the submitter
lives on): ``oserror_after_start`` (an OSError, an incidental fault: the job must be adopted),
``platform_error_after_start`` (a PlatformError, the platform refusing it: the job must stop).
"""

import errno
import os
import signal

_POINT = os.environ.get("TAO_FAULT_POINT")
_HITS = [int(os.environ.get("TAO_FAULT_SKIP") or 0)]


def _mine() -> bool:
    try:
        with open("/proc/self/cmdline", "rb") as fh:
            cmdline = fh.read().decode(errors="replace")
    except OSError:
        return False
    return os.environ.get("TAO_FAULT_PROC", "\0\0") in cmdline


def _fire() -> None:
    once = os.environ["TAO_FAULT_ONCE"]
    if os.path.exists(once):
        return
    _HITS[0] -= 1
    if _HITS[0] >= 0:
        return
    open(once, "w").close()
    os.kill(os.getpid(), signal.SIGKILL)


def _install() -> None:
    from tao_sdk.jobstore import JobStore
    from tao_sdk.platforms.local import LocalPlatform

    create, submit = JobStore.create, LocalPlatform.submit

    def create_then_die(self, record):
        out = create(self, record)
        if _POINT == "after_create" and record.kind != "automl":
            _fire()
        return out

    def submit_with_fault(self, task):
        if _POINT == "before_start":
            _fire()
        handle = submit(self, task)
        if _POINT == "after_start":
            _fire()
        if _POINT == "oserror_after_start":
            raise OSError(errno.EIO, "injected I/O error after the job started")
        if _POINT == "platform_error_after_start":
            from tao_sdk.errors import PlatformError

            raise PlatformError("injected: the platform refuses this job after starting it")
        return handle

    JobStore.create = create_then_die
    LocalPlatform.submit = submit_with_fault


if _POINT and _mine():
    _install()
