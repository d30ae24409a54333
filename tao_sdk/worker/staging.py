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
4. validates COCO annotations (``coco`` / ``coco_raw``): parseable JSON, the expected keys,
   every listed image present, every category id below ``dataset.num_classes``.

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from tao_sdk import datacache
from tao_sdk.diskspace import CACHE_FIX, disk_fault, disk_full_error
from tao_sdk.datasets.boxes import BOX_DEFECTS, MSCOCO_CATEGORY_TO_LABEL
from tao_sdk.datasets.boxes import check_box as _check_box
from tao_sdk.datasets.reader import name_resolver
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
    "CocoImage",
    "CocoData",
    "BOX_DEFECTS",
    "load_coco",
    "read_label_map",
    "list_images",
    "IMAGE_EXTENSIONS",
    "TAR_SUFFIXES",
    "MSCOCO_CATEGORY_TO_LABEL",
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


# --------------------------------------------------------------------------- COCO

@dataclass
class CocoImage:
    """One image of a COCO file with its resolved local path and its boxes.

    ``boxes`` are ``[x, y, w, h]`` in pixels; ``labels`` are model class indices (the category
    id, or its remapped index with ``dataset.remap_mscoco_category``).
    """

    id: int
    file_name: str
    path: Path
    width: int
    height: int
    boxes: list[list[float]] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)


@dataclass
class CocoData:
    """A validated COCO annotation file.

    Attributes:
        json_file: the local annotation file.
        image_dir: the local image folder.
        images: the images, in file order.
        categories: category id -> name.
        label_to_category: model class index -> category id (identity unless remapped).
        raw: the parsed JSON (used as ground truth for COCO evaluation).
        skipped_boxes: annotations dropped (no area, non-finite, wholly outside the image).
        box_issues: count per defect (:data:`BOX_DEFECTS` keys), dropped and clipped boxes.
        issue_examples: the first few defective annotations, described (id, image, bbox).
    """

    json_file: Path
    image_dir: Path
    images: list[CocoImage]
    categories: dict[int, str]
    label_to_category: dict[int, int]
    raw: dict[str, Any]
    skipped_boxes: int = 0
    box_issues: dict[str, int] = field(default_factory=dict)
    issue_examples: list[str] = field(default_factory=list)

    def issues_summary(self, what: str) -> str | None:
        """One line for status.json / the log about dropped and clipped boxes, or None."""
        if not self.box_issues:
            return None
        counts = ", ".join(f"{n} {BOX_DEFECTS[k]}" for k, n in self.box_issues.items())
        return (f"{what}: {sum(self.box_issues.values())} box(es) with defects in {self.json_file} "
                f"({counts}); first: {'; '.join(self.issue_examples)}. Fix the annotation file to train on "
                "every box")

    def class_names(self) -> dict[int, str]:
        """Model class index -> category name (what the trained model's outputs mean)."""
        return {lab: self.categories.get(cid, str(cid)) for lab, cid in self.label_to_category.items()}

    def check_classes(self, trained: dict[int, str] | None, what: str) -> None:
        """Raise DatasetError when a class index means another category name here than in the
        training data (``trained``: recorded in the checkpoint), e.g. 0-based ids at training
        and 1-based ids here. No record (older checkpoints): nothing to check."""
        if not trained:
            return
        mine = self.class_names()
        clash = [(lab, name, trained[lab]) for lab, name in sorted(mine.items())
                 if lab in trained and trained[lab] != name]
        if clash:
            shown = ", ".join(f"class {lab} is {name!r} here but {was!r} at training" for lab, name, was in clash[:5])
            raise DatasetError(
                f"{what}: {self.json_file} numbers its categories differently from the training data ({shown}); "
                f"use the training annotations' category ids ({dict(sorted(trained.items()))})")


_MAX_EXAMPLES = 5


def _read_json(path: Path, what: str) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{what}: {path} is not UTF-8 text ({exc.reason}); re-export it as "
                           "UTF-8 COCO JSON") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DatasetError(
            f"{what}: {path} is not valid JSON ({exc.msg} at line {exc.lineno}, column "
            f"{exc.colno}); re-export the COCO annotation file"
        ) from None


def _index_files(root: Path) -> dict[str, Path]:
    """Map each file's relative posix path below ``root`` to its path."""
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            p = Path(dirpath) / name
            out[p.relative_to(root).as_posix()] = p
    return out


def _resolver(image_dir: Path) -> Callable[[str], Path | None]:
    """Build a function file_name -> local path that tolerates a top-level folder in the tar
    (``images/xxx.jpg``) and file names with or without a folder prefix (the rule of
    :func:`tao_sdk.datasets.reader.name_resolver`, which plan-time validation applies too)."""
    index = _index_files(image_dir)
    by_name = name_resolver(index)

    def resolve(name: str) -> Path | None:
        """Local path of the annotation ``file_name`` ``name``, or None when absent."""
        member = by_name(name)
        return index[member] if member is not None else None

    return resolve


def load_coco(json_file: Path, image_dir: Path, num_classes: int, *, remap: bool = False,
              what: str = "dataset", check_images: bool = True) -> CocoData:
    """Load and validate a COCO detection file (``coco`` / ``coco_raw`` formats).

    Args:
        json_file: local annotations file.
        image_dir: local image folder (extracted ``images.tar.gz``).
        num_classes: ``dataset.num_classes``; every class index must be below it.
        remap: ``dataset.remap_mscoco_category``: map MSCOCO's 80 category ids (1..90 with
            gaps) to class indices 0..79 (:data:`MSCOCO_CATEGORY_TO_LABEL`) instead of using
            the ids as class indices.
        what: the spec key the files came from (for messages).
        check_images: verify that every listed image file exists.

    Boxes with NaN/inf coordinates, no area or wholly outside their image are dropped, boxes
    partly outside are clipped; every such box is counted in ``box_issues`` (see
    :meth:`CocoData.issues_summary`, which the job writes as a WARNING status line).

    Raises :class:`DatasetError` on corrupt JSON, missing keys, missing image files (their
    names are listed), boxes that are not ``[x, y, w, h]``, a ``category_id`` that is not an
    integer (file, annotation id and fix named), a class index ``>= num_classes`` (the message
    says which value to set ``dataset.num_classes`` to), or no valid box at all.
    """
    data = _read_json(json_file, what)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise DatasetError(
            f"{what}: {json_file} is not a COCO detection file (no 'images' list); expected "
            "keys images, annotations, categories"
        )
    anns = data.get("annotations", [])
    cats = data.get("categories", [])
    if not isinstance(anns, list) or not isinstance(cats, list):
        raise DatasetError(f"{what}: {json_file}: 'annotations' and 'categories' must be lists")
    categories: dict[int, str] = {}
    for c in cats:
        if not isinstance(c, dict) or not isinstance(c.get("id"), int):
            raise DatasetError(f"{what}: {json_file}: category {c!r} has no integer 'id'")
        categories[c["id"]] = str(c.get("name", c["id"]))
    for a in anns:
        if not isinstance(a, dict):
            raise DatasetError(f"{what}: {json_file}: annotation {a!r} is not an object")
        _check_int_field(a, "category_id", what, json_file)
    used_ids = sorted({a["category_id"] for a in anns})
    all_ids = sorted(set(categories) | set(used_ids))
    if remap:
        unknown = [c for c in used_ids if c not in MSCOCO_CATEGORY_TO_LABEL]
        if unknown:
            raise DatasetError(
                f"{what}: {json_file} uses category id(s) {unknown[:10]} that are not MSCOCO "
                "category ids, but dataset.remap_mscoco_category is true; set it to false "
                "(it is only for the original 91-id MSCOCO annotations)"
            )
        cat_to_label = {c: MSCOCO_CATEGORY_TO_LABEL[c] for c in all_ids
                        if c in MSCOCO_CATEGORY_TO_LABEL}
    else:
        negative = [c for c in all_ids if c < 0]
        if negative:
            raise DatasetError(f"{what}: {json_file}: negative category ids {negative}")
        cat_to_label = {cid: cid for cid in all_ids}
    max_label = max(cat_to_label.values(), default=-1)
    if max_label >= num_classes:
        offending = [c for c, lab in cat_to_label.items() if lab >= num_classes]
        undeclared = [c for c in offending if c not in categories]
        if undeclared:  # raising num_classes would train a class without a name
            first = next(a for a in anns if a["category_id"] == undeclared[0])
            raise DatasetError(
                f"{what}: {json_file}: annotation id {first.get('id')} uses category_id {undeclared[0]}, which is "
                f"not declared in 'categories' (undeclared and >= dataset.num_classes: {undeclared[:10]}); declare "
                f"category {undeclared[0]} in categories or drop its annotations. `tao-skills dataset validate` "
                "lists every such annotation")
        raise DatasetError(
            f"{what}: {json_file} uses category id(s) {offending[:10]} but dataset.num_classes "
            f"is {num_classes}; raise dataset.num_classes to at least {max_label + 1} "
            "(class ids must be < num_classes; with ids starting at 1 that is the number of "
            "classes + 1)"
        )
    images: list[CocoImage] = []
    by_id: dict[int, CocoImage] = {}
    resolve = _resolver(image_dir)
    missing: list[str] = []
    for img in data["images"]:
        if not isinstance(img, dict) or "id" not in img or "file_name" not in img:
            raise DatasetError(f"{what}: {json_file}: image entry {img!r} needs 'id' and "
                               "'file_name'")
        path = resolve(str(img["file_name"]))
        if path is None:
            missing.append(str(img["file_name"]))
            path = image_dir / str(img["file_name"])
        ci = CocoImage(id=img["id"], file_name=str(img["file_name"]), path=path,
                       width=int(img.get("width") or 0), height=int(img.get("height") or 0))
        images.append(ci)
        by_id[ci.id] = ci
    if missing and check_images:
        shown = ", ".join(missing[:10]) + (f" (+{len(missing) - 10} more)" if len(missing) > 10
                                           else "")
        raise DatasetError(
            f"{what}: {len(missing)} image(s) listed in {json_file} are missing from {image_dir}: "
            f"{shown}; add them to images.tar.gz or remove them from the annotation file"
        )
    issues: dict[str, int] = {}
    examples: list[str] = []
    boxes = 0
    for a in anns:
        img = by_id.get(a.get("image_id"))
        if img is None:
            raise DatasetError(
                f"{what}: {json_file}: annotation id {a.get('id')} refers to image_id "
                f"{a.get('image_id')!r}, which is not in 'images'; use the integer id of one of the images"
            )
        bbox = a.get("bbox")
        if (not isinstance(bbox, (list, tuple)) or len(bbox) != 4
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox)):
            raise DatasetError(
                f"{what}: {json_file}: annotation id {a.get('id')} has bbox {bbox!r}; expected "
                "[x, y, width, height] in pixels, four numbers (not strings)"
            )
        if a.get("iscrowd", 0):
            continue
        boxes += 1
        box, defect = _check_box([float(v) for v in bbox], img.width, img.height)
        if defect is not None:
            issues[defect] = issues.get(defect, 0) + 1
            if len(examples) < _MAX_EXAMPLES:
                size = f", {img.width}x{img.height}" if img.width and img.height else ""
                examples.append(f"annotation id {a.get('id')} (image {img.file_name}{size}) bbox {list(bbox)} "
                                f"{BOX_DEFECTS[defect]}")
        if box is None:
            continue
        img.boxes.append(box)
        img.labels.append(cat_to_label[a["category_id"]])
    label_to_cat = {lab: cid for cid, lab in cat_to_label.items()}
    out = CocoData(json_file=json_file, image_dir=image_dir, images=images, categories=categories,
                   label_to_category=label_to_cat, raw=data,
                   skipped_boxes=sum(n for k, n in issues.items() if k != "clipped"),
                   box_issues=issues, issue_examples=examples)
    if boxes == out.skipped_boxes:  # nothing to learn from or to evaluate against
        detail = f"all {boxes} of its boxes are invalid: {out.issues_summary(what)}" if boxes else (
            "it has no annotations (no non-crowd boxes)")
        raise DatasetError(f"{what}: {json_file} cannot be used: {detail}; a detection dataset needs "
                           "annotated boxes [x, y, width, height] inside their images")
    return out


def _check_int_field(ann: dict, name: str, what: str, json_file: Path) -> None:
    """Raise DatasetError naming the file, the annotation id and the fix when ``ann[name]`` is
    not an integer (e.g. ``"1"``)."""
    value = ann.get(name)
    if isinstance(value, int) and not isinstance(value, bool):
        return
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        fix = f"write it as the integer {int(value)} (no quotes)"
    elif isinstance(value, float) and value.is_integer():
        fix = f"write it as the integer {int(value)}"
    else:
        fix = "set it to the integer id of one of the 'categories'"
    raise DatasetError(f"{what}: {json_file}: annotation id {ann.get('id')!r} has {name} {value!r} "
                       f"({type(value).__name__}), not an integer; {fix}")


def read_label_map(path: Path, num_classes: int, what: str = "classmap",
                   trained: dict[int, str] | None = None) -> dict[int, str]:
    """Read a ``label_map.txt`` (one class name per line) into class index -> name.

    ``trained``: the class index -> name map the model was trained with (recorded in its
    checkpoint). When given and the file lists one name per trained class, line *i* names the
    *i*-th trained class index, so inference names classes exactly as training numbered them,
    whatever the base of the category ids (0 or 1).

    Lines may also be ``<id> <name>`` / ``<id>: <name>`` with explicit ids. Without ids, a file
    with ``num_classes`` names maps line *i* to class *i*; a file with ``num_classes - 1`` names
    (COCO ids starting at 1, ``num_classes`` = classes + 1) maps line *i* to class *i + 1*.
    Raises :class:`DatasetError` for an empty file or a count that fits neither rule.
    """
    try:
        lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()]
    except UnicodeDecodeError:
        raise DatasetError(f"{what}: {path} is not UTF-8 text") from None
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    if not lines:
        raise DatasetError(f"{what}: {path} is empty; write one class name per line")
    explicit = [re.match(r"^(\d+)\s*[:\s]\s*(.+)$", ln) for ln in lines]
    if all(explicit):
        return {int(m.group(1)): m.group(2).strip() for m in explicit if m}
    if trained and len(lines) == len(trained):
        return {label: lines[i] for i, label in enumerate(sorted(trained))}
    if len(lines) == num_classes:
        return dict(enumerate(lines))
    if len(lines) == num_classes - 1:
        return {i + 1: name for i, name in enumerate(lines)}
    raise DatasetError(
        f"{what}: {path} lists {len(lines)} class names but dataset.num_classes is "
        f"{num_classes}; expected {num_classes} names (ids from 0) or {num_classes - 1} "
        "(COCO ids from 1), or set dataset.num_classes to match"
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

#: Per action: the spec keys holding files / image folders the action reads: ``file``, ``weights``
#: (a checkpoint file or a Hugging Face folder, from any source of :mod:`tao_sdk.sources`),
#: ``dirs`` (image folders) or ``sources`` (a data-source mapping, or list of mappings, with
#: image_dir / json_file / classmap entries).
_TRAIN_STAGED = [("dataset.train_data_sources", "sources"), ("dataset.val_data_sources", "sources"),
                 ("model.pretrained_backbone_path", "weights"), ("train.pretrained_model_path", "weights"),
                 ("train.resume_training_checkpoint_path", "weights")]
STAGED_KEYS: dict[str, list[tuple[str, str]]] = {
    "train": _TRAIN_STAGED,
    "distill": [*_TRAIN_STAGED, ("distill.pretrained_teacher_model_path", "weights")],
    "quantize": [("dataset.val_data_sources", "sources"),
                 ("dataset.quant_calibration_data_sources", "sources"), ("quantize.model_path", "weights")],
    "evaluate": [("dataset.test_data_sources", "sources"), ("evaluate.checkpoint", "weights")],
    "inference": [("dataset.infer_data_sources", "sources"), ("inference.checkpoint", "weights")],
    "export": [("export.checkpoint", "weights")],
    # calibration images are staged by the engine build, and only for INT8
    "gen_trt_engine": [("gen_trt_engine.onnx_file", "file")],
}


def _is_set(value: Any) -> bool:
    return value not in (None, "", "???", [])


def stage_spec(spec: dict[str, Any], action: str, log: Callable[[str], None] | None = None,
               progress: Callable[[str, dict], None] | None = None) -> dict[str, Any]:
    """Return a copy of ``spec`` whose dataset / model-file URIs are local paths.

    Every key of :data:`STAGED_KEYS` for ``action`` that is set is fetched (remote files are
    downloaded into the cache, ``images.tar.gz`` archives extracted once) and replaced by the
    local path; ``image_dir`` values become the extracted image folder. Unset keys are left
    alone (the action says what is missing). ``log`` receives one line per staged value,
    ``progress`` the status lines of long weight downloads (:func:`fetch_weights`).
    """
    import copy

    from tao_sdk.worker import spec as S

    out = copy.deepcopy(spec)

    def note(key: str, uri: Any, local: Path) -> None:
        """Log one staged value (when it changed)."""
        if log is not None and str(uri) != str(local):
            log(f"staged {key}: {uri} -> {local}")

    for key, kind in STAGED_KEYS.get(action, []):
        value = S.get(out, key)
        if not _is_set(value):
            continue
        if kind in ("file", "weights"):
            local = fetch_file(str(value), key) if kind == "file" else fetch_weights(str(value), key, progress)
            note(key, value, local)
            S.set_value(out, key, str(local))
        elif kind == "dirs":
            items = value if isinstance(value, list) else [value]
            locals_ = []
            for i, item in enumerate(items):
                local = stage_image_dir(str(item), f"{key}[{i}]")
                note(f"{key}[{i}]", item, local)
                locals_.append(str(local))
            S.set_value(out, key, locals_)
        else:
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
                        dirs = field_value if isinstance(field_value, list) else [field_value]
                        locs = []
                        for j, d in enumerate(dirs):
                            label = f"{sub}[{j}]" if isinstance(field_value, list) else sub
                            loc = stage_image_dir(str(d), label)
                            note(label, d, loc)
                            locs.append(str(loc))
                        new[field_name] = locs if isinstance(field_value, list) else locs[0]
                    elif field_name in ("json_file", "classmap", "data_file"):
                        loc = fetch_file(str(field_value), sub)
                        note(sub, field_value, loc)
                        new[field_name] = str(loc)
                staged.append(new)
            S.set_value(out, key, staged if isinstance(value, list) else staged[0])
    evicted = datacache.evict()  # what this job uses is locked: only idle entries go
    if evicted and log is not None:
        log(f"dataset cache over {datacache.CACHE_MAX_ENV}={datacache.cache_max_bytes():,} bytes: evicted the least "
            f"recently used {', '.join(evicted)}")
    return out
