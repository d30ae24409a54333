"""The download machinery under :mod:`tao_sdk.sources`: cache entries, complete-file records,
resumable verified HTTP downloads, progress reports.

A download is written as ``.part-<name>`` next to its destination and renamed only once complete
and verified (size; sha256 when known), so a partial file is never used as complete; a
``.<name>.src`` record says where a cached file came from (:func:`is_cached`). An entry is filled
under an exclusive lock (:func:`tao_sdk.datacache.exclusive`): concurrent jobs download once.
Environment: ``TAO_FETCH_ATTEMPTS`` (tries per download, default 3, each resuming with an HTTP
``Range`` request), ``TAO_FETCH_TIMEOUT`` (seconds per read, default 30),
``TAO_FETCH_PROGRESS_S`` (seconds between progress reports, default 15).
"""

from __future__ import annotations

import hashlib
import json
import os

import time
from pathlib import Path
from typing import Any, Callable

from tao_sdk import datacache
from tao_sdk.errors import StorageError

__all__ = ["FetchError", "Progress", "entry_for", "is_cached", "mark_cached", "download_http",
           "cached_download", "ATTEMPTS_ENV", "PROGRESS_ENV", "TIMEOUT_ENV"]

ATTEMPTS_ENV = "TAO_FETCH_ATTEMPTS"
PROGRESS_ENV = "TAO_FETCH_PROGRESS_S"
TIMEOUT_ENV = "TAO_FETCH_TIMEOUT"
#: ``progress(message, fields)``: one call per progress report of a long download.
Progress = Callable[[str, dict], None]


class FetchError(StorageError):
    """A URI cannot be fetched: malformed, missing, refused, or the download broke."""


# --------------------------------------------------------------------------- cache helpers

def entry_for(uri: str) -> Path:
    """The cache entry of ``uri`` (created, marked used, held for this process)."""
    return datacache.cache_entry(hashlib.sha1(uri.encode("utf-8")).hexdigest()[:16])


def _record(dest: Path) -> Path:
    return dest.with_name(f".{dest.name}.src")


def is_cached(dest: Path, stamp: dict[str, Any]) -> bool:
    """True when ``dest`` is a complete download recorded with exactly ``stamp``."""
    try:
        return dest.is_file() and json.loads(_record(dest).read_text(encoding="utf-8")) == stamp
    except (OSError, ValueError):
        return False


def mark_cached(dest: Path, stamp: dict[str, Any]) -> None:
    """Record that ``dest`` is complete and came from ``stamp`` (see :func:`is_cached`)."""
    _record(dest).write_text(json.dumps(stamp, sort_keys=True), encoding="utf-8")


def _env_number(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    try:
        return float(raw) if raw else default
    except ValueError:
        raise FetchError(f"{name}={raw!r} is not a number; unset it or give e.g. {name}={default:g}") from None


class _Ticker:
    """Throttled progress reports of one download (every ``TAO_FETCH_PROGRESS_S`` s, default 15)."""

    def __init__(self, progress: Progress | None, what: str, uri: str, total: int | None) -> None:
        self.progress, self.what, self.uri, self.total = progress, what, uri, total
        self.every = _env_number(PROGRESS_ENV, 15.0)
        self.last = time.monotonic()

    def __call__(self, done: int, final: bool = False) -> None:
        now = time.monotonic()
        if self.progress is None or (not final and now - self.last < self.every):
            return
        self.last = now
        size = f" of {self.total / 1e6:.1f} MB" if self.total else ""
        verb = "downloaded" if final else "downloading"
        self.progress(f"{verb} {self.what}: {done / 1e6:.1f}{size} from {self.uri}",
                      {"download": {"spec_field": self.what, "uri": self.uri, "bytes": done,
                                    "total_bytes": self.total, "done": final}})


# --------------------------------------------------------------------------- https

def _session(headers: dict[str, str] | None = None):
    import requests

    s = requests.Session()
    s.headers.update(headers or {})
    return s


def _http_refusal(url: str, what: str, code: int, reason: str) -> FetchError:
    hint = {401: "it needs credentials (NGC_KEY for ngc://, HF_TOKEN for hf://)",
            403: "access is denied (check the key / token and that it may read this model)",
            404: "it does not exist (check the URI)"}.get(code, "the server refused it")
    return FetchError(f"{what}: cannot download {url}: HTTP {code} {reason}: {hint}")


def _expected_total(resp, have: int) -> int | None:
    rng = resp.headers.get("Content-Range", "")
    if resp.status_code == 206 and "/" in rng and rng.rsplit("/", 1)[1].isdigit():
        return int(rng.rsplit("/", 1)[1])
    length = resp.headers.get("Content-Length")
    return (have if resp.status_code == 206 else 0) + int(length) if length and length.isdigit() else None


def _one_attempt(session, url: str, part: Path, ticker: _Ticker, timeout: float) -> tuple[int, int | None]:
    """GET ``url`` into ``part`` (resuming after its bytes); returns (bytes now, expected total)."""
    have = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    with session.get(url, headers=headers, stream=True, timeout=timeout) as resp:
        if resp.status_code == 416 and have:
            return have, have  # the part file already holds everything
        if resp.status_code not in (200, 206):
            raise _http_refusal(url, ticker.what, resp.status_code, resp.reason or "")
        if resp.status_code == 200:
            have = 0  # the server ignores ranges: start over
        total = _expected_total(resp, have)
        ticker.total = ticker.total or total
        with open(part, "ab" if have else "wb") as fh:
            for chunk in resp.iter_content(chunk_size=1 << 16):
                fh.write(chunk)
                have += len(chunk)
                ticker(have)
    return have, total


def _verify(part: Path, url: str, what: str, size: int | None, sha256: str | None) -> None:
    got = part.stat().st_size
    if size is not None and got != size:
        part.unlink()
        raise FetchError(f"{what}: the download of {url} has {got} bytes, expected {size}; the partial "
                         "file was removed, run the job again (the server may be serving another file)")
    if sha256:
        h = hashlib.sha256()
        with open(part, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        if h.hexdigest() != sha256.lower():
            part.unlink()
            raise FetchError(f"{what}: the download of {url} has sha256 {h.hexdigest()}, expected {sha256}; "
                             "the file was removed; check the URI's #sha256= (or the model version)")


def download_http(url: str, dest: Path, what: str, *, headers: dict[str, str] | None = None,
                  size: int | None = None, sha256: str | None = None,
                  progress: Progress | None = None) -> Path:
    """Download ``url`` to ``dest`` through ``.part-<name>`` (resumed with ``Range`` after a
    broken connection, ``TAO_FETCH_ATTEMPTS`` tries), check ``size`` / ``sha256`` (and the
    server's length), then rename. Raises FetchError saying how far it got and what to do."""
    import requests

    part = dest.with_name(".part-" + dest.name)
    ticker = _Ticker(progress, what, url, size)
    attempts = max(1, int(_env_number(ATTEMPTS_ENV, 3)))
    timeout = _env_number(TIMEOUT_ENV, 30.0)
    have, total, last = 0, size, None
    with _session(headers) as session:
        for _ in range(attempts):
            try:
                have, got_total = _one_attempt(session, url, part, ticker, timeout)
                total = size or got_total
                if total is None or have >= total:
                    break
                last = f"the connection closed at {have} bytes"
            except requests.RequestException as exc:
                have = part.stat().st_size if part.exists() else 0
                total = size or ticker.total
                last = f"{type(exc).__name__}: {exc}"
        else:
            of = f" of {total}" if total else ""
            raise FetchError(f"{what}: the download of {url} stopped at {have}{of} bytes after {attempts} "
                             f"attempt(s) ({last}); the partial file is kept and the next run resumes it "
                             f"(more tries: {ATTEMPTS_ENV}); check the network or the server")
    _verify(part, url, what, size or total, sha256)
    os.replace(part, dest)
    ticker(have, final=True)
    return dest


def cached_download(uri: str, url: str, name: str, what: str, progress: Progress | None, **kw: Any) -> Path:
    """``url`` as the cache file ``<entry of uri>/<name>``, downloaded once (locked)."""
    entry = entry_for(uri)
    dest = entry / name
    stamp = {"uri": uri, "size": kw.get("size"), "sha256": kw.get("sha256")}
    with datacache.exclusive(entry / ".tao-fetch.lock"):
        if not is_cached(dest, stamp):
            download_http(url, dest, what, progress=progress, **kw)
            mark_cached(dest, stamp)
    return dest
