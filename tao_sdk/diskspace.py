"""A full disk, an exceeded quota, a read-only filesystem: recognise them, check free space
before a write that can be sized, remove what a failed write left, and say what to do.

Every write of the SDK and the worker that can fill a disk (checkpoints, ONNX / TensorRT files,
``status.json``, the dataset cache, local "uploads", spec files, the job store) ends in a
:class:`tao_sdk.errors.DiskFullError` whose one-line message names the folder, its free space,
the bytes the write needed (when known) and the fix, e.g.::

    no space left in /mnt/small/results/job-1/train: 412 KiB free, 1.5 MiB needed to write
    checkpoint model_epoch_000.pth; free space there or point TAO_SKILLS_STORAGE (or the spec's
    results_dir) at a bigger disk

Stdlib only (the worker and the SDK both import it).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import DiskFullError

__all__ = ["DISK_ERRNOS", "RESULTS_FIX", "STAGING_FIX", "WORKSPACE_FIX", "CACHE_FIX", "check_free_space", "disk_fault",
           "disk_full_error", "format_bytes", "free_bytes", "guarded_write"]

#: errno values that mean "this filesystem cannot take the write": out of space, over quota, read-only
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})

#: the fix for the results folder (where jobs write checkpoints, exports, status.json)
RESULTS_FIX = "TAO_SKILLS_STORAGE (or the spec's results_dir)"
#: the fix for the local staging folder the worker writes ``s3://`` results through
STAGING_FIX = "TAO_WORKER_STAGING (the local staging folder of s3:// results)"
#: the fix for the SDK workspace (job store, job folders, logs)
WORKSPACE_FIX = "TAO_SKILLS_WORKSPACE (job store and job folders)"
#: the fix for the worker's dataset cache
CACHE_FIX = "TAO_WORKER_CACHE (the dataset cache; `tao-skills cache clear` frees it)"

#: a write whose size is known must leave this much room (filesystem metadata, status lines)
_RESERVE = 64 * 1024
#: below this many free bytes after a failed write the filesystem counts as full
_FULL_BELOW = 256 * 1024


def format_bytes(n: int | None) -> str:
    """``1536`` -> ``"1.5 KiB"`` (binary units; ``"?"`` for None)."""
    if n is None:
        return "?"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # pragma: no cover - unreachable


def _existing(path: str | os.PathLike[str]) -> Path:
    """``path`` or its nearest existing ancestor (statvfs needs an existing path)."""
    p = Path(path).absolute()
    while not p.exists() and p.parent != p:
        p = p.parent
    return p


def free_bytes(path: str | os.PathLike[str]) -> int | None:
    """Bytes an unprivileged writer may still use on the filesystem holding ``path`` (or its
    nearest existing ancestor); None when the filesystem cannot say."""
    try:
        st = os.statvfs(_existing(path))
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def disk_fault(exc: BaseException | None) -> OSError | None:
    """The OSError with an errno of :data:`DISK_ERRNOS` in ``exc`` or its causes, else None."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in DISK_ERRNOS:
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def disk_full_error(folder: str | os.PathLike[str], what: str, *, needed: int | None = None,
                    code: int = errno.ENOSPC, fix: str = RESULTS_FIX) -> DiskFullError:
    """The :class:`DiskFullError` for a write of ``what`` into ``folder`` that the filesystem
    refused with errno ``code`` (ENOSPC, EDQUOT or EROFS); ``fix`` names the setting that moves
    the write elsewhere (:data:`RESULTS_FIX`, :data:`WORKSPACE_FIX`, :data:`CACHE_FIX`)."""
    folder = str(folder)
    setting = fix.split(" ", 1)[0]
    if code == errno.EROFS:
        return DiskFullError(
            f"{folder} is on a read-only filesystem: cannot write {what}; set {fix} to a writable "
            f"folder (e.g. export {setting}=$HOME/tao-skills-data) or remount it read-write")
    free = free_bytes(folder)
    why = "disk quota exceeded" if code == errno.EDQUOT else "no space left"
    need = f", {format_bytes(needed)} needed" if needed is not None else ""
    return DiskFullError(
        f"{why} in {folder}: {format_bytes(free)} free{need} to write {what}; free space there"
        f"{' (or raise the quota)' if code == errno.EDQUOT else ''} or point {fix} at a bigger disk")


def check_free_space(folder: str | os.PathLike[str], needed: int, what: str, *,
                     fix: str = RESULTS_FIX) -> None:
    """Raise :class:`DiskFullError` before writing ``needed`` bytes of ``what`` into ``folder``
    when its filesystem has less free space than that (plus a small reserve)."""
    free = free_bytes(folder)
    if free is not None and free < needed + _RESERVE:
        raise disk_full_error(folder, what, needed=needed, fix=fix)


def _unlink(path: Path) -> None:
    try:
        if path.is_dir() and not path.is_symlink():
            import shutil

            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink()
    except OSError:
        pass


@contextmanager
def guarded_write(tmp: str | os.PathLike[str], what: str, *, needed: int | None = None,
                  fix: str = RESULTS_FIX) -> Iterator[None]:
    """Run a write to the temporary file (or folder) ``tmp``: when it fails, ``tmp`` is removed,
    and a failure of a full / read-only / over-quota filesystem is raised as
    :class:`DiskFullError` (also when a library hid the errno, e.g. ``torch.save``'s
    "unexpected pos" error, if the filesystem is full once the write failed). With ``needed``
    (bytes) the free space is checked first."""
    tmp = Path(tmp)
    try:
        if needed is not None:
            check_free_space(tmp.parent, needed, what, fix=fix)
        yield
    except BaseException as exc:
        fault = disk_fault(exc)
        free = free_bytes(tmp.parent) if fault is None and isinstance(exc, Exception) else None
        full = fault is not None or (free is not None and free < _FULL_BELOW)
        _unlink(tmp)
        if full and not isinstance(exc, DiskFullError):
            code = fault.errno if fault is not None else errno.ENOSPC
            raise disk_full_error(tmp.parent, what, needed=needed, code=code, fix=fix) from exc
        raise
