"""Rebuild the job store from the job folders (``tao-skills jobs --recover``).

Every job folder ``<workspace>/jobs/<id>/`` holds what a lost store needs: ``record.json`` (the
record as created, written before the job started), ``handle.json`` (written by the job's own
supervisor when it started) and the job's exit status; its results folder holds status.json.

:func:`recover_job_store` moves a damaged store file aside (``jobs.db.damaged-<time>``, with its
``-wal`` / ``-shm`` files: nothing is deleted), opens a fresh one, creates a record for every job
folder the store does not know, and refreshes each: a job that still runs is adopted through its
handle (``cancel`` works on it), a finished one gets its real outcome, one that never started
ends FAILURE ("submission interrupted"). On a healthy store it only adds the missing records.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import JobStoreDamagedError
from .workspace import Workspace, default_workspace

__all__ = ["StoreRecovery", "recover_job_store"]


@dataclass
class StoreRecovery:
    """What :func:`recover_job_store` did.

    Attributes:
        store: the job store file.
        moved_aside: the damaged files, under their new names (empty when the store was healthy).
        recovered: the rebuilt jobs (refreshed :class:`tao_sdk.jobs.Job` objects), oldest first.
        skipped: job folder -> why it was not rebuilt (e.g. no ``record.json``: an older SDK).
    """

    store: str
    moved_aside: list[str] = field(default_factory=list)
    recovered: list[Any] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view (``--json``)."""
        return {"store": self.store, "moved_aside": self.moved_aside, "skipped": self.skipped,
                "recovered": [{"id": j.id, "skill": j.skill, "action": j.action, "status": j.status.value}
                              for j in self.recovered]}

    def summary(self) -> str:
        """One line: what was moved aside, how many jobs were rebuilt and skipped."""
        moved = f"moved the damaged store aside to {self.moved_aside[0]}; " if self.moved_aside else ""
        skipped = f"; skipped {len(self.skipped)} folder(s) without a usable record.json" if self.skipped else ""
        return f"{moved}rebuilt {len(self.recovered)} job record(s) in {self.store}{skipped}"


def _move_aside(path: Path) -> list[str]:
    """Rename the store file and its WAL / shared-memory files to ``<name>.damaged-<time>``."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    target = path.with_name(f"{path.name}.damaged-{stamp}")
    if target.exists():
        target = path.with_name(f"{target.name}-{os.getpid()}")
    moved = []
    for suffix in ("", "-wal", "-shm"):
        src = path.with_name(path.name + suffix)
        if src.exists():
            dest = target.with_name(target.name + suffix)
            os.replace(src, dest)
            moved.append(str(dest))
    return moved


def recover_job_store(workspace: Workspace | None = None) -> StoreRecovery:
    """Rebuild the workspace's job store from its job folders; returns a :class:`StoreRecovery`.

    A damaged store (not a database, failed integrity check, emptied while job folders exist) is
    moved aside first, never deleted. Each job folder the store lacks is rebuilt from its
    ``record.json`` and refreshed through its platform (running jobs are adopted). Safe to run
    twice. Run it while no AutoML controller runs (one that runs keeps writing to the old file:
    resume it afterwards with ``tao-skills automl resume``).
    """
    from .jobs import get_job

    workspace = workspace or default_workspace()
    path = workspace.root / "jobs.db"
    out = StoreRecovery(str(path))
    try:
        store = workspace.store
    except JobStoreDamagedError:
        out.moved_aside = _move_aside(path)
        workspace.__dict__.pop("store", None)
        store = workspace.store
    known = {r.id for r in store.list()}
    jobs_dir = workspace.root / "jobs"
    folders = sorted(p for p in jobs_dir.iterdir() if p.is_dir()) if jobs_dir.is_dir() else []
    rebuilt = []
    for folder in folders:
        if folder.name in known:
            continue
        record = workspace.read_job_card(folder.name)
        if record is None or record.id != folder.name:
            out.skipped[str(folder)] = "no usable record.json (submitted by an older SDK, or never recorded)"
            continue
        record.result = {**record.result, "recovered": f"rebuilt from {folder} by recover_job_store"}
        rebuilt.append(store.create(record))
    out.recovered = [get_job(r.id, workspace=workspace) for r in sorted(rebuilt, key=lambda r: r.created_at)]
    return out
