"""Where weights and dataset files come from: one fetch layer over local / s3 / https / hf / ngc.

A *source* turns a URI into a local file (or folder) in the worker's cache
(:mod:`tao_sdk.datacache`: one entry per URI, the shared LRU size cap, ``tao-skills cache``).
The registry :data:`SOURCES` is keyed by URI scheme:

* a plain path or ``file://`` -> the file or folder itself (nothing is copied);
* ``s3://bucket/key`` (an object, or a prefix = folder) -> :mod:`tao_sdk.storage` (boto3);
* ``https://host/path[#sha256=HEX]`` (and ``http://``) -> ``requests``; the size from the server
  and the sha256 (from the fragment, or from NGC's file list) are checked; an interrupted
  download resumes with an HTTP ``Range`` request (``TAO_FETCH_ATTEMPTS`` tries, default 3);
* ``hf://ORG/NAME[@REV][/FILE]`` -> ``huggingface_hub.hf_hub_download`` (``HF_ENDPOINT``,
  ``HF_TOKEN``); without ``FILE`` the repository's weights (``model.safetensors`` or its
  shards, else ``pytorch_model.bin``) plus ``config.json``, as a folder;
* ``ngc://ORG/[TEAM/]MODEL:VERSION[/FILE]`` -> NGC's model REST API (``$NGC_API_URL``, default
  ``https://api.ngc.nvidia.com/v2``: ``/org/O[/team/T]/models/M/versions/V`` and its ``/files``);
  without ``FILE`` the version's one checkpoint file. Public models need no key; private ones
  need ``NGC_KEY`` (or ``NGC_API_KEY``): an ``nvapi-`` key is sent as the bearer token, a legacy
  key is exchanged for one at ``$NGC_AUTH_URL/token`` (default ``https://authn.nvidia.com``).

Downloads are written as ``.part-<name>`` files and renamed only once complete and verified, so
a partial file is never used as complete; a ``.<name>.src`` record says where a cached file came
from. One process at a time fills an entry (an exclusive lock): concurrent jobs download once.
Secrets (``NGC_KEY``, ``HF_TOKEN``) are read from the environment only and never logged.
:func:`describe` says, without any network call, what a URI names (for plans); :func:`fetch`
downloads. Stdlib at import; ``requests`` / ``huggingface_hub`` / ``boto3`` are imported lazily.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from tao_sdk import datacache
from tao_sdk.fetch import FetchError, Progress, cached_download, entry_for, is_cached, mark_cached

__all__ = ["FetchError", "Source", "SOURCES", "register", "source_for", "scheme_of", "describe",
           "fetch", "download_if_changed"]

_URI_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")


class Source(Protocol):
    """One kind of place weights and files live (a URI scheme)."""

    name: str

    def describe(self, uri: str) -> dict[str, Any]:
        """What ``uri`` names, without a network call: ``source``, ``resolved`` (the concrete
        location), ``size`` when known here; raises FetchError for a malformed URI."""

    def fetch(self, uri: str, what: str, progress: Progress | None) -> Path:
        """A local file or folder holding ``uri`` (downloaded into the cache if remote)."""


SOURCES: dict[str, Source] = {}


def register(scheme: str, source: Source) -> None:
    """Make ``source`` handle ``scheme://`` URIs (``""`` = plain paths)."""
    SOURCES[scheme] = source


def scheme_of(uri: str) -> str:
    """``"s3"`` for ``s3://b/k``; ``""`` for a plain path or ``file://``."""
    m = _URI_RE.match(str(uri))
    scheme = m.group(1).lower() if m else ""
    return "" if scheme == "file" else scheme


def source_for(uri: str, what: str = "uri") -> Source:
    """The registered source of ``uri``'s scheme; FetchError listing the supported forms."""
    scheme = scheme_of(uri)
    if scheme not in SOURCES:
        forms = "a local path, s3://BUCKET/KEY, https://HOST/PATH, hf://ORG/NAME[@REV][/FILE], " \
                "ngc://ORG/[TEAM/]MODEL:VERSION[/FILE]"
        raise FetchError(f"{what}={uri}: unsupported scheme '{scheme}://'; use {forms}")
    return SOURCES[scheme]


def describe(uri: str, what: str = "uri") -> dict[str, Any]:
    """JSON-ready description of ``uri`` for a plan (``uri``, ``source``, ``resolved``, ``size``
    when known without a download). Raises FetchError for a malformed or unsupported URI."""
    return {"uri": str(uri), **source_for(uri, what).describe(str(uri))}


def fetch(uri: str, what: str, progress: Progress | None = None) -> Path:
    """Return a local file or folder holding ``uri``, downloading it into the cache if remote.

    ``what`` names the spec key (in every error); ``progress`` receives status lines of long
    downloads. Raises FetchError saying what to change."""
    return source_for(uri, what).fetch(str(uri), what, progress)


@dataclass
class HttpsSource:
    """``https://`` / ``http://`` files; ``#sha256=HEX`` in the URI is checked after download."""

    name: str = "https"

    @staticmethod
    def _split(uri: str) -> tuple[str, str | None]:
        url, _, frag = uri.partition("#")
        m = re.fullmatch(r"sha256=([0-9a-fA-F]{64})", frag) if frag else None
        if frag and not m:
            raise FetchError(f"{uri}: the only URI fragment understood is #sha256=<64 hex digits>")
        return url, m.group(1) if m else None

    def describe(self, uri: str) -> dict[str, Any]:
        """See :meth:`tao_sdk.sources.Source.describe` (no network call)."""
        url, sha = self._split(uri)
        return {"source": self.name, "resolved": url, "size": None, **({"sha256": sha} if sha else {})}

    def fetch(self, uri: str, what: str, progress: Progress | None) -> Path:
        """See :meth:`tao_sdk.sources.Source.fetch`."""
        url, sha = self._split(uri)
        name = url.rstrip("/").rsplit("/", 1)[-1].split("?")[0] or "download"
        return cached_download(uri, url, name, what, progress, sha256=sha)


# --------------------------------------------------------------------------- local / s3

@dataclass
class LocalSource:
    """Plain paths and ``file://`` URIs: the file or folder itself."""

    name: str = "local"

    @staticmethod
    def path(uri: str) -> Path:
        """The local path of a plain path or ``file://`` URI (``~`` expanded)."""
        text = str(uri)
        return Path(text[len("file://"):] if text.startswith("file://") else text).expanduser()

    def describe(self, uri: str) -> dict[str, Any]:
        """See :meth:`tao_sdk.sources.Source.describe` (no network call)."""
        p = self.path(uri)
        size = p.stat().st_size if p.is_file() else (
            sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.is_dir() else None)
        return {"source": self.name, "resolved": str(p.resolve()), "size": size, "exists": p.exists(),
                "kind": "folder" if p.is_dir() else "file"}

    def fetch(self, uri: str, what: str, progress: Progress | None) -> Path:
        """See :meth:`tao_sdk.sources.Source.fetch`."""
        p = self.path(uri)
        if not p.exists():
            raise FetchError(f"{what}: {uri} does not exist; fix the path (a file, or a Hugging Face folder "
                             "with config.json + *.safetensors)")
        return p


def download_if_changed(store, uri: str, dest: Path, size: int, mtime: float) -> None:
    """Download the object ``uri`` of ``store`` to ``dest`` unless the cached copy came from the
    same object (same size and modification time, see :func:`is_cached`)."""
    stamp = {"uri": uri, "size": size, "mtime": mtime}
    if is_cached(dest, stamp) and dest.stat().st_size == size:
        return
    store.download_file(uri, dest)
    mark_cached(dest, stamp)


@dataclass
class S3Source:
    """``s3://bucket/key`` objects, or every object under a prefix (a folder)."""

    name: str = "s3"

    def describe(self, uri: str) -> dict[str, Any]:
        """See :meth:`tao_sdk.sources.Source.describe` (no network call)."""
        from tao_sdk.storage import split_s3_uri

        split_s3_uri(uri)
        return {"source": self.name, "resolved": uri, "size": None}

    def fetch(self, uri: str, what: str, progress: Progress | None) -> Path:
        """See :meth:`tao_sdk.sources.Source.fetch`."""
        from tao_sdk.storage import storage_for

        store = storage_for(uri)
        exact = [i for i in store.list(uri.rstrip("/")) if i.uri.rstrip("/") == uri.rstrip("/")]
        if exact:  # the files of one folder share an entry (a dataset's archive, annotations, label map)
            entry = entry_for(uri.rstrip("/").rsplit("/", 1)[0])
            dest = entry / uri.rstrip("/").rsplit("/", 1)[-1]
            with datacache.exclusive(entry / f".tao-fetch-{dest.name}.lock"):
                download_if_changed(store, uri, dest, exact[0].size, exact[0].mtime)
            return dest
        entry, prefix = entry_for(uri.rstrip("/")), uri.rstrip("/") + "/"
        infos = store.list(prefix)
        if not infos:
            raise FetchError(f"{what}: object {uri} does not exist and nothing is under it; fix the URI in the spec")
        with datacache.exclusive(entry / ".tao-fetch.lock"):
            for info in infos:
                rel = info.uri[len(prefix):]
                if not rel or rel.startswith("/") or ".." in rel.split("/"):
                    raise FetchError(f"{what}: unsafe object name {info.uri} under {uri}")
                download_if_changed(store, info.uri, entry / "dir" / rel, info.size, info.mtime)
        return entry / "dir"


register("", LocalSource())
register("s3", S3Source())
register("https", HttpsSource())
register("http", HttpsSource(name="http"))

from tao_sdk.hubs import HfSource, NgcSource  # noqa: E402 - hf:// and ngc:// (they import tao_sdk.fetch only)

register("hf", HfSource())
register("ngc", NgcSource())
