"""The worker's dataset cache: where staged datasets live, its size cap and LRU eviction.

Remote dataset files are downloaded, and image archives extracted, into one folder per source
(an *entry*, ``<root>/<16 hex>``) under the cache root: ``$TAO_WORKER_CACHE``, else
``~/.cache/tao-skill-bank/datasets``. Each entry records its last use (``.tao-used``, touched
every time a job stages from it); a job holds a shared lock on the entries it uses until it
exits, so eviction never removes data a running job reads.

After staging, the worker evicts the least recently used idle entries until the cache fits its
cap: ``$TAO_WORKER_CACHE_MAX_BYTES`` (bytes, or with a K/M/G/T suffix; default 100G; ``0``: no
cap). See it with ``tao-skills cache [--json]`` (:func:`cache_info`), empty it with
``tao-skills cache clear`` (:func:`clear_cache`). Stdlib only: the SDK and the worker share it.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tao_sdk.errors import TaoSkillsError

__all__ = [
    "CACHE_ENV",
    "CACHE_MAX_ENV",
    "DEFAULT_MAX_BYTES",
    "cache_root",
    "cache_entry",
    "cache_max_bytes",
    "cache_info",
    "clear_cache",
    "evict",
    "parse_bytes",
]

CACHE_ENV = "TAO_WORKER_CACHE"
CACHE_MAX_ENV = "TAO_WORKER_CACHE_MAX_BYTES"
DEFAULT_MAX_BYTES = 100 * 1024**3
_USED = ".tao-used"
_LOCK = ".tao-lock"
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
# lock files this process holds (shared) until it exits: the entries its job uses
_HELD: dict[str, Any] = {}


def parse_bytes(text: str | int, what: str) -> int:
    """``"100G"`` / ``"512M"`` / ``"1048576"`` -> bytes. Raises TaoSkillsError naming ``what``."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*", str(text), re.IGNORECASE)
    if not m:
        raise TaoSkillsError(f"{what}={text!r} is not a size; use bytes or a K/M/G/T suffix, e.g. {what}=100G")
    return int(float(m.group(1)) * _UNITS[m.group(2).upper()])


def cache_root(create: bool = True) -> Path:
    """The cache folder: ``$TAO_WORKER_CACHE``, else ``~/.cache/tao-skill-bank/datasets``."""
    env = os.environ.get(CACHE_ENV)
    root = Path(env).expanduser() if env else Path.home() / ".cache" / "tao-skill-bank" / "datasets"
    if create:
        root.mkdir(parents=True, exist_ok=True)
    return root


def cache_max_bytes() -> int:
    """The cache cap in bytes (``$TAO_WORKER_CACHE_MAX_BYTES``, default 100G; 0 = no cap)."""
    raw = os.environ.get(CACHE_MAX_ENV, "").strip()
    return parse_bytes(raw, CACHE_MAX_ENV) if raw else DEFAULT_MAX_BYTES


def cache_entry(key: str) -> Path:
    """The entry folder ``<root>/<key>`` (created), marked used now and locked (shared) by this
    process until it exits, so no eviction removes it while the job runs."""
    path = cache_root() / key
    path.mkdir(parents=True, exist_ok=True)
    (path / _USED).write_text(f"{time.time()}\n", encoding="ascii")
    if str(path) not in _HELD:
        fh = open(path / _LOCK, "a+b")  # noqa: SIM115 - held until the process exits
        _flock(fh, shared=True, block=True)
        _HELD[str(path)] = fh
    return path


@contextlib.contextmanager
def exclusive(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive lock on the file ``lock_path`` (created) for the ``with`` block, so
    one process at a time fills a cache folder that several jobs on this machine may want at
    once (AutoML trials, the ranks of a distributed job, two nodes sharing the cache)."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+b") as fh:
        _flock(fh, shared=False, block=True)
        yield


def _flock(fh: Any, shared: bool, block: bool) -> bool:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no locking, eviction treats all as idle
        return True
    flags = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | (0 if block else fcntl.LOCK_NB)
    try:
        fcntl.flock(fh.fileno(), flags)
        return True
    except BlockingIOError:
        return False


def _size(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total


def _last_used(path: Path) -> float:
    try:
        return (path / _USED).stat().st_mtime
    except OSError:
        return path.stat().st_mtime if path.exists() else 0.0


def _entries() -> list[Path]:
    root = cache_root(create=False)
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")) if root.is_dir() else []


def _busy(path: Path) -> bool:
    """True when a running job (another process, or this one) holds the entry."""
    return not _if_idle(path, lambda: None)


def _if_idle(path: Path, action: Any) -> bool:
    """Run ``action()`` while holding the entry's lock exclusively; False (nothing run) when a
    running job (another process, or this one) holds the entry."""
    if str(path) in _HELD:
        return False
    try:
        fh = open(path / _LOCK, "a+b")  # noqa: SIM115
    except OSError:
        fh = None
    try:
        if fh is not None and not _flock(fh, shared=False, block=False):
            return False
        action()
        return True
    finally:
        if fh is not None:
            fh.close()


def cache_info() -> dict[str, Any]:
    """The cache as JSON-ready data: ``root``, ``max_bytes``, ``total_bytes`` and ``entries``
    (``name``, ``bytes``, ``last_used`` epoch seconds, ``busy``: a running job uses it), most
    recently used first."""
    entries = [{"name": p.name, "path": str(p), "bytes": _size(p), "last_used": _last_used(p), "busy": _busy(p)}
               for p in _entries()]
    entries.sort(key=lambda e: e["last_used"], reverse=True)
    return {"root": str(cache_root(create=False)), "max_bytes": cache_max_bytes(),
            "total_bytes": sum(e["bytes"] for e in entries), "entries": entries}


def _remove(path: Path) -> bool:
    """Delete an idle entry (holding its lock exclusively meanwhile); False when busy."""

    def delete() -> None:
        trash = path.with_name(f".evicting-{path.name}-{os.getpid()}")
        os.replace(path, trash)  # atomic: a job staging now sees no half-deleted entry
        shutil.rmtree(trash, ignore_errors=True)

    return _if_idle(path, delete)


def evict(max_bytes: int | None = None) -> list[str]:
    """Remove least recently used idle entries until the cache holds at most ``max_bytes``
    (default :func:`cache_max_bytes`; 0 = no cap). Entries in use are kept. Returns the removed
    entry names."""
    cap = cache_max_bytes() if max_bytes is None else max_bytes
    if cap <= 0:
        return []
    sized = sorted(((_last_used(p), _size(p), p) for p in _entries()), key=lambda t: t[0])
    total = sum(size for _, size, _ in sized)
    removed = []
    for _, size, path in sized:
        if total <= cap:
            break
        if _remove(path):
            total -= size
            removed.append(path.name)
    return removed


def clear_cache() -> dict[str, Any]:
    """Remove every idle entry; returns ``removed`` (names), ``kept_busy`` (names of entries a
    running job uses) and ``freed_bytes``."""
    removed, busy, freed = [], [], 0
    for path in _entries():
        size = _size(path)
        if _remove(path):
            removed.append(path.name)
            freed += size
        else:
            busy.append(path.name)
    return {"root": str(cache_root(create=False)), "removed": removed, "kept_busy": busy, "freed_bytes": freed}
