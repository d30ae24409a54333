"""The writing side of the TAO results-folder contract.

- :class:`StatusWriter` appends TAO ``status.json`` JSON Lines (``date``, ``time``, ``status``,
  ``verbosity``, ``message``; per-epoch ``epoch`` / ``max_epoch`` / ``step`` / ``max_step`` /
  ``time_per_epoch`` / ``eta``; sticky ``kpi`` / ``graphical`` / ``categorical`` dicts that are
  repeated on every line until replaced).
- :class:`ResultsSync` mirrors a local staging folder to a remote (``s3://``) results folder:
  new or changed files are uploaded as they appear, and :meth:`ResultsSync.sync` with
  ``force=True`` uploads everything that changed (the worker calls it at the end, also on
  failure).
- :func:`write_experiment_yaml` writes the resolved spec with secrets redacted.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import math
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable

import yaml

from tao_sdk.worker.spec import redact

__all__ = [
    "StatusWriter",
    "ResultsSync",
    "write_experiment_yaml",
    "format_timedelta",
    "setup_logger",
    "write_text_atomic",
]

_STICKY = ("kpi", "graphical", "categorical")
_ORDER = ("date", "time", "status", "verbosity", "message", "epoch", "max_epoch", "step",
          "max_step", "time_per_epoch", "eta")


def format_timedelta(seconds: float | None) -> str | None:
    """Format seconds the way TAO does (``str(datetime.timedelta)``: ``"0:01:02.345678"``)."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return None
    return str(_dt.timedelta(seconds=round(float(seconds), 6)))


def _clean(value: Any) -> Any:
    """Make ``value`` JSON-safe: numpy / torch scalars -> Python numbers, NaN/inf -> strings."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and callable(value.item):
        try:
            value = value.item()
        except (TypeError, ValueError):
            return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


class StatusWriter:
    """Append TAO status lines to ``<task dir>/status.json``.

    Args:
        path: the ``status.json`` file (its folder is created); ``None`` writes nothing (the
            ranks other than 0 of a distributed job) but keeps the sticky dicts.
        on_write: called after every line is written (the worker uses it to upload the
            results folder when it is remote).
        logger: every line's message is also logged there.
        disk_fix: the setting a full-disk error names (default: the results folder's).

    Lines are appended and flushed (``fsync``) one at a time, so a reader polling the file sees
    complete lines only. Thread-safe.
    """

    def __init__(self, path: str | os.PathLike[str] | None,
                 on_write: Callable[[], None] | None = None,
                 logger: logging.Logger | None = None, disk_fix: str | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self.disk_fix = disk_fix
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._on_write = on_write
        self._logger = logger
        self._sticky: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self.last_status: str | None = None

    @property
    def kpi(self) -> dict[str, Any]:
        """The current sticky KPI dict (a copy)."""
        return dict(self._sticky.get("kpi", {}))

    def write(self, status: str, message: str, verbosity: str = "INFO", *,
              kpi: dict[str, Any] | None = None, graphical: dict[str, Any] | None = None,
              categorical: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
        """Append one line and return it.

        ``kpi`` / ``graphical`` / ``categorical`` values are merged into the sticky dicts
        (a key keeps its last value until it is written again); every line repeats them.
        Other keyword fields (``epoch``, ``max_epoch``, ``step``, ``max_step``,
        ``time_per_epoch``, ``eta``...) are written on this line only; ``None`` ones are left out.
        """
        now = _dt.datetime.now()
        line: dict[str, Any] = {
            "date": f"{now.month}/{now.day}/{now.year}",
            "time": f"{now.hour}:{now.minute:02d}:{now.second:02d}",
            "status": status,
            "verbosity": verbosity,
            "message": message,
        }
        for key, value in fields.items():
            if value is not None:
                line[key] = value
        with self._lock:
            for name, value in (("kpi", kpi), ("graphical", graphical),
                                ("categorical", categorical)):
                if value:
                    self._sticky.setdefault(name, {}).update(_clean(value))
            for name in _STICKY:
                if self._sticky.get(name):
                    line[name] = dict(self._sticky[name])
            ordered = {k: line[k] for k in _ORDER if k in line}
            ordered.update({k: v for k, v in line.items() if k not in ordered})
            if self.path is not None:
                self._append(json.dumps(_clean(ordered), ensure_ascii=False) + "\n")
            self.last_status = status
        if self._logger is not None:
            level = logging.ERROR if status == "FAILURE" else logging.INFO
            extra = ""
            if "epoch" in ordered:
                extra = f" [epoch {ordered['epoch']}/{ordered.get('max_epoch', '?')}]"
            if kpi:
                extra += " " + ", ".join(f"{k}={_fmt(v)}" for k, v in kpi.items())
            self._logger.log(level, "%s: %s%s", status, message, extra)
        if self._on_write is not None:
            self._on_write()
        return ordered

    def _append(self, text: str) -> None:
        """Append one line and fsync it; a line the filesystem refused (full, read-only) is cut
        off again, so readers never see half a line, and raises DiskFullError."""
        from tao_sdk.diskspace import RESULTS_FIX, disk_fault, disk_full_error

        assert self.path is not None
        size = self.path.stat().st_size if self.path.exists() else 0
        try:
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            if disk_fault(exc) is None:
                raise
            try:
                os.truncate(self.path, size)
            except OSError:
                pass
            raise disk_full_error(self.path.parent, "status.json", needed=len(text.encode()),
                                  code=exc.errno, fix=self.disk_fix or RESULTS_FIX) from None

    def started(self, message: str, **fields: Any) -> dict[str, Any]:
        """Write a STARTED line."""
        return self.write("STARTED", message, **fields)

    def running(self, message: str, **fields: Any) -> dict[str, Any]:
        """Write a RUNNING line (progress, per-epoch metrics...)."""
        return self.write("RUNNING", message, **fields)

    def success(self, message: str, **fields: Any) -> dict[str, Any]:
        """Write the final SUCCESS line."""
        return self.write("SUCCESS", message, **fields)

    def failure(self, message: str, **fields: Any) -> dict[str, Any]:
        """Write the final FAILURE line (verbosity ERROR)."""
        return self.write("FAILURE", message, verbosity="ERROR", **fields)


def _fmt(value: Any) -> str:
    """Short human form of a KPI value for the log."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


class ResultsSync:
    """Mirror a local staging folder to a remote results folder (``s3://...``).

    Args:
        local_dir: the staging folder the job writes into.
        remote_uri: the results folder the files must reach.
        min_interval: :meth:`sync` without ``force`` does nothing if the previous upload
            finished less than this many seconds ago (status lines can be frequent).
        logger: upload problems are logged there.

    Only files whose size or modification time changed since their last upload are sent;
    hidden files and folders (temporary ``.tao-tmp-*`` files) are never sent.
    Symbolic links (``rtdetr_model_latest.pth``) are uploaded as copies of their target,
    since object stores have no links.
    """

    def __init__(self, local_dir: str | os.PathLike[str], remote_uri: str,
                 min_interval: float = 5.0, logger: logging.Logger | None = None) -> None:
        from tao_sdk.storage import storage_for

        self.local_dir = Path(local_dir)
        self.remote_uri = remote_uri.rstrip("/")
        self.store = storage_for(remote_uri)
        self.min_interval = min_interval
        self._logger = logger
        self._sent: dict[str, tuple[int, int, str]] = {}
        self._last = 0.0
        self._lock = threading.Lock()
        self.last_error: str | None = None

    def pull(self, names: tuple[str, ...] = ("status.json",)) -> list[str]:
        """Download ``names`` from the remote folder into the staging folder when they exist
        there, so that a restarted job appends to its previous ``status.json``.

        Returns the names that were downloaded.
        """
        got = []
        for name in names:
            uri = self.store.join(self.remote_uri, name)
            if self.store.exists(uri):
                self.store.download_file(uri, self.local_dir / name)
                got.append(name)
                self._sent[name] = self._signature(self.local_dir / name)
        return got

    @staticmethod
    def _signature(path: Path) -> tuple[int, int, str]:
        st = path.stat()  # follows links
        target = os.readlink(path) if path.is_symlink() else ""
        return (st.st_size, st.st_mtime_ns, target)

    def pending(self) -> list[str]:
        """Relative paths of the local files that are new or changed since their last upload."""
        out = []
        if not self.local_dir.is_dir():
            return out
        for root, dirs, files in os.walk(self.local_dir, followlinks=False):
            dirs[:] = [d for d in dirs if not d.startswith(".")]  # private work folders
            for name in files:
                path = Path(root) / name
                if name.startswith(".") or not path.exists():
                    continue  # temporary / partial files (".tao-tmp-*")
                rel = path.relative_to(self.local_dir).as_posix()
                if self._sent.get(rel) != self._signature(path):
                    out.append(rel)
        # status.json last: a reader that sees SUCCESS/FAILURE finds every artifact in place.
        out.sort(key=lambda r: (r == "status.json", r))
        return out

    def sync(self, force: bool = False) -> int:
        """Upload new/changed files; return how many were uploaded.

        Without ``force`` the call is skipped when the previous one was less than
        ``min_interval`` seconds ago, and upload errors are logged (and retried at the next
        call) instead of raised. With ``force`` every pending file is uploaded and the first
        error is raised (a :class:`tao_sdk.errors.StorageError`).
        """
        with self._lock:
            if not force and time.monotonic() - self._last < self.min_interval:
                return 0
            count = 0
            first_error: BaseException | None = None
            for rel in self.pending():
                path = self.local_dir / rel
                try:
                    sig = self._signature(path)
                    self.store.upload_file(path, self.store.join(self.remote_uri, rel))
                    self._sent[rel] = sig
                    count += 1
                except Exception as exc:  # noqa: BLE001 - reported below, retried next sync
                    self.last_error = f"upload of {rel} to {self.remote_uri} failed: {exc}"
                    if self._logger is not None:
                        self._logger.warning(self.last_error)
                    if first_error is None:
                        first_error = exc
            self._last = time.monotonic()
            if force and first_error is not None:
                raise first_error
            return count


def write_experiment_yaml(path: str | os.PathLike[str], spec: dict[str, Any]) -> None:
    """Write ``spec`` to ``path`` as YAML with every secret redacted (see :func:`redact`)."""
    write_text_atomic(Path(path), yaml.safe_dump(redact(spec), sort_keys=False, default_flow_style=None))


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through ``<name>.tmp`` and a rename (parents created); a
    full / read-only filesystem raises DiskFullError and leaves no ``.tmp`` file."""
    from tao_sdk.diskspace import guarded_write

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    data = text.encode("utf-8")
    with guarded_write(tmp, path.name, needed=len(data)):
        tmp.write_bytes(data)
        os.replace(tmp, path)


def setup_logger(log_file: str | os.PathLike[str] | None, name: str = "tao_sdk.worker",
                 prefix: str = "") -> logging.Logger:
    """Return the worker logger, writing to stderr and (when given) to ``log_file``.

    ``prefix`` starts every message (``"[rank 1] "`` for the other ranks of a distributed job).
    Handlers from a previous job in the same process are removed first.
    """
    logger = logging.getLogger(name)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    fmt = logging.Formatter(f"%(asctime)s [%(levelname)s] {prefix.replace('%', '%%')}%(message)s",
                            "%Y-%m-%d %H:%M:%S")
    stream = logging.StreamHandler()
    stream.setFormatter(fmt)
    logger.addHandler(stream)
    if log_file is not None:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        fh = _LogFile(log_file, encoding="utf-8")
        fh.setFormatter(fmt)
        logger.addHandler(fh)
    return logger


class _LogFile(logging.FileHandler):
    """``log.txt``: when the filesystem refuses a line (full disk), say so once on stderr and
    keep logging to stderr only, instead of a logging traceback per line."""

    failed = False

    def emit(self, record: logging.LogRecord) -> None:
        if not self.failed:
            super().emit(record)

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        import sys

        self.failed = True
        exc = sys.exc_info()[1]
        print(f"WARNING: cannot write {self.baseFilename} ({exc}); the log continues on stderr only",
              file=sys.stderr)
