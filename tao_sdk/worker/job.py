"""One worker job: results folder, status lines, logging, upload, failure handling.

:func:`run_job` is what ``python -m tao_sdk.worker`` calls. It

1. resolves the task's results folder (``<results_dir>/<action>`` or ``<action>.results_dir``);
   a remote (``s3://``) folder is written through a local staging folder (env
   ``TAO_WORKER_STAGING``, default ``<cache>/../results/<hash>``) that is uploaded after status
   lines (at most every few seconds), after every checkpoint, and always at the end;
2. writes ``STARTED``, ``experiment.yaml`` (secrets redacted) and ``log.txt``;
3. runs the action; any exception becomes a ``FAILURE`` line whose message names the file or
   spec key and the fix (unexpected errors: the exception, where it happened, and where the
   traceback is), and a non-zero exit status; SIGTERM/SIGINT end the job the same way.

In a multi-process (DDP) train job every rank runs :func:`run_job`: the ranks join the process
group after STARTED, only rank 0 writes the results folder (the other ranks get a
:class:`JobContext` with ``main=False``: stderr logging, no files, no uploads), every rank
exits non-zero on failure and rank 0's FAILURE line names the failing rank (see
:mod:`tao_sdk.worker.distributed`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import signal
import sys
import threading
import traceback
from pathlib import Path
from typing import Any, Callable

from tao_sdk.diskspace import RESULTS_FIX, STAGING_FIX, disk_fault, disk_full_error
from tao_sdk.errors import TaoSkillsError
from tao_sdk.worker import spec as S
from tao_sdk.worker.errors import JobTerminated, SpecError, WorkerError
from tao_sdk.worker.staging import cache_root, is_remote_uri
from tao_sdk.worker.status import ResultsSync, StatusWriter, setup_logger, write_experiment_yaml

__all__ = ["JobContext", "run_job", "record_failure", "EXIT_OK", "EXIT_FAILED", "EXIT_USAGE"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class JobContext:
    """Everything an action needs: the spec, the task folder, status writer, logger, upload.

    Attributes:
        network, action: what runs.
        plugin: the network's :class:`tao_sdk.worker.plugin.NetworkPlugin` (``None`` only for
            a context made to record a failure of an unknown network).
        display: the network's human name.
        spec: the resolved spec (overrides applied; secrets still present - never log it).
        task_uri: the task's results folder as given (local path or ``s3://``).
        task_dir: the local folder the job writes into (== ``task_uri`` when local).
        status: the :class:`StatusWriter` of ``<task_dir>/status.json``.
        log: the job's logger (stderr + ``<task_dir>/log.txt``).
        sync: :class:`ResultsSync` when ``task_uri`` is remote, else ``None``.
        disk_fix: the setting a full-disk error names (see :mod:`tao_sdk.diskspace`): the
            results folder, or the staging folder of ``s3://`` results.
        main: ``False`` for the ranks other than 0 of a distributed job: nothing is written
            (status lines only update the sticky KPIs, the log goes to stderr), nothing is
            uploaded, and ``task_dir`` is only computed.
    """

    def __init__(self, network: str, action: str, spec: dict[str, Any], task_uri: str,
                 main: bool = True, rank: int = 0) -> None:
        self.network = network
        self.action = action
        self.spec = spec
        self.task_uri = task_uri.rstrip("/")
        from tao_sdk.worker import registry

        self.plugin = registry.get(network) if network in registry.REGISTRY else None
        self.display = self.plugin.display if self.plugin is not None else network
        self.main = main
        self.disk_fix = STAGING_FIX if is_remote_uri(task_uri) else RESULTS_FIX
        self._extra_uploads: list[tuple[Path, str]] = []
        if not main:
            digest = hashlib.sha1(self.task_uri.encode("utf-8")).hexdigest()[:16]
            self.task_dir = (Path(os.environ.get("TAO_WORKER_STAGING")
                                  or cache_root().parent / "results") / digest
                             if is_remote_uri(task_uri) else Path(
                                 task_uri[len("file://"):] if task_uri.startswith("file://")
                                 else task_uri).expanduser())
            # Rank 0 logs the job; the others only their warnings and errors.
            self.log = setup_logger(None, prefix=f"[rank {rank}] ")
            self.log.setLevel(logging.WARNING)
            self.sync = None
            self.status = StatusWriter(None, logger=None)
            return
        if is_remote_uri(task_uri):
            staging_root = Path(os.environ.get("TAO_WORKER_STAGING")
                                or cache_root().parent / "results")
            digest = hashlib.sha1(self.task_uri.encode("utf-8")).hexdigest()[:16]
            self.task_dir = staging_root / digest
            if self.task_dir.exists():
                shutil.rmtree(self.task_dir)
            self.task_dir.mkdir(parents=True)
        else:
            path = task_uri[len("file://"):] if task_uri.startswith("file://") else task_uri
            self.task_dir = Path(path).expanduser()
            self.task_dir.mkdir(parents=True, exist_ok=True)
        self.log = setup_logger(self.task_dir / "log.txt")
        self.sync: ResultsSync | None = None
        if is_remote_uri(task_uri):
            self.sync = ResultsSync(self.task_dir, self.task_uri, logger=self.log)
            pulled = self.sync.pull(("status.json", "log.txt"))
            if pulled:
                self.log.info("continuing %s from %s", ", ".join(pulled), self.task_uri)
                self.log = setup_logger(self.task_dir / "log.txt")
        self.status = StatusWriter(self.task_dir / "status.json", on_write=self._after_status,
                                   logger=self.log, disk_fix=self.disk_fix)

    def _after_status(self) -> None:
        if self.sync is not None:
            self.sync.sync(force=False)

    def upload_now(self) -> None:
        """Upload pending results at once (after a checkpoint); errors are logged, not raised."""
        if self.sync is not None and self.main:
            try:
                self.sync.sync(force=True)
            except Exception as exc:  # noqa: BLE001 - retried at the end of the job
                self.log.warning("upload to %s failed (will retry at the end): %s",
                                 self.task_uri, exc)

    def output_path(self, uri: str, what: str) -> Path:
        """Local path to write an output file the spec names (``export.onnx_file``...).

        A path inside the task's results folder maps into the local task folder; another
        remote URI gets a local file that is uploaded to it at the end of the job; a local path
        is used as is.
        """
        uri = str(uri)
        if uri.startswith(self.task_uri + "/"):
            return self.task_dir / uri[len(self.task_uri) + 1:]
        if is_remote_uri(uri):
            local = self.task_dir / ".outputs" / uri.rstrip("/").rsplit("/", 1)[-1]
            self._extra_uploads.append((local, uri))
            return local
        path = Path(uri[len("file://"):] if uri.startswith("file://") else uri).expanduser()
        if not path.is_absolute() and not str(uri).startswith("."):
            # A bare file name goes into the task folder.
            if len(path.parts) == 1:
                return self.task_dir / path
        return path

    def finish_uploads(self) -> None:
        """Upload everything (task folder + extra outputs); raise on the first failure."""
        if not self.main:
            return
        if self.sync is not None:
            self.sync.sync(force=True)
        if self._extra_uploads:
            from tao_sdk.storage import storage_for

            for local, uri in self._extra_uploads:
                if local.exists():
                    storage_for(uri).upload_file(local, uri)


def _location(exc: BaseException) -> str:
    """``file:line in function`` of the innermost frame of ``exc``'s traceback."""
    tb = traceback.extract_tb(exc.__traceback__)
    if not tb:
        return "unknown location"
    frame = tb[-1]
    return f"{frame.filename}:{frame.lineno} in {frame.name}"


def failure_message(exc: BaseException, ctx: JobContext | None) -> str:
    """The FAILURE message for ``exc``: the expected-error text as is, else type, text,
    location and where the full traceback was written."""
    if isinstance(exc, TaoSkillsError):
        return str(exc)
    fault = disk_fault(exc)
    if fault is not None:  # a write this worker does not guard itself (a dataset, an output...)
        target = Path(fault.filename) if fault.filename else None
        folder = target.parent if target is not None else (ctx.task_dir if ctx is not None else Path.cwd())
        return str(disk_full_error(folder, target.name if target is not None else "the job's files",
                                   code=fault.errno, fix=getattr(ctx, "disk_fix", RESULTS_FIX)))
    where = (f"{ctx.task_uri}/log.txt" if ctx is not None and ctx.main
             else "the job's stderr")  # ranks other than 0 of a distributed job: stderr only
    if isinstance(exc, MemoryError):
        return (f"out of memory ({_location(exc)}); lower dataset.batch_size or the input size "
                f"(full traceback in {where})")
    return (f"{type(exc).__name__}: {exc} (at {_location(exc)}); this is an unexpected worker "
            f"error - full traceback in {where}")


class _Signals:
    """Turn SIGTERM / SIGINT into :class:`JobTerminated` in the main thread while a job runs."""

    def __init__(self) -> None:
        self._old: dict[int, Any] = {}
        self._fired = False

    def terminating(self) -> None:
        """The job is already failing: further signals must not interrupt the FAILURE line
        and the final upload."""
        self._fired = True

    def __enter__(self) -> "_Signals":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._old[sig] = signal.signal(sig, self._handler)
        return self

    def _handler(self, signum, _frame) -> None:
        if self._fired:
            # Already terminating: let the FAILURE line and the final upload finish.
            print(f"{signal.Signals(signum).name} received again while saving the results; "
                  "ignored", file=sys.stderr)
            return
        self._fired = True
        raise JobTerminated(
            f"job terminated by signal {signal.Signals(signum).name} (cancelled by the platform "
            "or the user); partial results were kept; to continue training, set "
            "train.resume_training_checkpoint_path to the latest checkpoint"
        )

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def run_job(network: str, action: str, spec: dict[str, Any],
            actions: dict[str, Callable[[JobContext], str]] | None = None) -> int:
    """Run ``action`` of ``network`` with the resolved ``spec``; return the exit status.

    ``actions`` maps action names to callables taking a :class:`JobContext` and returning the
    SUCCESS message (default: :data:`tao_sdk.worker.engine.ACTIONS`). Never raises for job
    errors: they become a FAILURE line, an upload of the partial results, and exit status 1.

    In a process started as one rank of a multi-process train job (``LOCAL_RANK`` and
    ``WORLD_SIZE`` > 1 in the environment) the process group is joined after the STARTED line
    and left at the end; only rank 0 writes the results folder.
    """
    from tao_sdk.worker import distributed as D

    try:
        task_uri = S.task_results_dir(spec, action)
    except SpecError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return EXIT_USAGE
    rank = D.rank_env() if action == "train" else None
    main = rank is None or rank.is_main
    ctx: JobContext | None = None
    code = EXIT_FAILED
    with _Signals() as signals:
        try:
            ctx = JobContext(network, action, spec, task_uri, main=main,
                             rank=rank.rank if rank is not None else 0)
            started = f"Starting {ctx.display} {action}."
            if rank is not None:
                started = (f"Starting {ctx.display} {action}: distributed data parallel, "
                           f"{rank.describe()}.")
            ctx.status.started(started)
            if main:
                write_experiment_yaml(ctx.task_dir / "experiment.yaml", spec)
            if rank is not None:
                D.init(rank, log=ctx.log)
            if actions is None:
                from tao_sdk.worker.engine import ACTIONS as actions  # noqa: N811
            fn = actions.get(action)
            if fn is None:
                raise WorkerError(
                    f"action {action!r} is not implemented for {network}; available: "
                    f"{', '.join(sorted(actions))}"
                )
            message = fn(ctx)
            ctx.status.success(message)
            code = EXIT_OK
        except BaseException as exc:  # noqa: BLE001 - every failure must reach status.json
            signals.terminating()
            if isinstance(exc, (SystemExit,)) and exc.code in (0, None):
                raise
            msg = failure_message(exc, ctx)
            if rank is not None:
                msg = D.rank_failure_message(exc, msg)
            if ctx is not None:
                ctx.log.error("%s", "".join(traceback.format_exception(exc)).rstrip())
                try:
                    ctx.status.failure(msg)
                except Exception as write_exc:  # noqa: BLE001
                    print(f"ERROR: cannot write status.json: {write_exc}", file=sys.stderr)
            else:
                traceback.print_exc()
            print(f"ERROR: {msg}", file=sys.stderr)
            code = EXIT_FAILED
        finally:
            if rank is not None:
                D.shutdown()
            if ctx is not None:
                try:
                    ctx.finish_uploads()
                except Exception as exc:  # noqa: BLE001
                    print(f"ERROR: results upload to {ctx.task_uri} failed: {exc}; the local "
                          f"copy is in {ctx.task_dir}", file=sys.stderr)
                    code = EXIT_FAILED
    return code


def record_failure(network: str, action: str, spec: dict[str, Any], message: str) -> bool:
    """Best effort: append a FAILURE line to the task's ``status.json`` (and upload it) when
    no job could (usage errors, a distributed launch whose ranks died); ``True`` if written."""
    import re

    if not re.fullmatch(r"[A-Za-z0-9_]+", action):
        return False  # not a usable folder name
    try:
        task_uri = S.task_results_dir(spec, action)
    except Exception:  # noqa: BLE001 - no results folder: stderr is all we can do
        return False
    try:
        ctx = JobContext(network, action, spec, task_uri)
        ctx.status.failure(message)
        ctx.finish_uploads()
    except Exception as exc:  # noqa: BLE001
        print(f"ERROR: could not record the failure in {task_uri}: {exc}", file=sys.stderr)
        return False
    return True
