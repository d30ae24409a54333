"""File helpers shared by the readers and writers: finding a source's folders and images,
image sizes from headers, a reproducible ``.tar.gz`` writer, and publishing a finished layout
to a local folder or ``s3://`` prefix through :mod:`tao_sdk.storage`."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path
from typing import Iterable

from tao_sdk.errors import ConversionError
from tao_sdk.storage import storage_for
from tao_sdk.worker.staging import IMAGE_EXTENSIONS

from .registry import missing_imaging

__all__ = ["imaging", "first_dir", "list_files", "member_name", "image_size", "TarWriter", "refuse_existing", "publish"]


def imaging():
    """``(numpy, PIL.Image)``; a :class:`ConversionError` naming the extra to install when
    either is missing (conversion reads and writes images; the SDK core does not need them)."""
    try:
        import numpy
        from PIL import Image
    except ImportError as exc:
        raise missing_imaging(exc) from None
    return numpy, Image


def first_dir(root: Path, candidates: Iterable[str], what: str) -> Path:
    """The first of ``root/<candidate>`` that is a folder; else an error listing them all."""
    tried = [root / c for c in candidates]
    for path in tried:
        if path.is_dir():
            return path
    raise ConversionError(f"{what}: none of {', '.join(str(p) for p in tried)} is a folder; "
                          "point SRC at the dataset root (see references/dataset-conversion.md)")


def list_files(folder: Path, suffixes: Iterable[str] = IMAGE_EXTENSIONS) -> list[Path]:
    """Files below ``folder`` (recursive, sorted) whose suffix is one of ``suffixes``."""
    wanted = tuple(s.lower() for s in suffixes)
    out = []
    for dirpath, _dirs, names in os.walk(folder):
        out += [Path(dirpath) / n for n in names if n.lower().endswith(wanted)]
    return sorted(out)


def member_name(path: Path, root: Path) -> str:
    """The archive member name of ``path``: its normalised path relative to ``root`` when it
    lies below it (``a/b.jpg``), else its file name (never a ``..`` member the worker refuses)."""
    rel = os.path.relpath(os.path.normpath(path), os.path.normpath(root))
    return Path(rel).as_posix() if rel != ".." and not rel.startswith(".." + os.sep) else Path(path).name


def image_size(path: Path) -> tuple[int, int] | None:
    """``(width, height)`` from the image header; ``None`` when the file is not a readable image."""
    _np, Image = imaging()
    try:
        with Image.open(path) as im:
            return int(im.width), int(im.height)
    except (OSError, ValueError):
        return None


class TarWriter:
    """A ``.tar.gz`` whose members carry no owner or time stamp (same input, same bytes)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._tar = tarfile.open(path, "w:gz")
        self.members: set[str] = set()

    def _info(self, member: str, size: int) -> tarfile.TarInfo:
        if member in self.members:
            raise ConversionError(f"two samples map to the archive member {member!r}; rename one")
        self.members.add(member)
        info = tarfile.TarInfo(member)
        info.size, info.mode, info.mtime = size, 0o644, 0
        return info

    def add_file(self, src: Path, member: str) -> None:
        """Add the file ``src`` as ``member``."""
        with open(src, "rb") as fh:
            self._tar.addfile(self._info(member, os.fstat(fh.fileno()).st_size), fh)

    def add_bytes(self, member: str, data: bytes) -> None:
        """Add ``data`` as ``member``."""
        self._tar.addfile(self._info(member, len(data)), io.BytesIO(data))

    def close(self) -> None:
        self._tar.close()

    def __enter__(self) -> "TarWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def refuse_existing(roots: list[str], names: list[str], overwrite: bool) -> None:
    """Unless ``overwrite``, a :class:`ConversionError` when any ``root/<name>`` exists (local
    folder or ``s3://`` prefix): a conversion never replaces files silently."""
    if overwrite:
        return
    existing = [u for root in roots for u in (storage_for(root).join(root, n) for n in names)
                if storage_for(u).exists(u)]
    if existing:
        raise ConversionError(f"{', '.join(existing)} already exist(s); pick another DEST or pass "
                              "overwrite=True (CLI --overwrite)")


def publish(staging: Path, names: list[str], dest: str) -> list[str]:
    """Copy the finished files ``staging/<name>`` to ``dest/<name>`` (local folder or
    ``s3://`` prefix); returns their URIs."""
    store = storage_for(dest)
    uris = [store.join(dest, n) for n in names]
    for name, uri in zip(names, uris):
        store.upload_file(staging / name, uri)
    return uris
