"""A loopback HTTP server speaking what the weight sources call (tests only).

One server answers three APIs over the same files (``Hub.files``: name -> bytes):

- plain downloads ``GET /dl/<name>`` with ``Range`` support; ``Hub.cut`` names files whose
  *first* response is cut after half the bytes (an interrupted download), ``Hub.always_cut`` files
  whose every response is (a broken download);
- the Hugging Face Hub's file endpoint ``HEAD|GET /<org>/<name>/resolve/<rev>/<file>`` (what
  ``huggingface_hub.hf_hub_download`` calls: ``X-Repo-Commit``, ``ETag``, ``Content-Length``;
  ``X-Error-Code: EntryNotFound`` for a missing file), reached through ``HF_ENDPOINT``;
- NGC's model API under ``/v2``, as NVIDIA's ``ngcsdk`` calls it: the version record at
  ``/models/O[/T]/M/versions/V`` (guest API, no key) and ``/org/O[/team/T]/models/M/versions/V``
  (org API: always needs the bearer token), ``.../files?page-size=N[&page-number=K]`` (``modelFiles``
  with ``path``, ``sizeInBytes``, ``sha256_base64``; ``Hub.ngc_page`` files a page, ``paginationInfo``),
  the download URL ``/models/org/O[/team/T]/M/V/files?path=<path>`` (answered with a redirect to
  ``/dl/<path>``, as NGC redirects to storage), plus the token service ``/token?service=ngc&scope=...``
  (``Hub.ngc_key``: the legacy key it accepts; when set, model calls need its bearer token;
  ``Hub.scopes`` records the scopes asked for).

``Hub.requests`` records ``(method, path, Range header)`` of every request.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

COMMIT = "0123456789abcdef0123456789abcdef01234567"
TOKEN = "ngc-bearer-token-for-tests"


class Hub:
    """The server's state (files, failure switches, request log) and its address."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.cut: set[str] = set()
        self.always_cut: set[str] = set()
        self.ngc_key: str | None = None
        self.ngc_page = 100
        self.ngc_listed: dict[str, bytes] = {}  # name -> the bytes NGC's listing checksums (default: the file)
        self.scopes: list[list[str]] = []
        self.requests: list[tuple[str, str, str | None]] = []
        self._served: dict[str, int] = {}
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        """Stop the server."""
        self.server.shutdown()
        self.server.server_close()

    def cut_now(self, name: str) -> bool:
        """True when this response of ``name`` must be cut half way."""
        self._served[name] = self._served.get(name, 0) + 1
        return name in self.always_cut or (name in self.cut and self._served[name] == 1)


_NGC = re.compile(r"^/v2/(?:org/[^/]+(?:/team/[^/]+)?/models|(?P<guest>models)/[^/]+(?:/[^/]+)?)/[^/]+"
                  r"/versions/[^/]+(?P<rest>/files)?$")
_NGC_DL = re.compile(r"^/v2/models/org/[^/]+(?:/team/[^/]+)?/[^/]+/[^/]+/files$")
_HF = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)$")


def _handler(hub: Hub):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # quiet
            pass

        def do_HEAD(self) -> None:  # noqa: N802
            self._route(body=False)

        def do_GET(self) -> None:  # noqa: N802
            self._route(body=True)

        def _route(self, body: bool) -> None:
            path, _, query = self.path.partition("?")
            hub.requests.append((self.command, self.path if _NGC_DL.match(path) else path, self.headers.get("Range")))
            if path == "/token":
                return self._token()
            if path.startswith("/dl/"):
                return self._file(path[4:], body)
            m = _NGC.match(path)
            if m:
                return self._ngc(m, parse_qs(query))
            if _NGC_DL.match(path):
                return self._ngc_download(parse_qs(query).get("path", [""])[0])
            m = _HF.match(path)
            if m:
                return self._file(m["file"], body, hf=True)
            self._send(404, b"no route")

        def _send(self, code: int, data: bytes, headers: dict | None = None, length: int | None = None,
                  body: bool = True) -> None:
            self.send_response(code)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(data) if length is None else length))
            self.end_headers()
            if body:
                self.wfile.write(data)

        def _token(self) -> None:
            auth = self.headers.get("Authorization", "")
            want = "Basic " + base64.b64encode(f"$oauthtoken:{hub.ngc_key}".encode()).decode()
            hub.scopes.append(parse_qs(self.path.partition("?")[2]).get("scope", []))
            if hub.ngc_key and auth == want:
                return self._send(200, json.dumps({"token": TOKEN}).encode(), {"Content-Type": "application/json"})
            self._send(401, b"bad key")

        def _ngc_download(self, path: str) -> None:
            if hub.ngc_key and self.headers.get("Authorization") != f"Bearer {TOKEN}":
                return self._send(401, b"unauthorized")
            self._send(302, b"", {"Location": f"{hub.url}/dl/{path}"})

        def _ngc(self, m, query: dict) -> None:
            authorised = self.headers.get("Authorization") == f"Bearer {TOKEN}"
            if (hub.ngc_key or not m["guest"]) and not authorised:
                return self._send(401, b"unauthorized")
            if m["rest"]:
                return self._ngc_files(int(query.get("page-number", ["0"])[0]))
            record = {"model": {"name": "m"}, "modelVersion": {"versionId": "v", "status": "UPLOAD_COMPLETE"}}
            self._send(200, json.dumps(record).encode(), {"Content-Type": "application/json"})

        def _ngc_files(self, page: int) -> None:
            files = [{"path": n, "sizeInBytes": len(d),
                      "sha256_base64": base64.b64encode(hashlib.sha256(hub.ngc_listed.get(n, d)).digest()).decode()}
                     for n, d in sorted(hub.files.items())]
            pages = max(1, -(-len(files) // hub.ngc_page))
            chunk = files[page * hub.ngc_page:(page + 1) * hub.ngc_page]
            answer = {"modelFiles": chunk, "paginationInfo": {"index": page, "totalPages": pages}}
            self._send(200, json.dumps(answer).encode(), {"Content-Type": "application/json"})

        def _file(self, name: str, body: bool, hf: bool = False) -> None:
            data = hub.files.get(name)
            if data is None:
                return self._send(404, b"not found", {"X-Error-Code": "EntryNotFound"} if hf else None, body=body)
            start = 0
            rng = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
            headers = {"ETag": f'"{hashlib.sha256(data).hexdigest()}"', "Accept-Ranges": "bytes"}
            if hf:
                headers["X-Repo-Commit"] = COMMIT
            code = 200
            if rng:
                start, code = int(rng.group(1)), 206
                headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
            chunk = data[start:]
            if not body:
                return self._send(200, b"", headers, length=len(data), body=False)
            if hub.cut_now(name):
                self._send(code, chunk[: max(1, len(chunk) // 2)], headers, length=len(chunk))
                self.close_connection = True
                return
            self._send(code, chunk, headers)

    return Handler
