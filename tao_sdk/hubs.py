"""Model hubs as weight sources: ``hf://`` (the Hugging Face Hub) and ``ngc://`` (NVIDIA NGC).

Registered in :data:`tao_sdk.sources.SOURCES`; see that module for the URI forms.

- ``hf://ORG/NAME[@REV][/FILE]``: ``huggingface_hub.hf_hub_download`` into the cache entry of
  the URI (its own resumable, locked download), endpoint ``$HF_ENDPOINT`` (default the public
  Hub), token ``$HF_TOKEN`` (private / gated repositories). Without ``FILE``: a folder holding
  ``config.json`` (when the repository has one) and the weights: the shards named by
  ``model.safetensors.index.json``, else ``model.safetensors``, else ``pytorch_model.bin``.
- ``ngc://ORG/[TEAM/]MODEL:VERSION[/FILE]``: NGC's model REST API at ``$NGC_API_URL`` (default
  ``https://api.ngc.nvidia.com/v2``), with the endpoints NVIDIA's own ``ngcsdk`` client calls:
  the version record (status ``UPLOAD_COMPLETE``) at ``/models/ORG[/TEAM]/MODEL/versions/VERSION``
  without a key (NGC's guest API) or ``/org/ORG[/team/TEAM]/models/MODEL/versions/VERSION`` with
  one; its file list ``.../files?page-size=N`` (``modelFiles``: ``path``, ``sizeInBytes``,
  ``sha256_base64``; pages up to ``paginationInfo.totalPages`` through ``page-number``; needed
  only without ``FILE``, else used for the size and checksum when the server has it) and the file
  itself from ``/models/org/ORG[/team/TEAM]/MODEL/VERSION/files?redirect=true&path=PATH`` (what
  NVIDIA's ``wget`` instructions use; NGC redirects to the storage URL). Without ``FILE`` the
  version must hold one checkpoint file (``.pth``, ``.ckpt``, ``.safetensors``, ``.bin``, ``.pt``,
  ``.tlt``). ``$NGC_KEY`` (or ``$NGC_API_KEY``) for private models: an ``nvapi-`` scoped key is the
  bearer token itself; a legacy key is exchanged at ``$NGC_AUTH_URL/token`` (default
  ``https://authn.nvidia.com``; ``service=ngc``, one ``scope=group/ngc:ORG`` and, with a team,
  a second ``scope=group/ngc:ORG/TEAM``) with basic auth ``$oauthtoken:KEY``.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tao_sdk.fetch import FetchError, Progress, cached_download, entry_for

__all__ = ["HfSource", "NgcSource", "parse_hf", "parse_ngc", "NGC_API_ENV", "NGC_AUTH_ENV",
           "NGC_DEFAULT_API", "WEIGHT_SUFFIXES"]

NGC_API_ENV = "NGC_API_URL"
NGC_AUTH_ENV = "NGC_AUTH_URL"
NGC_DEFAULT_API = "https://api.ngc.nvidia.com/v2"
HF_DEFAULT_ENDPOINT = "https://huggingface.co"
#: File suffixes a checkpoint file may have (choosing the one file of an NGC model version).
WEIGHT_SUFFIXES = (".pth", ".ckpt", ".safetensors", ".bin", ".pt", ".tlt")
_HF_RE = re.compile(r"^hf://(?P<org>[^/@]+)/(?P<name>[^/@]+)(?:@(?P<rev>[^/]+))?(?:/(?P<file>.+))?$")
_NGC_RE = re.compile(r"^ngc://(?P<org>[^/:]+)/(?:(?P<team>[^/:]+)/)?(?P<model>[^/:]+):(?P<version>[^/]+)"
                     r"(?:/(?P<file>.+))?$")


def parse_hf(uri: str) -> dict[str, str | None]:
    """``hf://ORG/NAME[@REV][/FILE]`` -> ``repo``, ``revision`` (default ``main``), ``file``."""
    m = _HF_RE.match(uri)
    if not m:
        raise FetchError(f"{uri}: a Hugging Face URI is hf://ORG/NAME[@REVISION][/FILE], e.g. "
                         "hf://PekingU/rtdetr_r50vd or hf://PekingU/rtdetr_r50vd@main/model.safetensors")
    return {"repo": f"{m['org']}/{m['name']}", "revision": m["rev"] or "main", "file": m["file"]}


def parse_ngc(uri: str) -> dict[str, str | None]:
    """``ngc://ORG/[TEAM/]MODEL:VERSION[/FILE]`` -> ``org``, ``team``, ``model``, ``version``, ``file``."""
    m = _NGC_RE.match(uri)
    if not m:
        raise FetchError(f"{uri}: an NGC model URI is ngc://ORG/[TEAM/]MODEL:VERSION[/FILE], e.g. "
                         "ngc://nvidia/tao/pretrained_deformable_detr_coco:ddetr_resnet_50_trainable_v1.0")
    return m.groupdict()


# --------------------------------------------------------------------------- Hugging Face

def _hf_errors():
    try:
        from huggingface_hub import errors
    except ImportError:
        raise FetchError("hf:// weights need the huggingface_hub package: pip install 'tao-skill-bank[worker]'") from None
    return errors


@dataclass
class HfSource:
    """``hf://`` files or weight folders from the Hugging Face Hub (or ``$HF_ENDPOINT``)."""

    name: str = "hf"

    def describe(self, uri: str) -> dict[str, Any]:
        """See :meth:`tao_sdk.sources.Source.describe` (no network call)."""
        p = parse_hf(uri)
        endpoint = (os.environ.get("HF_ENDPOINT") or HF_DEFAULT_ENDPOINT).rstrip("/")
        target = p["file"] or "<config.json + weights>"
        return {"source": self.name, "resolved": f"{endpoint}/{p['repo']}/resolve/{p['revision']}/{target}",
                "size": None, "repo": p["repo"], "revision": p["revision"], "file": p["file"]}

    def _download(self, p: dict, filename: str, local_dir: Path, what: str) -> Path:
        err = _hf_errors()
        from huggingface_hub import hf_hub_download

        try:
            return Path(hf_hub_download(p["repo"], filename, revision=p["revision"], local_dir=local_dir,
                                        endpoint=os.environ.get("HF_ENDPOINT") or None,
                                        token=os.environ.get("HF_TOKEN") or None))
        except err.EntryNotFoundError:
            raise
        except (err.RepositoryNotFoundError, err.GatedRepoError) as exc:
            raise FetchError(f"{what}: Hugging Face repository {p['repo']} cannot be read "
                             f"({type(exc).__name__}); check the name, or set HF_TOKEN for a private "
                             "or gated repository") from None
        except err.RevisionNotFoundError:
            raise FetchError(f"{what}: revision {p['revision']} of {p['repo']} does not exist; fix @REV") from None
        except Exception as exc:  # noqa: BLE001 - network / server problems, said plainly
            raise FetchError(f"{what}: downloading {filename} of hf://{p['repo']} failed ({type(exc).__name__}: "
                             f"{exc}); check HF_ENDPOINT and the network, then run again (it resumes)") from None

    def _optional(self, p: dict, filename: str, local_dir: Path, what: str) -> Path | None:
        try:
            return self._download(p, filename, local_dir, what)
        except _hf_errors().EntryNotFoundError:
            return None

    def _weights_folder(self, p: dict, local_dir: Path, what: str) -> Path:
        self._optional(p, "config.json", local_dir, what)
        index = self._optional(p, "model.safetensors.index.json", local_dir, what)
        if index is not None:
            shards = sorted(set(json.loads(index.read_text(encoding="utf-8")).get("weight_map", {}).values()))
            for shard in shards:
                self._download(p, shard, local_dir, what)
            return local_dir
        for name in ("model.safetensors", "pytorch_model.bin"):
            if self._optional(p, name, local_dir, what) is not None:
                return local_dir
        raise FetchError(f"{what}: hf://{p['repo']}@{p['revision']} has no model.safetensors(.index.json) or "
                         "pytorch_model.bin; name the weights file: hf://ORG/NAME[@REV]/FILE")

    def fetch(self, uri: str, what: str, progress: Progress | None) -> Path:
        """See :meth:`tao_sdk.sources.Source.fetch`."""
        p = parse_hf(uri)
        local_dir = entry_for(uri) / "files"
        if progress is not None:
            progress(f"downloading {what} from {uri}", {"download": {"spec_field": what, "uri": uri, "done": False}})
        if p["file"]:
            try:
                out = self._download(p, p["file"], local_dir, what)
            except _hf_errors().EntryNotFoundError:
                raise FetchError(f"{what}: {p['file']} is not in hf://{p['repo']}@{p['revision']}; "
                                 "fix the file name") from None
        else:
            out = self._weights_folder(p, local_dir, what)
        if progress is not None:
            progress(f"downloaded {what} from {uri}", {"download": {"spec_field": what, "uri": uri, "done": True}})
        return out


# --------------------------------------------------------------------------- NGC

#: Files per page of an NGC file listing (NGC's default is 100).
_NGC_PAGE_SIZE = 100


def _hex_sha256(b64: str | None, what: str, ref: str) -> str | None:
    """NGC's ``sha256_base64`` as the hex digest the download check compares (None: not given)."""
    if not b64:
        return None
    try:
        return base64.b64decode(b64, validate=True).hex()
    except (binascii.Error, ValueError):
        raise FetchError(f"{what}: NGC lists {ref} with a malformed sha256_base64 {b64!r}; name the file "
                         "with an https:// URL to skip NGC's listing, or report it to the model's owner") from None


def _ngc_token(org: str, team: str | None, what: str) -> str | None:
    """The bearer token for NGC (None without a key: public models)."""
    import requests

    key = (os.environ.get("NGC_KEY") or os.environ.get("NGC_API_KEY") or "").strip()
    if not key:
        return None
    if key.startswith("nvapi-"):
        return key
    params = [("service", "ngc"), ("scope", f"group/ngc:{org}")]
    if team:
        params.append(("scope", f"group/ngc:{org}/{team}"))
    url = (os.environ.get(NGC_AUTH_ENV) or "https://authn.nvidia.com").rstrip("/") + "/token"
    try:
        resp = requests.get(url, params=params, auth=("$oauthtoken", key),
                            headers={"Accept": "application/json"}, timeout=30)
    except requests.RequestException as exc:
        raise FetchError(f"{what}: cannot reach NGC's token service {url} ({type(exc).__name__}); "
                         f"check the network or {NGC_AUTH_ENV}") from None
    if resp.status_code != 200:
        raise FetchError(f"{what}: NGC refused the key in NGC_KEY (HTTP {resp.status_code}); "
                         "create a new key at https://org.ngc.nvidia.com/setup/personal-keys")
    return resp.json()["token"]


@dataclass
class NgcSource:
    """``ngc://`` model files through NGC's model REST API (``$NGC_API_URL``)."""

    name: str = "ngc"

    @staticmethod
    def version_url(p: dict, guest: bool = False) -> str:
        """The version-record URL of a parsed NGC reference: NGC's guest API (no key) or its
        org-scoped API (with a key), as ``ngcsdk``'s ``GuestModelAPI`` / ``ModelAPI`` build them."""
        base = (os.environ.get(NGC_API_ENV) or NGC_DEFAULT_API).rstrip("/")
        if guest:
            team = f"/{p['team']}" if p["team"] else ""
            return f"{base}/models/{p['org']}{team}/{p['model']}/versions/{p['version']}"
        team = f"/team/{p['team']}" if p["team"] else ""
        return f"{base}/org/{p['org']}{team}/models/{p['model']}/versions/{p['version']}"

    @staticmethod
    def file_url(p: dict, path: str) -> str:
        """The public download URL of file ``path`` of a parsed NGC reference."""
        from urllib.parse import quote

        base = (os.environ.get(NGC_API_ENV) or NGC_DEFAULT_API).rstrip("/")
        team = f"/team/{p['team']}" if p["team"] else ""
        return f"{base}/models/org/{p['org']}{team}/{p['model']}/{p['version']}/files?redirect=true&path={quote(path)}"

    def describe(self, uri: str) -> dict[str, Any]:
        """See :meth:`tao_sdk.sources.Source.describe` (no network call)."""
        p = parse_ngc(uri)
        target = p["file"] or "<the version's checkpoint file>"
        return {"source": self.name, "resolved": self.file_url(p, target), "size": None,
                "model": f"{p['org']}/{p['team'] + '/' if p['team'] else ''}{p['model']}", "version": p["version"]}

    def _get_json(self, url: str, headers: dict, what: str, ref: str, optional: bool = False) -> Any:
        """GET NGC JSON; ``optional``: a 404 gives ``{}`` (a listing only used for the size)."""
        import requests

        try:
            resp = requests.get(url, headers={"Accept": "application/json", **headers}, timeout=30)
        except requests.RequestException as exc:
            raise FetchError(f"{what}: cannot reach NGC at {url} ({type(exc).__name__}); check the network "
                             f"or {NGC_API_ENV}") from None
        if resp.status_code in (401, 403):
            raise FetchError(f"{what}: NGC denies {ref} (HTTP {resp.status_code}); a private model needs "
                             "NGC_KEY set to a key of its org")
        if resp.status_code == 404 and optional:
            return {}
        if resp.status_code == 404:
            raise FetchError(f"{what}: NGC has no model version {ref}; check ORG/[TEAM/]MODEL:VERSION")
        if resp.status_code != 200:
            raise FetchError(f"{what}: NGC answered HTTP {resp.status_code} for {ref}; try again later")
        return resp.json()

    def _list_files(self, url: str, headers: dict, what: str, ref: str, optional: bool) -> list[dict]:
        """Every entry of a version's ``modelFiles``, page by page (``paginationInfo.totalPages``)."""
        first = self._get_json(f"{url}?page-size={_NGC_PAGE_SIZE}", headers, what, ref, optional=optional)
        files = list(first.get("modelFiles") or [])
        pages = int((first.get("paginationInfo") or {}).get("totalPages") or 1)
        for page in range(1, pages):
            more = self._get_json(f"{url}?page-size={_NGC_PAGE_SIZE}&page-number={page}", headers, what, ref)
            files.extend(more.get("modelFiles") or [])
        return files

    @staticmethod
    def _pick(files: list[dict], wanted: str | None, ref: str, what: str) -> dict:
        if wanted:
            match = [f for f in files if f.get("path") == wanted]
            if match:
                return match[0]
            if files:
                raise FetchError(f"{what}: {ref} has no file {wanted}; it has "
                                 f"{', '.join(str(f.get('path')) for f in files)}")
            return {"path": wanted}
        ckpts = [f for f in files if str(f.get("path", "")).lower().endswith(WEIGHT_SUFFIXES)]
        if len(ckpts) != 1:
            names = ", ".join(str(f.get("path")) for f in files) or "no files"
            raise FetchError(f"{what}: {ref} holds {len(ckpts)} checkpoint files ({names}); name one: {ref}/FILE")
        return ckpts[0]

    def fetch(self, uri: str, what: str, progress: Progress | None) -> Path:
        """See :meth:`tao_sdk.sources.Source.fetch`."""
        p = parse_ngc(uri)
        ref = uri.split("://", 1)[1]
        token = _ngc_token(p["org"], p["team"], what)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        version = self.version_url(p, guest=token is None)
        record = self._get_json(version, headers, what, ref)
        status = (record.get("modelVersion") or {}).get("status")
        if status and status != "UPLOAD_COMPLETE":
            raise FetchError(f"{what}: NGC model version {ref} is {status}, not UPLOAD_COMPLETE; use a finished version")
        files = self._list_files(version + "/files", headers, what, ref, optional=bool(p["file"]))
        chosen = self._pick(files, p["file"], ref, what)
        path = str(chosen["path"])
        size = chosen.get("sizeInBytes")
        return cached_download(f"{uri}#{path}", self.file_url(p, path), path.rsplit("/", 1)[-1], what, progress,
                               headers=headers, size=int(size) if size is not None else None,
                               sha256=_hex_sha256(chosen.get("sha256_base64"), what, ref))
