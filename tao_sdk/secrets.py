"""Secret redaction shared by the job store, the CLI and the worker.

Secrets (S3 keys, the model encryption key, tokens) never land in job records, logs or spec
files: they travel to jobs by environment. Anything that writes a spec-like structure to disk or
to a record passes it through :func:`redact` first.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

#: What a redacted secret is replaced with.
REDACTED = "***"

# Names of secrets (matched case-insensitively anywhere in the name, except ``key$`` which must
# end it). ``token`` is not matched inside ``tokenizer`` / ``tokenization`` (model config, not a
# secret). Broad on purpose: used for environment variable names (``*_KEY`` is a secret there).
SECRET_KEY_RE = re.compile(
    r"encryption_key|key$|secret|password|passwd|token(?!iz)|access_key|api_key|session_token|credential",
    re.IGNORECASE,
)
# The same for spec / record field names, where a ``...key`` must be ``key`` itself or a known
# secret kind of key: ``det_box_key`` / ``default_cam_key`` name dataset fields, not secrets.
SECRET_FIELD_RE = re.compile(
    r"(?:^|encryption_|api_|access_|secret_|private_|auth_|ngc_|ssh_|license_|signing_|master_|client_)key$"
    r"|secret|password|passwd|token(?!iz)|access_key|session_token|credential",
    re.IGNORECASE,
)
_URI_CREDENTIALS_RE = re.compile(r"(://)[^/@\s:]+:[^/@\s]+@")


def redact(obj: Any) -> Any:
    """Return a copy of ``obj`` with every secret value replaced by ``"***"``.

    Walks dicts, lists and tuples recursively. A dict entry is a secret when its key matches
    :data:`SECRET_FIELD_RE` (case-insensitively): ``key`` itself or a secret kind of key
    (``encryption_key``, ``api_key``, ``access_key``, ``private_key``...; not ``det_box_key``),
    ``secret``, ``password``, ``token`` (not ``tokenizer``), ``session_token`` or
    ``credential(s)``; the whole value is replaced (booleans and numbers are settings, not
    secrets: ``use_clstoken: true`` is kept).
    Credentials embedded in URIs (``scheme://user:pass@host``) are replaced too. ``None`` and
    ``""`` are kept (nothing to hide). The input is never modified.

    Example: ``redact({"encryption_key": "tlt_encode", "s3": {"aws_secret_access_key": "x"}})``
    -> ``{"encryption_key": "***", "s3": {"aws_secret_access_key": "***"}}``.
    """
    if isinstance(obj, dict):
        out: dict[Any, Any] = {}
        for k, v in obj.items():
            if is_secret_entry(k, v):
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


def is_secret_entry(key: Any, value: Any) -> bool:
    """True when the dict entry ``key: value`` holds a secret (see :func:`redact`)."""
    return (isinstance(key, str) and bool(SECRET_FIELD_RE.search(key)) and value not in (None, "")
            and not isinstance(value, (bool, int, float)))


def _is_reference(value: Any) -> bool:
    return isinstance(value, str) and (value == "???" or ("${" in value and "}" in value))


def secret_paths(spec: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Dotted paths of the secret values a nested spec holds in clear (interpolations such as
    ``${oc.env:TAO_ENCRYPTION_KEY}`` and ``???`` are references, not secrets)."""
    out = []
    for key, value in spec.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            out += secret_paths(value, dotted)
        elif is_secret_entry(key, value) and not _is_reference(value):
            out.append(dotted)
    return out


#: The environment variable a secret spec field travels in (the encryption key has TAO's own).
def secret_env_name(dotted: str) -> str:
    """The model encryption key (``encryption_key`` at any level, e.g. ``export.encryption_key``)
    -> ``TAO_ENCRYPTION_KEY``; any other secret field -> ``TAO_SECRET_<PATH>``."""
    if dotted.rsplit(".", 1)[-1].lower() == "encryption_key":
        return "TAO_ENCRYPTION_KEY"
    return "TAO_SECRET_" + re.sub(r"[^A-Za-z0-9]+", "_", dotted).upper()


def env_reference(name: str) -> str:
    """The OmegaConf reference a spec holds instead of a secret: ``${oc.env:NAME}``."""
    return "${oc.env:" + name + "}"


def extract_secrets(spec: Mapping[str, Any] | None, *, dotted: bool = False) -> tuple[dict[str, Any], dict[str, str]]:
    """Move every secret value out of ``spec`` into environment variables.

    Returns ``(clean, env)``: ``clean`` is a copy of ``spec`` where each secret value is replaced
    by ``${oc.env:NAME}`` (OmegaConf / TAO and the worker resolve it at run time), ``env`` maps
    NAME -> the secret. ``dotted=True`` treats ``spec`` as dotted overrides
    (``{"encryption_key": "K", "train.x": 1}``) instead of a nested spec.
    Example: ``extract_secrets({"encryption_key": "K"})`` ->
    ``({"encryption_key": "${oc.env:TAO_ENCRYPTION_KEY}"}, {"TAO_ENCRYPTION_KEY": "K"})``.
    """
    import copy

    clean: dict[str, Any] = copy.deepcopy(dict(spec or {}))
    env: dict[str, str] = {}

    def move(path: str, value: Any) -> str:
        name = secret_env_name(path)
        if name in env and env[name] != str(value):
            from .errors import TaoSkillsError

            raise TaoSkillsError(f"{path} holds a different secret than another field that travels as {name}; "
                                 "give one value (one model has one encryption key)")
        env[name] = str(value)
        return env_reference(name)

    for key in list(clean):
        value = clean[key]
        if isinstance(value, Mapping):
            for path in secret_paths(value, key):
                node = value
                parts = path[len(key) + 1:].split(".")
                for part in parts[:-1]:
                    node = node[part]
                node[parts[-1]] = move(path, node[parts[-1]])
        elif is_secret_entry(key.rsplit(".", 1)[-1] if dotted else key, value) and not _is_reference(value):
            clean[key] = move(key, value)
    return clean, env
