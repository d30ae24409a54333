"""Reading dataset files for validation: text files whole, archives by streaming their members.

A ``.tar.gz`` / ``.tgz`` / ``.tar`` on S3 or on disk is read front to back in one pass (one GET on
S3, nothing extracted to disk): member names and sizes always, and the first bytes (the image
header) or the whole content of the members a validator asks for. Everything read is charged to
the run's :class:`~tao_sdk.datasets.budget.Budget`. Results are kept per URI for the run.
"""

from __future__ import annotations

import hashlib
import io
import json
import posixpath
import tarfile
from dataclasses import dataclass, field
from typing import Callable, Collection

from ..errors import StorageError
from ..storage import storage_for
from .budget import Budget, BudgetExceeded, MeteredStream

#: Archive suffixes read as archives of files.
TAR_SUFFIXES = (".tar.gz", ".tgz", ".tar")
#: Image file extensions (what counts as an image member).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
#: Bytes of each image read for its header (size, mode); JPEG SOF markers come after EXIF blocks.
HEADER_BYTES = 64 * 1024

#: ``wanted(member name) -> bytes to keep`` (0: none, -1: all of it).
Wanted = Callable[[str], int]


def is_archive(uri: str) -> bool:
    """True for a ``.tar.gz`` / ``.tgz`` / ``.tar`` name."""
    return uri.lower().endswith(TAR_SUFFIXES)


def is_image(name: str) -> bool:
    """True for an image file name (by extension; macOS ``._`` resource files excluded)."""
    base = name.rsplit("/", 1)[-1]
    return base.lower().endswith(IMAGE_EXTENSIONS) and not base.startswith("._")


@dataclass
class ArchiveScan:
    """What one pass over an archive (or a folder) found.

    Attributes:
        members: every file, normalised relative name -> size in bytes.
        data: the bytes kept of the members ``wanted`` asked for.
        complete: False when the budget ran out (or the archive is cut short) before its end.
        error: why the archive could not be read (not a tar, corrupt), else None.
        stopped: why the scan stopped early (the budget), else None.
    """

    members: dict[str, int] = field(default_factory=dict)
    data: dict[str, bytes] = field(default_factory=dict)
    complete: bool = True
    error: str | None = None
    stopped: str | None = None


def _norm(name: str) -> str:
    return posixpath.normpath(name.replace("\\", "/")).lstrip("/").removeprefix("./")


class Reader:
    """Reads a run's dataset files once each, within ``budget``."""

    def __init__(self, budget: Budget) -> None:
        self.budget = budget
        self._text: dict[str, str | StorageError] = {}
        self._scans: dict[str, ArchiveScan] = {}
        self._stats: dict[str, tuple[int, float] | None] = {}

    def stat(self, uri: str) -> tuple[int, float] | None:
        """``(size, mtime)`` of the object or file ``uri``, None when it does not exist."""
        if uri not in self._stats:
            found = [o for o in storage_for(uri).list(uri, recursive=False) if o.uri.rstrip("/") == uri.rstrip("/")]
            self._stats[uri] = (found[0].size, found[0].mtime) if found else None
        return self._stats[uri]

    def exists(self, uri: str) -> bool:
        """True for an existing file / object or a non-empty folder / prefix (a folder is not listed)."""
        return self.stat(uri) is not None or storage_for(uri).exists(uri)

    def text(self, uri: str) -> str:
        """The UTF-8 text of ``uri`` (charged to the budget); StorageError when unreadable."""
        if uri not in self._text:
            try:
                data = storage_for(uri).read_bytes(uri)
                self.budget.bytes_read += len(data)
                self._text[uri] = data.decode("utf-8")
            except UnicodeDecodeError as exc:
                self._text[uri] = StorageError(f"not UTF-8 text ({exc.reason} at byte {exc.start})")
            except StorageError as exc:
                self._text[uri] = exc
        value = self._text[uri]
        if isinstance(value, StorageError):
            raise value
        return value

    def head(self, uri: str, n: int) -> bytes:
        """The first ``n`` bytes of ``uri`` (``-1``: all of it), charged to the budget; b"" past it."""
        try:
            with MeteredStream(storage_for(uri).open_read(uri), self.budget) as fh:
                return fh.read() if n < 0 else fh.read(n)
        except BudgetExceeded:
            return b""

    def json(self, uri: str) -> object:
        """``uri`` parsed as JSON; ValueError (with line and column) when it is not."""
        return json.loads(self.text(uri))

    def digest(self, uri: str) -> str:
        """sha256 of a text file's content, ``size:mtime`` of anything else (archives, folders)."""
        if not is_archive(uri) and uri in self._text and isinstance(self._text[uri], str):
            return hashlib.sha256(self._text[uri].encode("utf-8")).hexdigest()  # type: ignore[union-attr]
        stat = self.stat(uri)
        return f"{uri}:{stat[0]}:{stat[1]}" if stat else f"{uri}:absent"

    def scan(self, uri: str, wanted: Wanted | None = None) -> ArchiveScan:
        """Members of the archive or folder ``uri`` (see :class:`ArchiveScan`); kept per URI, so
        the first caller's ``wanted`` decides what is kept."""
        if uri not in self._scans:
            self._scans[uri] = self._scan_archive(uri, wanted) if is_archive(uri) else self._scan_folder(uri, wanted)
        return self._scans[uri]

    def _scan_archive(self, uri: str, wanted: Wanted | None) -> ArchiveScan:
        out = ArchiveScan()
        try:
            with MeteredStream(storage_for(uri).open_read(uri), self.budget) as raw, \
                    tarfile.open(fileobj=io.BufferedReader(raw, 1 << 20), mode="r|*") as tf:
                for member in tf:
                    if not member.isfile():
                        continue
                    name = _norm(member.name)
                    out.members[name] = member.size
                    keep = wanted(name) if wanted else 0
                    if keep:
                        fh = tf.extractfile(member)
                        out.data[name] = fh.read(None if keep < 0 else keep) if fh else b""
        except BudgetExceeded as exc:
            out.complete, out.stopped = False, str(exc)
        except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
            out.complete, out.error = False, f"{type(exc).__name__}: {exc}"
        return out

    def _scan_folder(self, uri: str, wanted: Wanted | None) -> ArchiveScan:
        out = ArchiveScan()
        store = storage_for(uri)
        prefix = uri.rstrip("/") + "/"
        try:
            for obj in store.list(prefix):
                name = _norm(obj.uri[len(prefix):])
                out.members[name] = obj.size
                keep = wanted(name) if wanted else 0
                if keep:
                    with MeteredStream(store.open_read(obj.uri), self.budget) as fh:
                        out.data[name] = fh.read() if keep < 0 else fh.read(keep)
        except BudgetExceeded as exc:
            out.complete, out.stopped = False, str(exc)
        return out


def name_resolver(members: Collection[str]) -> Callable[[str], str | None]:
    """``file_name -> member name`` (or None) tolerating one top-level folder in the archive
    (``images/a.jpg`` for ``a.jpg``) and a unique base name, as the worker's loader does."""
    tops = {m.split("/", 1)[0] for m in members if "/" in m}
    prefixes = [""] + ([f"{next(iter(tops))}/"] if len(tops) == 1 else [])
    by_base: dict[str, list[str]] = {}
    for m in members:
        by_base.setdefault(m.rsplit("/", 1)[-1], []).append(m)

    def resolve(file_name: str) -> str | None:
        """The member holding ``file_name``, or None."""
        norm = _norm(file_name)
        for prefix in prefixes:
            if prefix + norm in members:
                return prefix + norm
        cands = by_base.get(norm.rsplit("/", 1)[-1], [])
        return cands[0] if len(cands) == 1 else None

    return resolve


def image_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` from an image file's first bytes, None when they are not a readable image."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.size
    except Exception:  # noqa: BLE001 - any decoder error means "not a readable image header"
        return None
