"""Files a platform keeps in a job's work folder: secrets hand-over, exit code, handle, start gate.

Shared by the platforms that start the job somewhere else than this process (Slurm, Docker):

- the **secrets file**: ``export NAME='value'`` lines in a new 0600 file (``O_EXCL``) that the job
  reads and deletes before it starts anything (:func:`write_secrets`);
- the job's own **exit status** file (one integer line; :func:`read_exit_code`);
- the platform **handle** written next to it (:func:`write_json`), so a job whose submitter died
  before storing the handle can be adopted;
- the **start gate** (:func:`block_start` / :func:`allow_start` / :func:`refuse_if_abandoned`): an
  ``abandoned`` file that makes a job that has not started yet exit with status 125.
"""

from __future__ import annotations

import json
import os
import shlex
import time
from pathlib import Path
from typing import Any

from tao_sdk.errors import PlatformError
from tao_sdk.platforms._supervise import ABANDONED_FILE, HANDLE_FILE
from tao_sdk.secrets import SECRET_KEY_RE

__all__ = ["SECRETS_PREFIX", "allow_start", "block_start", "clear_stale", "read_exit_code",
           "refuse_if_abandoned", "split_secret_env", "write_json", "write_secrets"]

#: name prefix of the secrets hand-over files in a work folder
SECRETS_PREFIX = ".tao-secrets-"


def split_secret_env(env: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """Split ``env`` into (plain, secret) by variable name (the redaction rule of
    :mod:`tao_sdk.secrets`: ``*KEY``, ``*SECRET*``, ``*TOKEN*``, ``*PASSWORD*``, ...)."""
    plain, secret = {}, {}
    for name, value in env.items():
        (secret if SECRET_KEY_RE.search(name) else plain)[name] = value
    return plain, secret


def write_secrets(workdir: Path, secrets: dict[str, str]) -> str:
    """Write ``export NAME='value'`` lines to a new 0600 file in ``workdir``; return its path."""
    path = workdir / f"{SECRETS_PREFIX}{os.urandom(8).hex()}"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        for name, value in sorted(secrets.items()):
            fh.write(f"export {name}={shlex.quote(value)}\n")
    return str(path)


def read_exit_code(path: str) -> int | None:
    """The integer in the job's exit status file, None when it is missing or unreadable."""
    try:
        return int(Path(path).read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        return None


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as JSON to ``path`` atomically (temp file + rename)."""
    tmp = path.with_name(f"{path.name}.tmp.{os.getpid()}")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    os.replace(tmp, path)


def refuse_if_abandoned(job_id: str, workdir: Path) -> None:
    """PlatformError when the submission from ``workdir`` was given up (:func:`block_start`)."""
    if (workdir / ABANDONED_FILE).exists():
        raise PlatformError(
            f"job {job_id}: its submission was given up (canceled, or its submitter "
            f"died) before it started ({workdir / ABANDONED_FILE}); create the job again")


def clear_stale(workdir: Path, *names: str) -> None:
    """Remove an earlier run's exit status and handle files (and ``names``) from ``workdir``."""
    for name in ("exit_status", HANDLE_FILE, *names):
        (workdir / name).unlink(missing_ok=True)


def block_start(workdir: str) -> None:
    """Make a job submitted from ``workdir`` that has not started yet exit at once (status 125)."""
    path = Path(workdir) / ABANDONED_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{time.time()}\n", encoding="ascii")


def allow_start(workdir: str) -> None:
    """Undo :func:`block_start` once the job found started from ``workdir`` is tracked."""
    (Path(workdir) / ABANDONED_FILE).unlink(missing_ok=True)
