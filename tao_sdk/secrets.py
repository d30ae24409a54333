"""Secret redaction shared by the job store, the CLI and the worker.

Secrets (S3 keys, the model encryption key, tokens) never land in job records, logs or spec
files: they travel to jobs by environment. Anything that writes a spec-like structure to disk or
to a record passes it through :func:`redact` first.
"""

from __future__ import annotations

import re
from typing import Any

#: What a redacted secret is replaced with.
REDACTED = "***"

# Keys whose values are secrets (matched case-insensitively anywhere in the key, except
# ``key$`` which must end the key). ``token`` is not matched inside ``tokenizer`` /
# ``tokenization`` (model config, not a secret).
SECRET_KEY_RE = re.compile(
    r"encryption_key|key$|secret|password|passwd|token(?!iz)|access_key|api_key|session_token|credential",
    re.IGNORECASE,
)
_URI_CREDENTIALS_RE = re.compile(r"(://)[^/@\s:]+:[^/@\s]+@")


def redact(obj: Any) -> Any:
    """Return a copy of ``obj`` with every secret value replaced by ``"***"``.

    Walks dicts, lists and tuples recursively. A dict entry is a secret when its key matches
    (case-insensitively) ``encryption_key``, ``key`` at the end of the key (``api_key``,
    ``key``), ``secret``, ``password``, ``token`` (not ``tokenizer``), ``access_key``,
    ``session_token`` or ``credential(s)``; the whole value is replaced, whatever its type.
    Credentials embedded in URIs (``scheme://user:pass@host``) are replaced too. ``None`` and
    ``""`` are kept (nothing to hide). The input is never modified.

    Example: ``redact({"encryption_key": "tlt_encode", "s3": {"aws_secret_access_key": "x"}})``
    -> ``{"encryption_key": "***", "s3": {"aws_secret_access_key": "***"}}``.
    """
    if isinstance(obj, dict):
        out: dict[Any, Any] = {}
        for k, v in obj.items():
            if isinstance(k, str) and SECRET_KEY_RE.search(k) and v not in (None, ""):
                out[k] = REDACTED
            else:
                out[k] = redact(v)
        return out
    if isinstance(obj, list):
        return [redact(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(redact(v) for v in obj)
    if isinstance(obj, str) and "://" in obj and "@" in obj:
        return _URI_CREDENTIALS_RE.sub(r"\1" + REDACTED + "@", obj)
    return obj
