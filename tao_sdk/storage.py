"""Storage layer: one API over local folders and S3 (or any S3-compatible store, e.g. MinIO).

Every path the SDK and the worker touch (datasets, specs, checkpoints, results folders) is a
*URI* handled by a :class:`Storage`:

* ``s3://bucket/key/...``  -> :class:`S3Storage` (boto3).
* ``file:///abs/path`` or a plain path (``/data/coco``, ``results/job``) -> :class:`LocalStorage`.

Pick the backend with :func:`storage_for`::

    from tao_sdk.storage import storage_for

    store = storage_for("s3://my-bucket/results/job-42")
    for obj in store.list("s3://my-bucket/results/job-42"):   # recursive by default
        print(obj.uri, obj.size)
    store.download_file("s3://my-bucket/results/job-42/train/model_epoch_001.pth", "/tmp/m.pth")

Conventions shared by both backends:

* A URI that names a *folder* is a key prefix: ``list()`` returns every object (file) below it,
  recursively unless ``recursive=False``; folders themselves are never returned.
* ``exists()`` is true for an object and for a non-empty folder.
* Local writes are atomic (temporary file in the target folder, then ``os.replace``); S3 puts
  are atomic by nature. ``download_file`` is atomic on both backends.
* Every failure is a :class:`tao_sdk.errors.StorageError` whose message names the URI and says
  what to check.

S3 endpoint and credentials: the endpoint comes from the ``endpoint_url`` argument, else the
``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL`` environment variable (unset = AWS itself).
Credentials come only from the standard AWS chain (``AWS_ACCESS_KEY_ID`` /
``AWS_SECRET_ACCESS_KEY`` / ``AWS_SESSION_TOKEN``, ``AWS_PROFILE``, ``~/.aws``, instance roles);
this module never accepts, stores or logs keys.

S3 timeouts and retries (SDK and worker alike): ``TAO_S3_CONNECT_TIMEOUT`` (seconds, default 5),
``TAO_S3_READ_TIMEOUT`` (seconds to wait for each response, default 5) and
``TAO_S3_MAX_ATTEMPTS`` (attempts per call, default 3, standard retry mode), so an endpoint that
accepts connections and never answers fails in seconds, with a StorageError that says so.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import threading
from abc import ABC, abstractmethod
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import unquote, urlsplit

from tao_sdk.diskspace import CACHE_FIX, RESULTS_FIX, disk_fault, disk_full_error, guarded_write
from tao_sdk.errors import DiskFullError, StorageError

__all__ = [
    "ObjectInfo",
    "Storage",
    "LocalStorage",
    "S3Storage",
    "storage_for",
    "reset_storage_cache",
    "is_remote",
    "split_s3_uri",
    "SUPPORTED_SCHEMES",
    "s3_timeouts",
    "S3_DEFAULTS",
]

#: URI forms accepted by :func:`storage_for` (shown in error messages).
SUPPORTED_SCHEMES = ("s3://bucket/key", "file:///absolute/path", "plain local path")

_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")
# S3 bucket naming rules (lowercase letters, digits, dots, hyphens; 3-63 chars; alnum ends).
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
_TMP_PREFIX = ".tao-tmp-"


@dataclass(frozen=True)
class ObjectInfo:
    """One stored object (file) returned by :meth:`Storage.list`.

    Attributes:
        uri: full URI of the object, in the same form as the listed URI (``s3://b/k``,
            ``file:///...`` or a plain path); pass it straight back to any Storage method.
        size: size in bytes.
        mtime: last-modified time, seconds since the Unix epoch (UTC).
    """

    uri: str
    size: int
    mtime: float


def _scheme(uri: str) -> str | None:
    """Return the lower-cased URI scheme (``"s3"``, ``"file"``...) or ``None`` for a plain path."""
    m = _SCHEME_RE.match(uri)
    return m.group(1).lower() if m else None


def is_remote(uri: str | os.PathLike[str]) -> bool:
    """Return True when ``uri`` names remote storage (any ``scheme://`` other than ``file://``).

    Use it to decide whether data must be staged (downloaded) before a local tool can read it.
    Plain paths and ``file://`` URIs are local (False); ``s3://...`` is remote (True).
    """
    scheme = _scheme(os.fspath(uri))
    return scheme is not None and scheme != "file"


def split_s3_uri(uri: str) -> tuple[str, str]:
    """Split ``s3://bucket/some/key`` into ``("bucket", "some/key")``.

    The key is ``""`` for ``s3://bucket`` or ``s3://bucket/``. Raises :class:`StorageError`
    when the URI does not start with ``s3://`` or the bucket name is missing or invalid
    (S3 bucket names are 3-63 characters of lowercase letters, digits, ``.`` and ``-``).
    """
    if not isinstance(uri, str) or _scheme(uri) != "s3":
        raise StorageError(f"malformed S3 URI {uri!r}: expected s3://bucket/key")
    rest = uri[len("s3://"):]
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise StorageError(
            f"malformed S3 URI {uri!r}: the bucket name is missing; expected s3://bucket/key"
        )
    if not _BUCKET_RE.match(bucket) or ".." in bucket:
        raise StorageError(
            f"malformed S3 URI {uri!r}: invalid bucket name {bucket!r} (use 3-63 lowercase "
            "letters, digits, '.' or '-'); expected s3://bucket/key"
        )
    return bucket, key


def _join(uri: str, *parts: str | os.PathLike[str]) -> str:
    """Join path segments onto ``uri`` with ``/`` (see :meth:`Storage.join`)."""
    segments: list[str] = []
    for part in parts:
        for seg in os.fspath(part).replace("\\", "/").split("/"):
            if seg in ("", "."):
                continue
            if seg == "..":
                raise StorageError(
                    f"cannot join {part!r} onto {uri}: '..' segments are not allowed; "
                    "pass a path relative to the URI without '..'"
                )
            segments.append(seg)
    if not segments:
        return uri
    sep = "" if uri.endswith("/") else "/"
    return uri + sep + "/".join(segments)


class Storage(ABC):
    """Abstract storage backend. Get one with :func:`storage_for` rather than instantiating.

    All methods take URIs (``str``); local backends also accept ``os.PathLike``. Every failure
    raises :class:`tao_sdk.errors.StorageError` with a message naming the URI and the fix.
    """

    @abstractmethod
    def exists(self, uri: str) -> bool:
        """Return True if ``uri`` is an existing object, or a folder/prefix holding objects."""

    @abstractmethod
    def list(self, uri: str, recursive: bool = True) -> list[ObjectInfo]:
        """List the objects (files) under the folder/prefix ``uri``, sorted by URI.

        Recursive by default: objects in sub-folders at any depth are included. With
        ``recursive=False`` only objects directly inside ``uri`` are returned. If ``uri`` is
        itself an object, the result is that single object. A missing folder gives ``[]``.
        Folders are never returned as entries.
        """

    @abstractmethod
    def read_bytes(self, uri: str) -> bytes:
        """Return the full content of the object ``uri``; StorageError if it does not exist."""

    @abstractmethod
    def open_read(self, uri: str) -> BinaryIO:
        """A binary stream of the object ``uri``, read front to back without storing it (for
        scanning large archives); the caller closes it. StorageError if it does not exist."""

    def read_text(self, uri: str, encoding: str = "utf-8") -> str:
        """Return the content of the object ``uri`` decoded as text (UTF-8 by default)."""
        data = self.read_bytes(uri)
        try:
            return data.decode(encoding)
        except UnicodeDecodeError as exc:
            raise StorageError(
                f"{uri} is not valid {encoding} text ({exc.reason} at byte {exc.start}); "
                "use read_bytes() for binary files"
            ) from None

    @abstractmethod
    def write_bytes(self, uri: str, data: bytes) -> None:
        """Write ``data`` to the object ``uri`` atomically, replacing it if present.

        Missing parent folders are created. Readers never see a partially written object.
        """

    def write_text(self, uri: str, text: str, encoding: str = "utf-8") -> None:
        """Write ``text`` (UTF-8 by default) to the object ``uri`` atomically."""
        self.write_bytes(uri, text.encode(encoding))

    @abstractmethod
    def upload_file(self, local_path: str | os.PathLike[str], uri: str) -> None:
        """Copy the local file ``local_path`` to the object ``uri`` (atomic, overwrites)."""

    @abstractmethod
    def download_file(self, uri: str, local_path: str | os.PathLike[str]) -> None:
        """Copy the object ``uri`` to the local file ``local_path``.

        Atomic: the data goes to a temporary file next to ``local_path`` that is renamed into
        place only when complete, so a failed download never leaves a partial file. Parent
        folders of ``local_path`` are created.
        """

    def upload_dir(self, local_dir: str | os.PathLike[str], uri_prefix: str) -> int:
        """Upload every file below ``local_dir`` to ``uri_prefix``, keeping relative paths.

        ``local_dir/a/b.txt`` goes to ``join(uri_prefix, "a/b.txt")``. Returns the number of
        files uploaded (0 for an empty folder). StorageError if ``local_dir`` is not a folder.
        """
        files = _local_files(local_dir)
        for rel, path in files:
            self.upload_file(path, self.join(uri_prefix, rel))
        return len(files)

    @abstractmethod
    def delete(self, uri: str, recursive: bool = False) -> None:
        """Delete the object ``uri``. A missing object is not an error (idempotent).

        With ``recursive=True`` every object under the folder/prefix ``uri`` is deleted too;
        without it, deleting a non-empty local folder raises StorageError.
        """

    def join(self, uri: str, *parts: str | os.PathLike[str]) -> str:
        """Append path segments to ``uri`` with ``/``: ``join("s3://b/res", "job", "a.json")``.

        Parts may contain ``/``; empty and ``.`` segments are dropped; ``..`` raises
        StorageError. Unlike ``os.path.join`` a part starting with ``/`` does not reset the path.
        """
        return _join(os.fspath(uri), *parts)


def _local_files(local_dir: str | os.PathLike[str]) -> list[tuple[str, Path]]:
    """Return ``(relative posix path, absolute Path)`` for each file below ``local_dir``."""
    root = Path(local_dir)
    if not root.is_dir():
        raise StorageError(
            f"cannot upload {os.fspath(local_dir)}: not an existing local folder; "
            "check the path (upload_file() uploads a single file)"
        )
    out: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            out.append((path.relative_to(root).as_posix(), path))
    return out


def _atomic_write(dest: Path, writer: Any, needed: int | None = None, fix: str = RESULTS_FIX) -> None:
    """Create ``dest``'s parents, call ``writer(tmp_path)``, then ``os.replace`` tmp onto dest.

    The temporary file lives in ``dest``'s folder (same filesystem, so the rename is atomic)
    and is removed if anything fails; ``needed`` bytes of free space are checked first, and a
    full / read-only filesystem raises :class:`tao_sdk.errors.DiskFullError` (``fix``: the
    setting that moves the write elsewhere, see :mod:`tao_sdk.diskspace`).
    """
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=_TMP_PREFIX + dest.name + ".", dir=dest.parent)
    except OSError as exc:
        if disk_fault(exc) is None:
            raise
        raise disk_full_error(_existing_parent(dest), dest.name, needed=needed, code=exc.errno, fix=fix) from None
    os.close(fd)
    tmp = Path(tmp_name)
    with guarded_write(tmp, dest.name, needed=needed, fix=fix):
        writer(tmp)
        os.replace(tmp, dest)


def _existing_parent(path: Path) -> Path:
    """The nearest existing folder above ``path`` (the one a failed mkdir could not write)."""
    parent = path.parent
    while not parent.exists() and parent.parent != parent:
        parent = parent.parent
    return parent


class LocalStorage(Storage):
    """Storage on the local filesystem (plain paths and ``file://`` URIs).

    Listed URIs keep the caller's form: listing ``file:///data`` returns ``file:///data/...``
    entries, listing ``data`` returns ``data/...`` paths. Writes are atomic.
    """

    # -- path handling -------------------------------------------------------------------
    @staticmethod
    def _path(uri: str | os.PathLike[str]) -> Path:
        """Convert a plain path or ``file://`` URI to a :class:`Path`; reject other schemes."""
        text = os.fspath(uri)
        scheme = _scheme(text)
        if scheme is None:
            if not text:
                raise StorageError("empty path: pass a local path, file:// URI or s3:// URI")
            return Path(text)
        if scheme != "file":
            raise StorageError(
                f"LocalStorage cannot handle {text}: use storage_for(uri) to get the backend "
                f"for that scheme (supported: {', '.join(SUPPORTED_SCHEMES)})"
            )
        parts = urlsplit(text)
        if parts.netloc not in ("", "localhost"):
            raise StorageError(
                f"malformed file URI {text!r}: expected file:///absolute/path "
                "(three slashes; remote hosts are not supported)"
            )
        return Path(unquote(parts.path))

    @staticmethod
    def _os_error(uri: Any, exc: OSError, action: str) -> StorageError:
        """Translate an OSError raised while doing ``action`` on ``uri`` into a StorageError."""
        where = os.fspath(uri)
        if isinstance(exc, FileNotFoundError):
            return StorageError(
                f"{where} not found: check the path (list its parent folder to see what exists)"
            )
        if isinstance(exc, IsADirectoryError):
            return StorageError(f"cannot {action} {where}: it is a folder, not a file")
        if isinstance(exc, NotADirectoryError):
            return StorageError(f"cannot {action} {where}: a parent of it is a file, not a folder")
        if isinstance(exc, PermissionError):
            hint = (f"; or set {RESULTS_FIX} to a folder you can write" if action == "write" else "")
            return StorageError(f"permission denied to {action} {where}: check file permissions{hint}")
        if disk_fault(exc) is not None:
            return disk_full_error(_existing_parent(Path(where)), Path(where).name, code=exc.errno)
        return StorageError(f"cannot {action} {where}: {exc.strerror or exc}")

    # -- Storage API ---------------------------------------------------------------------
    def exists(self, uri: str) -> bool:
        """Return True if the file exists, or the folder exists (even if empty)."""
        return self._path(uri).exists()

    def list(self, uri: str, recursive: bool = True) -> list[ObjectInfo]:
        """List files under the folder ``uri`` (recursive by default), sorted by URI.

        A file URI returns that one file; a missing path returns ``[]``.
        """
        base_text = os.fspath(uri)
        root = self._path(base_text)
        if root.is_file():
            st = root.stat()
            return [ObjectInfo(base_text, st.st_size, st.st_mtime)]
        if not root.is_dir():
            return []
        out: list[ObjectInfo] = []
        try:
            if recursive:
                for dirpath, dirnames, filenames in os.walk(root):
                    for name in filenames:
                        if name.startswith(_TMP_PREFIX):
                            continue
                        path = Path(dirpath) / name
                        st = path.stat()
                        rel = path.relative_to(root).as_posix()
                        out.append(ObjectInfo(_join(base_text, rel), st.st_size, st.st_mtime))
            else:
                for entry in os.scandir(root):
                    if entry.is_file() and not entry.name.startswith(_TMP_PREFIX):
                        st = entry.stat()
                        out.append(
                            ObjectInfo(_join(base_text, entry.name), st.st_size, st.st_mtime)
                        )
        except OSError as exc:
            raise self._os_error(uri, exc, "list") from None
        out.sort(key=lambda o: o.uri)
        return out

    def read_bytes(self, uri: str) -> bytes:
        """Return the file's bytes; StorageError naming the path if it is missing."""
        try:
            return self._path(uri).read_bytes()
        except OSError as exc:
            raise self._os_error(uri, exc, "read") from None

    def open_read(self, uri: str) -> BinaryIO:
        """The file opened for binary reading; StorageError naming the path if it is missing."""
        try:
            return open(self._path(uri), "rb")
        except OSError as exc:
            raise self._os_error(uri, exc, "read") from None

    def write_bytes(self, uri: str, data: bytes) -> None:
        """Write ``data`` atomically (temp file + ``os.replace``), creating parent folders."""
        dest = self._path(uri)
        try:
            _atomic_write(dest, lambda tmp: tmp.write_bytes(data), needed=len(data))
        except OSError as exc:
            raise self._os_error(uri, exc, "write") from None

    def upload_file(self, local_path: str | os.PathLike[str], uri: str) -> None:
        """Copy ``local_path`` to ``uri`` atomically (a local-to-local copy)."""
        src = Path(local_path)
        if not src.is_file():
            raise StorageError(
                f"cannot upload {os.fspath(local_path)}: no such local file; check the path"
            )
        dest = self._path(uri)
        try:
            _atomic_write(dest, lambda tmp: shutil.copyfile(src, tmp), needed=src.stat().st_size)
        except OSError as exc:
            raise self._os_error(uri, exc, "write") from None

    def download_file(self, uri: str, local_path: str | os.PathLike[str]) -> None:
        """Copy the file ``uri`` to ``local_path`` atomically, creating parent folders."""
        src = self._path(uri)
        if not src.is_file():
            raise self._os_error(
                uri, IsADirectoryError() if src.is_dir() else FileNotFoundError(), "download"
            )
        try:
            _atomic_write(Path(local_path), lambda tmp: shutil.copyfile(src, tmp), needed=src.stat().st_size,
                          fix=CACHE_FIX)
        except OSError as exc:
            raise self._os_error(local_path, exc, "write") from None

    def delete(self, uri: str, recursive: bool = False) -> None:
        """Delete the file ``uri`` (no error if missing); ``recursive=True`` removes a folder."""
        path = self._path(uri)
        try:
            if path.is_dir() and not path.is_symlink():
                if recursive:
                    shutil.rmtree(path)
                else:
                    try:
                        path.rmdir()
                    except OSError:
                        raise StorageError(
                            f"cannot delete {os.fspath(uri)}: it is a non-empty folder; "
                            "pass recursive=True to delete everything below it"
                        ) from None
            else:
                path.unlink(missing_ok=True)
        except OSError as exc:
            raise self._os_error(uri, exc, "delete") from None

    def __repr__(self) -> str:
        return "LocalStorage()"


# Error codes botocore reports for the usual failure classes.
_NOT_FOUND_CODES = {"NoSuchKey", "404", "NotFound"}
_NO_BUCKET_CODES = {"NoSuchBucket"}
_DENIED_CODES = {
    "AccessDenied",
    "403",
    "Forbidden",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "TokenRefreshRequired",
    "AllAccessDisabled",
}

#: ... and the codes of a store that is out of space or over quota (MinIO, Ceph, AWS)
_FULL_CODES = {"XMinioStorageFull", "XMinioAdminBucketQuotaExceeded", "QuotaExceeded", "InsufficientStorage",
               "EntityTooLarge"}


def _translate_s3_error(exc: BaseException, uri: str, action: str) -> StorageError:
    """Turn a botocore/boto3 exception raised while doing ``action`` on ``uri`` into a
    :class:`StorageError` that names the URI and what to do. Never includes credentials."""
    from botocore import exceptions as bce  # imported lazily: boto3 is slow to import

    bucket = uri[len("s3://"):].split("/", 1)[0] if uri.startswith("s3://") else uri
    if isinstance(exc, bce.NoCredentialsError) or isinstance(exc, bce.PartialCredentialsError):
        return StorageError(
            f"cannot {action} {uri}: no AWS credentials found; set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) in the environment"
        )
    if isinstance(exc, (bce.ReadTimeoutError, bce.ConnectTimeoutError)):
        cfg = s3_timeouts()
        return StorageError(
            f"cannot {action} {uri}: the S3 endpoint did not answer ({type(exc).__name__}) within "
            f"{cfg['connect_timeout']:g} s to connect / {cfg['read_timeout']:g} s to read, "
            f"{cfg['max_attempts']} attempt(s); check AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_S3 and "
            f"the network, or raise {S3_READ_TIMEOUT_ENV} / {S3_CONNECT_TIMEOUT_ENV} / "
            f"{S3_MAX_ATTEMPTS_ENV} for a slow store"
        )
    if isinstance(exc, bce.EndpointConnectionError) or isinstance(exc, bce.ConnectionError):
        return StorageError(
            f"cannot {action} {uri}: cannot reach the S3 endpoint; check AWS_ENDPOINT_URL / "
            "AWS_ENDPOINT_URL_S3 and the network"
        )
    if isinstance(exc, bce.ClientError):
        err = exc.response.get("Error", {}) if isinstance(exc.response, dict) else {}
        code = str(err.get("Code", ""))
        if code in _NO_BUCKET_CODES:
            return StorageError(
                f"cannot {action} {uri}: bucket s3://{bucket} does not exist; check the bucket "
                "name (and the endpoint in AWS_ENDPOINT_URL)"
            )
        if code in _NOT_FOUND_CODES:
            return StorageError(
                f"{uri} not found: no such object; list the parent prefix to see what exists"
            )
        if code in _DENIED_CODES:
            return StorageError(
                f"access denied to s3://{bucket} while trying to {action} {uri} ({code}): check "
                "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/AWS_PROFILE and the bucket policy"
            )
        message = str(err.get("Message", ""))[:200]
        if code in _FULL_CODES:
            return DiskFullError(
                f"the S3 store of s3://{bucket} has no room to {action} {uri} ({code} {message}); free space or "
                f"raise the quota of the bucket, or point {RESULTS_FIX} at another bucket".replace(" )", ")"))
        return StorageError(f"S3 error while trying to {action} {uri}: {code} {message}".rstrip())
    if isinstance(exc, bce.BotoCoreError):
        return StorageError(f"S3 error while trying to {action} {uri}: {exc}")
    if isinstance(exc, OSError):
        return StorageError(f"cannot {action} {uri}: {exc.strerror or exc}")
    return StorageError(f"cannot {action} {uri}: {type(exc).__name__}: {exc}")


def _s3_error_types() -> tuple[type[BaseException], ...]:
    """Exception types that :func:`_translate_s3_error` handles."""
    from boto3.exceptions import Boto3Error
    from botocore.exceptions import BotoCoreError, ClientError

    return (ClientError, BotoCoreError, Boto3Error)


#: Environment variables bounding every S3 call (SDK and worker): seconds to connect, seconds
#: to wait for each response, total attempts per call (retries on timeouts, throttling, 5xx).
S3_CONNECT_TIMEOUT_ENV = "TAO_S3_CONNECT_TIMEOUT"
S3_READ_TIMEOUT_ENV = "TAO_S3_READ_TIMEOUT"
S3_MAX_ATTEMPTS_ENV = "TAO_S3_MAX_ATTEMPTS"
#: Defaults: a silent endpoint fails one call in about 3 x (5 s + backoff), well under 30 s.
S3_DEFAULTS = {"connect_timeout": 5.0, "read_timeout": 5.0, "max_attempts": 3}


def s3_timeouts() -> dict[str, Any]:
    """The S3 connect/read timeouts (seconds) and attempts in effect: ``$TAO_S3_CONNECT_TIMEOUT``,
    ``$TAO_S3_READ_TIMEOUT``, ``$TAO_S3_MAX_ATTEMPTS`` or :data:`S3_DEFAULTS`. Raises
    StorageError naming the variable when a value is not a positive number."""
    out: dict[str, Any] = {}
    for key, env, kind in (("connect_timeout", S3_CONNECT_TIMEOUT_ENV, float),
                           ("read_timeout", S3_READ_TIMEOUT_ENV, float),
                           ("max_attempts", S3_MAX_ATTEMPTS_ENV, int)):
        raw = os.environ.get(env, "").strip()
        try:
            value = kind(raw) if raw else S3_DEFAULTS[key]
        except ValueError:
            value = None
        if value is None or value <= 0:
            raise StorageError(f"{env}={raw!r} is not a positive {'integer' if kind is int else 'number'}; "
                               f"unset it (default {S3_DEFAULTS[key]}) or set e.g. {env}={S3_DEFAULTS[key]}")
        out[key] = value
    return out


def _env_endpoint() -> str | None:
    """The S3 endpoint from ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL`` (None if unset)."""
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


class S3Storage(Storage):
    """Storage on S3 or an S3-compatible store (MinIO, Ceph...), via boto3.

    Args:
        endpoint_url: S3 endpoint (``http://minio:9000``). Default: env ``AWS_ENDPOINT_URL_S3``,
            else ``AWS_ENDPOINT_URL``, else AWS itself.

    Credentials come only from the standard AWS chain (env vars, ``AWS_PROFILE``, ``~/.aws``,
    instance role); none are accepted or stored here. The boto3 client is created on first use.
    """

    def __init__(self, endpoint_url: str | None = None) -> None:
        self.endpoint_url: str | None = endpoint_url or _env_endpoint()
        self._client: Any = None
        self._lock = threading.Lock()

    @property
    def client(self) -> Any:
        """The boto3 S3 client, created lazily (thread-safe) on first access."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    import boto3

                    from botocore.config import Config

                    cfg = s3_timeouts()
                    config = Config(connect_timeout=cfg["connect_timeout"],
                                    read_timeout=cfg["read_timeout"],
                                    retries={"max_attempts": cfg["max_attempts"], "mode": "standard"})
                    try:
                        self._client = boto3.session.Session().client(
                            "s3", endpoint_url=self.endpoint_url, config=config
                        )
                    except Exception as exc:  # bad region/profile/endpoint configuration
                        raise StorageError(
                            f"cannot create the S3 client for endpoint "
                            f"{self.endpoint_url or 'AWS default'}: {type(exc).__name__}: {exc}; "
                            "check AWS_PROFILE, AWS_DEFAULT_REGION and AWS_ENDPOINT_URL"
                        ) from None
        return self._client

    # -- helpers -------------------------------------------------------------------------
    @staticmethod
    def _object(uri: str, action: str) -> tuple[str, str]:
        """Split ``uri`` and require a non-folder object key."""
        bucket, key = split_s3_uri(uri)
        if not key or key.endswith("/"):
            raise StorageError(
                f"cannot {action} {uri}: it names a bucket or folder, not an object; "
                "pass s3://bucket/path/to/object"
            )
        return bucket, key

    def _call(self, uri: str, action: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)`` and translate boto errors into StorageError."""
        try:
            return fn(*args, **kwargs)
        except StorageError:
            raise
        except _s3_error_types() as exc:
            raise self._refine(_translate_s3_error(exc, uri, action), exc, uri) from None

    def _refine(self, err: StorageError, exc: BaseException, uri: str) -> StorageError:
        """For a bare 404 (HEAD requests cannot tell a missing key from a missing bucket),
        check the bucket so the message says which one is missing."""
        from botocore.exceptions import ClientError

        if isinstance(exc, ClientError) and exc.response.get("Error", {}).get("Code") in {
            "404",
            "NotFound",
        }:
            bucket, _ = split_s3_uri(uri)
            try:
                self.client.head_bucket(Bucket=bucket)
            except ClientError as bexc:
                if bexc.response.get("Error", {}).get("Code") in {"404", "NoSuchBucket", "NotFound"}:
                    return StorageError(
                        f"{uri} not found: bucket s3://{bucket} does not exist; check the "
                        "bucket name (and the endpoint in AWS_ENDPOINT_URL)"
                    )
            except Exception:  # keep the original message
                pass
        return err

    def _iter_objects(self, bucket: str, prefix: str, delimiter: str | None, uri: str):
        """Yield raw ``Contents`` entries under ``prefix``, following pagination."""
        kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
        if delimiter:
            kwargs["Delimiter"] = delimiter
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(**kwargs):
                yield from page.get("Contents", ())
        except _s3_error_types() as exc:
            raise _translate_s3_error(exc, uri, "list") from None

    # -- Storage API ---------------------------------------------------------------------
    def exists(self, uri: str) -> bool:
        """True if ``uri`` is an object or a prefix with objects (``s3://b``: the bucket exists).

        A missing bucket gives False; access problems raise StorageError.
        """
        from botocore.exceptions import ClientError

        bucket, key = split_s3_uri(uri)
        if not key:
            try:
                self.client.head_bucket(Bucket=bucket)
                return True
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in {"404", "NoSuchBucket", "NotFound"}:
                    return False
                raise _translate_s3_error(exc, uri, "check") from None
            except _s3_error_types() as exc:
                raise _translate_s3_error(exc, uri, "check") from None
        if not key.endswith("/"):
            try:
                self.client.head_object(Bucket=bucket, Key=key)
                return True
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") not in _NOT_FOUND_CODES:
                    raise _translate_s3_error(exc, uri, "check") from None
            except _s3_error_types() as exc:
                raise _translate_s3_error(exc, uri, "check") from None
        prefix = key.rstrip("/") + "/"
        try:
            resp = self.client.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _NO_BUCKET_CODES:
                return False
            raise _translate_s3_error(exc, uri, "check") from None
        except _s3_error_types() as exc:
            raise _translate_s3_error(exc, uri, "check") from None
        return bool(resp.get("KeyCount") or resp.get("Contents"))

    def list(self, uri: str, recursive: bool = True) -> list[ObjectInfo]:
        """List objects under the prefix ``uri`` (recursive by default, all pages), sorted.

        ``s3://b/results/job`` lists keys under ``results/job/`` (not ``results/job2/...``);
        an object URI returns that one object; a missing prefix returns ``[]``; a missing
        bucket raises StorageError. Zero-byte folder markers (keys ending in ``/``) are skipped.
        """
        bucket, key = split_s3_uri(uri)
        prefix = key.rstrip("/") + "/" if key.strip("/") else ""
        out = [
            ObjectInfo(f"s3://{bucket}/{obj['Key']}", int(obj["Size"]), obj["LastModified"].timestamp())
            for obj in self._iter_objects(bucket, prefix, None if recursive else "/", uri)
            if not obj["Key"].endswith("/")
        ]
        if not out and key and not key.endswith("/"):
            from botocore.exceptions import ClientError

            try:
                head = self.client.head_object(Bucket=bucket, Key=key)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in _NOT_FOUND_CODES:
                    return []
                raise _translate_s3_error(exc, uri, "list") from None
            except _s3_error_types() as exc:
                raise _translate_s3_error(exc, uri, "list") from None
            return [ObjectInfo(uri, int(head["ContentLength"]), head["LastModified"].timestamp())]
        out.sort(key=lambda o: o.uri)
        return out

    def read_bytes(self, uri: str) -> bytes:
        """Return the object's bytes; StorageError (not found / no bucket / denied) otherwise."""
        bucket, key = self._object(uri, "read")

        def _get() -> bytes:
            return self.client.get_object(Bucket=bucket, Key=key)["Body"].read()

        return self._call(uri, "read", _get)

    def open_read(self, uri: str) -> BinaryIO:
        """The object's body as a stream (one GET, read as it arrives)."""
        bucket, key = self._object(uri, "read")
        return self._call(uri, "read", lambda: self.client.get_object(Bucket=bucket, Key=key)["Body"])

    def write_bytes(self, uri: str, data: bytes) -> None:
        """Put ``data`` at ``uri`` (S3 puts are atomic; prefixes need no creation)."""
        bucket, key = self._object(uri, "write")
        self._call(uri, "write", self.client.put_object, Bucket=bucket, Key=key, Body=bytes(data))

    def upload_file(self, local_path: str | os.PathLike[str], uri: str) -> None:
        """Upload the local file to ``uri`` (multipart for large files)."""
        bucket, key = self._object(uri, "upload to")
        src = Path(local_path)
        if not src.is_file():
            raise StorageError(
                f"cannot upload {os.fspath(local_path)}: no such local file; check the path"
            )
        self._call(uri, "upload to", self.client.upload_file, str(src), bucket, key)

    def download_file(self, uri: str, local_path: str | os.PathLike[str]) -> None:
        """Download ``uri`` to ``local_path`` atomically (temp file + rename)."""
        bucket, key = self._object(uri, "download")
        dest = Path(local_path)

        def _download(tmp: Path) -> None:
            self.client.download_file(bucket, key, str(tmp))

        try:
            self._call(uri, "download", _atomic_write, dest, _download, None, CACHE_FIX)
        except OSError as exc:
            raise LocalStorage._os_error(local_path, exc, "write") from None

    def upload_dir(self, local_dir: str | os.PathLike[str], uri_prefix: str) -> int:
        """Upload every file below ``local_dir`` under ``uri_prefix`` (8 parallel uploads).

        Returns the number of files uploaded.
        """
        split_s3_uri(uri_prefix)  # validate before doing any work
        files = _local_files(local_dir)
        if not files:
            return 0
        with ThreadPoolExecutor(max_workers=min(8, len(files))) as pool:
            futures = [
                pool.submit(self.upload_file, path, self.join(uri_prefix, rel))
                for rel, path in files
            ]
            for fut in futures:
                fut.result()
        return len(files)

    def delete(self, uri: str, recursive: bool = False) -> None:
        """Delete the object ``uri`` (no error if missing); ``recursive=True`` also deletes
        every object under the prefix ``uri/`` (batched, 1000 keys per request)."""
        bucket, key = split_s3_uri(uri)
        if key and not key.endswith("/"):
            self._call(uri, "delete", self.client.delete_object, Bucket=bucket, Key=key)
        if not recursive:
            return
        prefix = key.rstrip("/") + "/" if key.strip("/") else ""
        batch: list[dict[str, str]] = []

        def _flush() -> None:
            resp = self._call(
                uri,
                "delete",
                self.client.delete_objects,
                Bucket=bucket,
                Delete={"Objects": batch, "Quiet": True},
            )
            errors = resp.get("Errors") or []
            if errors:
                first = errors[0]
                raise StorageError(
                    f"could not delete {len(errors)} object(s) under {uri}, e.g. "
                    f"s3://{bucket}/{first.get('Key')} ({first.get('Code')}); check permissions"
                )

        for obj in self._iter_objects(bucket, prefix, None, uri):
            batch.append({"Key": obj["Key"]})
            if len(batch) == 1000:
                _flush()
                batch = []
        if batch:
            _flush()

    def __repr__(self) -> str:
        return f"S3Storage(endpoint_url={self.endpoint_url!r})"


_LOCAL = LocalStorage()
_S3_CACHE: dict[str | None, S3Storage] = {}
_S3_CACHE_LOCK = threading.Lock()


def storage_for(uri: str | os.PathLike[str]) -> Storage:
    """Return the Storage backend for ``uri``: ``s3://`` -> S3Storage, plain path or
    ``file://`` -> LocalStorage.

    One S3Storage is cached per endpoint (from env ``AWS_ENDPOINT_URL_S3`` /
    ``AWS_ENDPOINT_URL`` at call time). Any other scheme (``gs://``, ``http://``...) raises
    StorageError listing the supported forms; a malformed ``s3://`` URI raises StorageError too.
    """
    text = os.fspath(uri)
    scheme = _scheme(text)
    if scheme is None or scheme == "file":
        return _LOCAL
    if scheme == "s3":
        split_s3_uri(text)
        endpoint = _env_endpoint()
        with _S3_CACHE_LOCK:
            store = _S3_CACHE.get(endpoint)
            if store is None:
                store = _S3_CACHE[endpoint] = S3Storage(endpoint)
        return store
    raise StorageError(
        f"unsupported storage scheme '{scheme}://' in {text}: supported are "
        f"{', '.join(SUPPORTED_SCHEMES)}; copy the data to S3 or a local folder first"
    )


def reset_storage_cache() -> None:
    """Forget the cached S3Storage objects so the next :func:`storage_for` call creates a new
    client (use after changing AWS credentials or endpoint environment variables)."""
    with _S3_CACHE_LOCK:
        _S3_CACHE.clear()
