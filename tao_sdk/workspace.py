"""Where the SDK keeps its state: the job store, per-job work folders and the storage root.

Defaults (embedded, no setup needed):

- workspace: ``$TAO_SKILLS_WORKSPACE`` or ``~/.tao-skills``
- job store: ``<workspace>/jobs.db`` (SQLite, WAL)
- job work folders (spec file, log, exit status, ``record.json``: the record as created, from
  which ``tao-skills jobs --recover`` rebuilds a lost job store): ``<workspace>/jobs/<job_id>/``
- storage root (results + datasets): ``$TAO_SKILLS_STORAGE`` or ``<workspace>/storage``;
  set it to ``s3://bucket/prefix`` to keep results in S3 (endpoint and credentials come from the
  standard AWS environment/config, so MinIO and other S3-compatible stores work).
- results of a job: ``<storage root>/results/<job_id>``
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from .jobstore import JobRecord, JobStore, damaged_store_error
from .secrets import redact
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
        """The job store (created on first use). Raises JobStoreDamagedError, saying how to
        recover, when the file is damaged or was emptied while job folders that ran exist."""
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / "jobs.db"
        if path.is_file() and path.stat().st_size == 0:
            started = self.started_job_dirs()
            if started:
                raise damaged_store_error(path, f"the file is empty (0 bytes) but {len(started)} job folder(s) "
                                                f"in {self.root / 'jobs'} hold jobs that started")
        return JobStore(path)

    def started_job_dirs(self) -> list[Path]:
        """Job folders whose job started (its platform handle is there), oldest name first."""
        jobs = self.root / "jobs"
        return sorted(p.parent for p in jobs.glob("*/handle.json")) if jobs.is_dir() else []

    def write_job_card(self, record: JobRecord) -> None:
        """Write ``record`` (as created, secrets redacted) to ``<job folder>/record.json`` before
        the job starts, so :func:`tao_sdk.recovery.recover_job_store` can rebuild it if the job
        store is lost. A full or read-only disk raises DiskFullError naming TAO_SKILLS_WORKSPACE."""
        from .diskspace import WORKSPACE_FIX, guarded_write

        path = self.job_dir(record.id) / JOB_CARD
        tmp = path.with_name(path.name + ".tmp")
        data = json.dumps(redact(record.to_dict()), indent=1, sort_keys=True, default=str).encode("utf-8")
        path.parent.mkdir(parents=True, exist_ok=True)
        with guarded_write(tmp, f"{path.name} of job {record.id}", needed=len(data), fix=WORKSPACE_FIX):
            tmp.write_bytes(data)
            os.replace(tmp, path)

    def read_job_card(self, job_id: str) -> JobRecord | None:
        """The record :meth:`write_job_card` saved for ``job_id`` (status PENDING, no handle), or
        None when the folder has none (or it is unreadable)."""
        try:
            data = json.loads((self.job_dir(job_id) / JOB_CARD).read_text(encoding="utf-8"))
            data.update(status="PENDING", platform_handle={}, started_at=None, finished_at=None)
            return JobRecord(**data)
        except (OSError, ValueError, TypeError):
            return None

    def job_dir(self, job_id: str) -> Path:
        """Local work folder of a job (spec file, log, exit status)."""
        return self.root / "jobs" / job_id

    def results_uri(self, job_id: str) -> str:
        """Where a job's results go: ``<storage root>/results/<job_id>``."""
        return storage_for(self.storage_root).join(self.storage_root, "results", job_id)

    def datasets_uri(self, name: str) -> str:
        """A dataset root under the storage root: ``<storage root>/datasets/<name>``."""
        return storage_for(self.storage_root).join(self.storage_root, "datasets", name)


#: the job record as first created, in each job folder (see :meth:`Workspace.write_job_card`)
JOB_CARD = "record.json"

_DEFAULT: Workspace | None = None


def default_workspace() -> Workspace:
    """The process-wide default workspace (re-read when TAO_SKILLS_WORKSPACE changes)."""
    global _DEFAULT
    wanted = Path(os.environ.get("TAO_SKILLS_WORKSPACE", "~/.tao-skills")).expanduser().resolve()
    storage = os.environ.get("TAO_SKILLS_STORAGE")
    if _DEFAULT is None or _DEFAULT.root != wanted or (storage and _DEFAULT.storage_root != storage.rstrip("/")):
        _DEFAULT = Workspace(wanted)
    return _DEFAULT
