"""Where the SDK keeps its state: the job store, per-job work folders and the storage root.

Defaults (embedded, no setup needed):

- workspace: ``$TAO_SKILLS_WORKSPACE`` or ``~/.tao-skills``
- job store: ``<workspace>/jobs.db`` (SQLite, WAL)
- job work folders (spec file, log, exit status): ``<workspace>/jobs/<job_id>/``
- storage root (results + datasets): ``$TAO_SKILLS_STORAGE`` or ``<workspace>/storage``;
  set it to ``s3://bucket/prefix`` to keep results in S3 (endpoint and credentials come from the
  standard AWS environment/config, so MinIO and other S3-compatible stores work).
- results of a job: ``<storage root>/results/<job_id>``
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from .jobstore import JobStore
from .storage import storage_for


@dataclass
class Workspace:
    """The SDK's state locations (see module docstring for defaults)."""

    root: Path = field(default_factory=lambda: Path(os.environ.get("TAO_SKILLS_WORKSPACE", "~/.tao-skills")))
    storage_root: str | None = None

    def __post_init__(self) -> None:
        self.root = Path(self.root).expanduser().resolve()
        if self.storage_root is None:
            self.storage_root = os.environ.get("TAO_SKILLS_STORAGE") or str(self.root / "storage")
        self.storage_root = self.storage_root.rstrip("/")

    @cached_property
    def store(self) -> JobStore:
        """The job store (created on first use)."""
        self.root.mkdir(parents=True, exist_ok=True)
        return JobStore(self.root / "jobs.db")

    def job_dir(self, job_id: str) -> Path:
        """Local work folder of a job (spec file, log, exit status)."""
        return self.root / "jobs" / job_id

    def results_uri(self, job_id: str) -> str:
        """Where a job's results go: ``<storage root>/results/<job_id>``."""
        return storage_for(self.storage_root).join(self.storage_root, "results", job_id)

    def datasets_uri(self, name: str) -> str:
        """A dataset root under the storage root: ``<storage root>/datasets/<name>``."""
        return storage_for(self.storage_root).join(self.storage_root, "datasets", name)


_DEFAULT: Workspace | None = None


def default_workspace() -> Workspace:
    """The process-wide default workspace (re-read when TAO_SKILLS_WORKSPACE changes)."""
    global _DEFAULT
    wanted = Path(os.environ.get("TAO_SKILLS_WORKSPACE", "~/.tao-skills")).expanduser().resolve()
    storage = os.environ.get("TAO_SKILLS_STORAGE")
    if _DEFAULT is None or _DEFAULT.root != wanted or (storage and _DEFAULT.storage_root != storage.rstrip("/")):
        _DEFAULT = Workspace(wanted)
    return _DEFAULT
