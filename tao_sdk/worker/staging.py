"""Dataset and model-file staging for the worker.

TAO specs name datasets by URI (``s3://bucket/data/train/images.tar.gz``,
``.../annotations.json``, ``.../label_map.txt``) or local path. Before a job runs, the worker:

1. downloads every remote file it needs into a cache folder (env ``TAO_WORKER_CACHE``, default
   ``~/.cache/tao-skill-bank/datasets``); a cached copy whose size matches the remote object is
   reused; the cache has a size cap with least-recently-used eviction of idle entries
   (:mod:`tao_sdk.datacache`, ``TAO_WORKER_CACHE_MAX_BYTES``);
2. extracts ``images.tar.gz`` once next to the cached archive (a marker file records the archive
   it came from), refusing unsafe members: absolute paths, ``..``, links pointing outside the
   target, device files; and refusing, before writing anything, an archive beyond the
   :data:`ARCHIVE_LIMITS` (total bytes, compression ratio, member count, free disk);
3. rewrites the spec's paths to the local copies;
4. (the tasks) validate their annotations: COCO detection files in
   :mod:`tao_sdk.worker.tasks.detection.coco` (parseable JSON, the expected keys, every listed
   image present, every category id below ``dataset.num_classes``).

Every problem raises :class:`tao_sdk.worker.errors.DatasetError` naming the file and the fix.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence

from tao_sdk import datacache
from tao_sdk.diskspace import CACHE_FIX, disk_fault, disk_full_error
from tao_sdk.errors import TaoSkillsError
from tao_sdk.storage import is_remote
from tao_sdk.worker.errors import DatasetError, UnsafeArchiveError

__all__ = [
    "cache_root",
    "archive_limits",
    "ARCHIVE_LIMITS",
    "is_remote_uri",
    "fetch_file",
    "fetch_weights",
    "fetch_dir",
    "safe_extract",
    "stage_image_dir",
    "list_images",
    "IMAGE_EXTENSIONS",
    "TAR_SUFFIXES",
    "STAGED_KEYS",
    "stage_spec",
]

#: Image file extensions the worker reads.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
#: Archive suffixes treated as image archives.
TAR_SUFFIXES = (".tar.gz", ".tgz", ".tar")
_MARKER = ".tao-extracted.json"


def cache_root() -> Path:
    """The dataset cache folder: env ``TAO_WORKER_CACHE``, else
    ``~/.cache/tao-skill-bank/datasets`` (see :mod:`tao_sdk.datacache`: size cap, eviction)."""
    return datacache.cache_root()


#: Archive limits (environment overrides; sizes take K/M/G/T suffixes): total extracted bytes,
#: extracted bytes per archive byte, number of members, number of "tiny" files (under
#: :data:`TINY_MEMBER_BYTES`: no real image is that small). Defaults fit real datasets (COCO
#: train2017: 19 GB, 118k images, ratio ~1) and refuse decompression bombs and inode floods
#: (tens of thousands of near-empty files from a small archive).
ARCHIVE_LIMITS = {"TAO_WORKER_ARCHIVE_MAX_BYTES": 500 * 1024**3, "TAO_WORKER_ARCHIVE_MAX_RATIO": 100,
                  "TAO_WORKER_ARCHIVE_MAX_MEMBERS": 1_000_000,
                  "TAO_WORKER_ARCHIVE_MAX_TINY_MEMBERS": 10_000}
#: A regular file smaller than this counts against ``TAO_WORKER_ARCHIVE_MAX_TINY_MEMBERS``.
TINY_MEMBER_BYTES = 128


def archive_limits() -> dict[str, int]:
    """The archive limits in effect (:data:`ARCHIVE_LIMITS`, each overridable by its
    environment variable). Raises DatasetError naming a malformed variable."""
    out = {}
    for env, default in ARCHIVE_LIMITS.items():
        raw = os.environ.get(env, "").strip()
        try:
            out[env] = datacache.parse_bytes(raw, env) if raw else default
        except TaoSkillsError as exc:
            raise DatasetError(str(exc)) from None
    return out


#: True for ``scheme://`` URIs other than ``file://`` (``s3://bucket/key``): the SDK's one rule.
is_remote_uri = is_remote


def _local(uri: str) -> Path:
    """A local path for a plain path or ``file://`` URI."""
    text = str(uri)
    return Path(text[len("file://"):] if text.startswith("file://") else text).expanduser()


def fetch_file(uri: str, what: str, progress: Callable[[str, dict], None] | None = None) -> Path:
    """Return a local path holding the file ``uri``, downloading it into the cache if remote
    (any scheme of :mod:`tao_sdk.sources`: ``s3://``, ``https://``, ``hf://``, ``ngc://``).

    ``what`` names the spec key the URI came from (used in error messages).
    """
    if not is_remote_uri(uri):
        path = _local(uri)
        if not path.is_file():
            raise DatasetError(f"{what}: file {uri} does not exist; fix the path in the spec")
        return path
    path = fetch_weights(uri, what, progress)
    if not path.is_file():
        raise DatasetError(f"{what}: {uri} is a folder, not a file; name the file inside it")
    return path


def fetch_weights(uri: str, what: str, progress: Callable[[str, dict], None] | None = None) -> Path:
    """Return a local file or folder holding the weights ``uri`` (a checkpoint file, or a Hugging
    Face folder with ``config.json`` + ``*.safetensors``), downloaded into the cache if remote
    (:func:`tao_sdk.sources.fetch`; ``progress`` gets the status lines of a long download).
    Raises DatasetError naming ``what`` and the fix (StorageError for storage access problems)."""
    from tao_sdk import sources
    from tao_sdk.fetch import FetchError

    try:
        return sources.fetch(str(uri), what, progress)
    except FetchError as exc:  # storage access errors (credentials, timeouts) keep their type
        raise DatasetError(str(exc)) from None


def fetch_dir(uri: str, what: str) -> Path:
    """Return a local folder holding everything under ``uri`` (downloaded if remote)."""
    if not is_remote_uri(uri):
        path = _local(uri)
        if not path.is_dir():
            raise DatasetError(f"{what}: folder {uri} does not exist; fix the path in the spec")
        return path
    path = fetch_weights(uri.rstrip("/") + "/", what)
    if not path.is_dir():
        raise DatasetError(f"{what}: {uri} is a file, not a folder; fix the URI in the spec")
    return path


def _check_member_name(name: str, archive: str) -> str:
    """Return the normalised relative name; raise UnsafeArchiveError for absolute / ``..``."""
    if name.startswith("/") or name.startswith("\\") or re.match(r"^[A-Za-z]:", name):
        raise UnsafeArchiveError(
            f"{archive} holds an absolute path {name!r}; rebuild the archive with relative "
            "paths (e.g. `tar -czf images.tar.gz -C <folder> .`)"
        )
    norm = posixpath.normpath(name.replace("\\", "/"))
    if norm == ".." or norm.startswith("../") or "/../" in f"/{norm}/":
        raise UnsafeArchiveError(
            f"{archive} holds a member {name!r} that escapes the extraction folder ('..'); "
            "rebuild the archive with relative paths inside it"
        )
    return norm


def _check_limits(count: int, total: int, archive_size: int, free: tuple[Path, int, int], archive: str,
                  limits: dict[str, int], tiny: int = 0) -> None:
    """Refuse an archive that exceeds a limit (checked as its headers are read, so a bomb is
    stopped before anything is written) or would not fit on the cache's disk."""
    problem = None
    if count > limits["TAO_WORKER_ARCHIVE_MAX_MEMBERS"]:
        problem = (f"more than {limits['TAO_WORKER_ARCHIVE_MAX_MEMBERS']:,} members (an inode flood?)",
                   "TAO_WORKER_ARCHIVE_MAX_MEMBERS")
    elif tiny > limits["TAO_WORKER_ARCHIVE_MAX_TINY_MEMBERS"]:
        problem = (f"more than {limits['TAO_WORKER_ARCHIVE_MAX_TINY_MEMBERS']:,} files smaller than "
                   f"{TINY_MEMBER_BYTES} bytes (an inode flood? no real image is that small)",
                   "TAO_WORKER_ARCHIVE_MAX_TINY_MEMBERS")
    elif total > limits["TAO_WORKER_ARCHIVE_MAX_BYTES"]:
        problem = (f"more than {limits['TAO_WORKER_ARCHIVE_MAX_BYTES']:,} bytes once extracted",
                   "TAO_WORKER_ARCHIVE_MAX_BYTES")
    elif total > limits["TAO_WORKER_ARCHIVE_MAX_RATIO"] * max(archive_size, 1) and total > 64 * 1024**2:
        problem = (f"{total:,} bytes from a {archive_size:,}-byte file (more than "
                   f"{limits['TAO_WORKER_ARCHIVE_MAX_RATIO']}x: a decompression bomb?)",
                   "TAO_WORKER_ARCHIVE_MAX_RATIO")
    elif count > free[2]:
        problem = (f"more than the {free[2]:,} free inodes under {free[0]} ({count:,} members so far)",
                   datacache.CACHE_ENV)
    elif total > free[1]:
        problem = (f"{total:,} bytes once extracted, more than the {free[1]:,} bytes free under {free[0]}",
                   datacache.CACHE_ENV)
    if problem is not None:
        raise UnsafeArchiveError(
            f"{archive} holds {problem[0]}; nothing was extracted. Check the archive; if it is a real "
            f"dataset, raise the limit with {problem[1]} (or point {datacache.CACHE_ENV} at a larger disk)")


def _check_members(tf: tarfile.TarFile, archive: str, archive_size: int = 0,
                   dest: Path | None = None) -> list[tarfile.TarInfo]:
    """Validate every member of ``tf`` (names, links, and the archive limits as headers are
    read); return the ones to extract (files, folders, safe links)."""
    members = []
    limits = archive_limits()
    dest = dest or cache_root()
    vfs = os.statvfs(dest) if hasattr(os, "statvfs") else None
    free = (dest, shutil.disk_usage(dest).free, vfs.f_favail if vfs and vfs.f_files else 1 << 62)
    total = tiny = 0
    for m in tf:
        total += max(m.size, 0)
        tiny += m.isfile() and m.size < TINY_MEMBER_BYTES
        _check_limits(len(members) + 1, total, archive_size, free, archive, limits, tiny)
        name = _check_member_name(m.name, archive)
        if m.isdev() or m.isfifo():
            raise UnsafeArchiveError(
                f"{archive} holds a device or FIFO member {m.name!r}; image archives may hold "
                "only files and folders"
            )
        if m.issym() or m.islnk():
            target = m.linkname.replace("\\", "/")
            if target.startswith("/"):
                raise UnsafeArchiveError(
                    f"{archive} holds a link {m.name!r} -> {m.linkname!r} to an absolute path; "
                    "image archives may not link outside themselves"
                )
            base = posixpath.dirname(name) if m.issym() else ""
            resolved = posixpath.normpath(posixpath.join(base, target))
            if resolved == ".." or resolved.startswith("../"):
                raise UnsafeArchiveError(
                    f"{archive} holds a link {m.name!r} -> {m.linkname!r} that escapes the "
                    "extraction folder; rebuild the archive without such links"
                )
        members.append(m)
    return members


def safe_extract(archive: str | os.PathLike[str], dest: str | os.PathLike[str]) -> Path:
    """Extract the tar ``archive`` into ``dest`` once, safely; return ``dest``.

    A marker file in ``dest`` records the archive's size and mtime; a later call with the same
    archive returns at once. The archive is extracted into a temporary sibling folder that is
    renamed into place, so a crash never leaves a half-extracted folder that looks complete;
    processes extracting the same ``dest`` at once take turns (a file lock beside it), so one
    never removes the folder another has just put in place.
    Raises :class:`UnsafeArchiveError` before writing anything when a member is unsafe, and
    :class:`DatasetError` when the file is not a readable tar archive.
    """
    archive = Path(archive)
    dest = Path(dest)
    st = archive.stat()
    signature = {"archive": str(archive), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    if _extracted(dest, signature):
        return dest
    with datacache.exclusive(dest.parent / f".{dest.name}.extract-lock"):
        if not _extracted(dest, signature):  # another process may have done it meanwhile
            _extract_into_place(archive, dest, signature, st.st_size)
    return dest


def _extracted(dest: Path, signature: dict[str, Any]) -> bool:
    """True when ``dest`` holds a complete extraction of the archive ``signature`` describes."""
    marker = dest / _MARKER
    try:
        return marker.is_file() and json.loads(marker.read_text(encoding="utf-8")) == signature
    except (OSError, ValueError):
        return False


def _extract_into_place(archive: Path, dest: Path, signature: dict[str, Any], size: int) -> None:
    """Extract into a temporary sibling of ``dest``, write the marker, rename it into place."""
    tmp = Path(tempfile.mkdtemp(prefix=".tao-extract-", dir=dest.parent))
    try:
        try:
            with tarfile.open(archive, "r:*") as tf:
                members = _check_members(tf, str(archive), size, dest.parent)
                if hasattr(tarfile, "data_filter"):
                    tf.extractall(tmp, members=members, filter="data")
                else:  # pragma: no cover - Python without PEP 706 filters
                    tf.extractall(tmp, members=members)
        except (tarfile.TarError, EOFError, OSError) as exc:
            if isinstance(exc, tarfile.FilterError):
                raise UnsafeArchiveError(f"{archive} holds an unsafe member: {exc}") from None
            if disk_fault(exc) is not None:  # the cache's disk filled up meanwhile (the partial copy goes)
                raise disk_full_error(dest.parent, f"the extracted {archive.name}", code=disk_fault(exc).errno,
                                      fix=CACHE_FIX) from None
            raise DatasetError(
                f"{archive} is not a readable tar archive ({exc}); re-create it with "
                "`tar -czf images.tar.gz -C <image folder> .`"
            ) from None
        (tmp / _MARKER).write_text(json.dumps(signature), encoding="utf-8")
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _strip_tar_suffix(name: str) -> str | None:
    for suffix in TAR_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return None


def _exists(uri: str) -> bool:
    if is_remote_uri(uri):
        from tao_sdk.storage import storage_for

        return storage_for(uri).exists(uri)
    return _local(uri).exists()


def stage_image_dir(uri: str, what: str) -> Path:
    """Return a local folder of images for the spec value ``uri``.

    ``uri`` may be an image archive (``images.tar.gz``, ``.tgz``, ``.tar``: fetched and
    extracted once) or a folder (local, or a remote prefix that is downloaded). As in TAO's
    ``handle_tar_path``, a folder URI that does not exist but has an ``images.tar.gz`` sibling
    of the same name (``.../images`` -> ``.../images.tar.gz``) uses that archive.
    """
    uri = str(uri)
    stem = _strip_tar_suffix(uri.rstrip("/"))
    if stem is not None:
        archive = fetch_file(uri, what)
        if is_remote_uri(uri):
            dest = archive.parent / (archive.name + ".d")
        else:
            digest = hashlib.sha1(str(archive.resolve()).encode("utf-8")).hexdigest()[:16]
            dest = datacache.cache_entry(digest) / (archive.name + ".d")
        return safe_extract(archive, dest)
    if _exists(uri):
        return fetch_dir(uri, what)
    for suffix in (".tar.gz", ".tgz", ".tar"):
        if _exists(uri.rstrip("/") + suffix):
            return stage_image_dir(uri.rstrip("/") + suffix, what)
    raise DatasetError(
        f"{what}: {uri} does not exist (neither a folder nor an images.tar.gz archive); "
        "point it at the dataset's images.tar.gz"
    )


def list_images(folder: Path) -> list[Path]:
    """Every image file below ``folder`` (by extension), sorted by relative path."""
    out = []
    for dirpath, _dirs, files in os.walk(folder):
        for name in files:
            if name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith("._"):
                out.append(Path(dirpath) / name)
    return sorted(out, key=lambda p: p.relative_to(folder).as_posix())


# --------------------------------------------------------------------------- spec rewriting

#: Per action: the model files the engine reads, the same keys for every task (the task's data
#: keys come from its :meth:`~tao_sdk.worker.tasks.Task.staged_keys` hook): ``file`` or ``weights``
#: (a checkpoint file or a Hugging Face folder, from any source of :mod:`tao_sdk.sources`).
_TRAIN_STAGED = [("model.pretrained_backbone_path", "weights"), ("train.pretrained_model_path", "weights"),
                 ("train.pretrained_backbone", "weights"), ("train.pretrained_model", "weights"),
                 ("model.stereo_backbone.edgenext_pretrained_path", "weights"),
                 ("train.resume_training_checkpoint_path", "weights")]
STAGED_KEYS: dict[str, list[tuple[str, str]]] = {
    "train": _TRAIN_STAGED,
    "distill": [*_TRAIN_STAGED, ("distill.pretrained_teacher_model_path", "weights")],
    "quantize": [("quantize.model_path", "weights")],
    "evaluate": [("evaluate.checkpoint", "weights")],
    "inference": [("inference.checkpoint", "weights")],
    "export": [("export.checkpoint", "weights")],
    # calibration images are staged by the engine build, and only for INT8
    "gen_trt_engine": [("gen_trt_engine.onnx_file", "file")],
}


def _stage_dirs(value: Any, key: str, note: Callable[[str, Any, Path], None]) -> Any:
    """Image folder(s) at ``key`` (one, or a list) staged: the local folder(s), in the same form."""
    dirs = value if isinstance(value, list) else [value]
    locs = []
    for j, d in enumerate(dirs):
        label = f"{key}[{j}]" if isinstance(value, list) else key
        loc = stage_image_dir(str(d), label)
        note(label, d, loc)
        locs.append(str(loc))
    return locs if isinstance(value, list) else locs[0]


def _stage_sources(value: Any, key: str, note: Callable[[str, Any, Path], None]) -> Any:
    """Data-source mapping(s) at ``key`` staged: image_dir folders and json_file / classmap /
    data_file files become local paths (a malformed entry is kept: the action reports it)."""
    entries = value if isinstance(value, list) else [value]
    staged = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            staged.append(entry)  # malformed: the action reports it with the key
            continue
        what = f"{key}[{i}]" if isinstance(value, list) else key
        new = dict(entry)
        for field_name, field_value in entry.items():
            if not _is_set(field_value):
                continue
            sub = f"{what}.{field_name}"
            if field_name == "image_dir":
                new[field_name] = _stage_dirs(field_value, sub, note)
            elif field_name in ("json_file", "classmap", "data_file"):
                loc = fetch_file(str(field_value), sub)
                note(sub, field_value, loc)
                new[field_name] = str(loc)
        staged.append(new)
    return staged if isinstance(value, list) else staged[0]


def _is_set(value: Any) -> bool:
    return value not in (None, "", "???", [])


#: Where TAO's container puts the PTMs of the skills' download descriptors (``/ptm/...``).
PTM_DESTINATION = "/ptm/"


def _container_ptm(uri: str) -> bool:
    """``uri`` is a PTM download destination of TAO's container that is not on this machine."""
    return uri.startswith(PTM_DESTINATION) and not Path(uri).exists()


def stage_spec(spec: dict[str, Any], action: str, log: Callable[[str], None] | None = None,
               progress: Callable[[str, dict], None] | None = None, *,
               data_keys: Sequence[tuple[str, str]] = ()) -> dict[str, Any]:
    """Return a copy of ``spec`` whose dataset / model-file URIs are local paths: the one place
    a job stages the files its spec names.

    ``data_keys``: the task's data keys for ``action`` (``(key, kind)`` from
    :meth:`tao_sdk.worker.tasks.Task.staged_keys`; kinds ``file``, ``dirs`` (image folders, one or
    a list) or ``sources`` (a data-source mapping, or list of mappings, with image_dir /
    json_file / classmap / data_file entries)); then the model files of :data:`STAGED_KEYS`.
    Each one set is fetched (remote files are downloaded into the cache, ``images.tar.gz``
    archives extracted once) and replaced by the local path; ``image_dir`` values become the
    extracted image folder. Unset keys are left alone (the action says what is missing).
    ``log`` receives one line per staged value, ``progress`` the status lines of long weight
    downloads (:func:`fetch_weights`).
    """
    import copy

    from tao_sdk.worker import spec as S

    out = copy.deepcopy(spec)

    def note(key: str, uri: Any, local: Path) -> None:
        """Log one staged value (when it changed)."""
        if log is not None and str(uri) != str(local):
            log(f"staged {key}: {uri} -> {local}")

    for key, kind in [*data_keys, *STAGED_KEYS.get(action, [])]:
        value = S.get(out, key)
        if not _is_set(value):
            continue
        if kind == "weights" and _container_ptm(str(value)):
            S.set_value(out, key, None)
            message = (f"{key}: {value} is where TAO's container downloads its PTM (a download "
                       "descriptor of the skill's mapping), not a file on this machine: the job "
                       f"starts without it; set {key} to a local path, s3://, https://, hf:// or "
                       "ngc:// URI to load those weights")
            if progress is not None:
                progress(message, {})
            elif log is not None:
                log(message)
            continue
        if kind in ("file", "weights"):
            local = fetch_file(str(value), key) if kind == "file" else fetch_weights(str(value), key, progress)
            note(key, value, local)
            S.set_value(out, key, str(local))
        elif kind == "dirs":
            S.set_value(out, key, _stage_dirs(value, key, note))
        else:
            S.set_value(out, key, _stage_sources(value, key, note))
    evicted = datacache.evict()  # what this job uses is locked: only idle entries go
    if evicted and log is not None:
        log(f"dataset cache over {datacache.CACHE_MAX_ENV}={datacache.cache_max_bytes():,} bytes: evicted the least "
            f"recently used {', '.join(evicted)}")
    return out
